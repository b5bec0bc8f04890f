"""``npsenet exercise``: the course kit's workspaces, grader and gradebook.

    npsenet exercise new ws                      # a student workspace (stubs)
    npsenet exercise new ws --solutions          # the reference solutions, for teachers
    npsenet exercise check ws                    # grade every exercise: a table and hints
    npsenet exercise check ws linear batchnorm   # some of them
    npsenet exercise grade submissions --csv grades.csv    # one row per student
    npsenet exercise strip notebooks/exercises/*.ipynb --out student/   # nbgrader's stubs
    npsenet exercise list                        # the exercises, in teaching order

The library behind it is :mod:`npsenet.exercise`; ``docs/teaching.md`` is the guide.
"""
from __future__ import annotations

import sys

from ..args import non_negative_float



def positive_seconds(text):
    """argparse type: a number of seconds > 0."""
    value = non_negative_float(text)
    if value == 0:
        import argparse
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _grading_arguments(p):
    from ...exercise.runner import CAPSTONE_TIMEOUT, DEFAULT_TIMEOUT
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="the exercises to grade (default: all; see npsenet exercise list)")
    p.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds each exercise may run before it is stopped (default: "
                        f"{DEFAULT_TIMEOUT:g})")
    p.add_argument("--capstone-timeout", type=positive_seconds, default=CAPSTONE_TIMEOUT,
                   metavar="S", help=f"seconds the capstone may train (default: "
                                     f"{CAPSTONE_TIMEOUT:g})")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random shapes and inputs (default: 0)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the folder holding cifar-10-batches-py/ for the capstone (default: "
                        "the capstone file's DATA_DIR, else $NPSENET_CIFAR_SUBSET, else "
                        "synthetic images)")


def add_parser(sub):
    p = sub.add_parser("exercise", help="course kit: exercise workspaces, grader, gradebook",
                       description="Exercises on the backward passes of an SE-ResNet: write "
                                   "a student workspace, grade it (gradient checks against "
                                   "numerical derivatives and the reference, with a hint for "
                                   "each known mistake), grade a class into a gradebook.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    new = actions.add_parser("new", help="write a student workspace",
                             description="Write one Python file per exercise (the forward "
                                         "given, the backward a stub) and a README.md.")
    new.add_argument("folder", metavar="DIR")
    new.add_argument("--solutions", action="store_true",
                     help="fill in the reference solutions (for teachers)")
    new.add_argument("--force", action="store_true",
                     help="overwrite exercise files already in DIR")
    new.set_defaults(func=run_new)

    check = actions.add_parser("check", help="grade a workspace",
                               description="Grade each exercise in its own process and print "
                                           "a table (pass, FAIL, not done yet; the worst "
                                           "relative error) and hints. Exit status 0 only "
                                           "when every exercise asked for passes.")
    check.add_argument("folder", metavar="DIR")
    _grading_arguments(check)
    check.set_defaults(func=run_check)

    grade = actions.add_parser("grade", help="grade a folder of student workspaces",
                               description="Grade every subfolder of SUBMISSIONS_DIR (one "
                                           "student workspace each) and write a gradebook: "
                                           "one row per student, one column per exercise "
                                           "(1 pass, 0 otherwise) and the total.")
    grade.add_argument("folder", metavar="SUBMISSIONS_DIR")
    grade.add_argument("--csv", required=True, metavar="FILE", help="the gradebook to write")
    grade.add_argument("--feedback", default=None, metavar="DIR",
                       help="also write each student's report to DIR/<student>.txt")
    _grading_arguments(grade)
    grade.set_defaults(func=run_grade)

    strip = actions.add_parser("strip", help="student versions of the exercise notebooks",
                               description="Replace each ### BEGIN SOLUTION / ### END "
                                           "SOLUTION region with raise NotImplementedError() "
                                           "(nbgrader's convention) and clear the outputs.")
    strip.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    strip.add_argument("--out", required=True, metavar="DIR",
                       help="the folder for the student versions")
    strip.set_defaults(func=run_strip)

    listing = actions.add_parser("list", help="the exercises, in teaching order")
    listing.set_defaults(func=run_list)


def run_new(args):
    from ...exercise import new_workspace
    try:
        new_workspace(args.folder, solutions=args.solutions, overwrite=args.force)
    except FileExistsError as exc:
        raise ValueError(str(exc)) from None
    what = "the reference solutions" if args.solutions else "stubs to fill in"
    print(f"wrote {args.folder}: 11 exercise files ({what}) and README.md. Start with "
          f"ex01_linear.py; check with: npsenet exercise check {args.folder}")
    return 0


def _progress(name):
    note = " (trains SE-ResNet-20 on your pairs: minutes)" if name == "capstone" else ""
    print(f"checking {name}{note} ...", file=sys.stderr, flush=True)


def run_check(args):
    from ...exercise import check_workspace, format_report
    results = check_workspace(args.folder, args.names, args.timeout, args.capstone_timeout,
                              args.seed, args.data_dir, progress=_progress)
    print(format_report(results))
    return 0 if all(r.passed for r in results) else 1


def run_grade(args):
    from ...exercise import grade_submissions
    from ...exercise.runner import gradebook_rows

    def progress(student, name):
        print(f"grading {student}: {name} ...", file=sys.stderr, flush=True)

    graded = grade_submissions(args.folder, args.csv, args.names, args.timeout,
                               args.capstone_timeout, args.seed, args.data_dir,
                               args.feedback, progress=progress)
    names = list(args.names) if args.names else None
    first = next(iter(graded.values()))
    names = names or [r.exercise for r in first]
    rows = gradebook_rows(graded, names)
    width = max(len("student"), *(len(r["student"]) for r in rows))
    print(f"{'student':<{width}}  " + "  ".join(names) + "  total")
    for row in rows:
        print(f"{row['student']:<{width}}  " + "  ".join(f"{row[n]:>{len(n)}}" for n in names)
              + f"  {row['total']:>5}")
    print(f"\nwrote {args.csv} ({len(rows)} students, {len(names)} exercises)")
    return 0


def run_strip(args):
    from ...exercise.notebooks import write_student_notebooks
    written = write_student_notebooks(args.notebooks, args.out)
    print(f"wrote {len(written)} student notebook{'s' if len(written) != 1 else ''} to "
          f"{args.out}")
    return 0


def run_list(args):
    from ...exercise import EXERCISES
    width = max(len(e.name) for e in EXERCISES)
    for i, e in enumerate(EXERCISES, 1):
        print(f"{i:2d}  {e.name:<{width}}  {e.filename:<31} {e.title}")
    return 0
