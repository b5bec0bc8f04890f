"""The course kit: exercises on the backward passes of an SE-ResNet, and their grader.

    npsenet exercise new ws                 # a student workspace: one file per exercise
    npsenet exercise check ws               # the table: pass, FAIL or not done yet, hints
    npsenet exercise grade submissions --csv grades.csv    # a class's gradebook

From Python (the exercise notebooks' checking cells):

    from npsenet.exercise import check_function
    result = check_function("batchnorm", batchnorm_backward)   # prints the table and hints
    assert result.passed

The exercises (:data:`EXERCISES`, in teaching order) are the plain path's stateless pairs
(``npsenet.nn.functional``: the same names and signatures), three composite pairs
(:mod:`.composed`) and a capstone that trains SE-ResNet-20 on the student's pairs
(:mod:`.capstone`, through :func:`student_path`). The reference solutions are the
project's own code; a workspace's files are generated from it (:mod:`.workspace`). The
grader (:mod:`.grader`, with the cases of :mod:`.cases` and the known mistakes of
:mod:`.mistakes`) checks each gradient against numerical derivatives (random upstream
gradient) and the reference; :mod:`.runner` runs it on a workspace, one subprocess and one
time limit per exercise. ``docs/teaching.md`` is the teacher's guide.
"""
from __future__ import annotations

import types

from .catalog import EXERCISES, Exercise, exercise_names, get_exercise
from .grader import Result, check_pairs, reference_pairs
from .notebooks import student_notebook
from .path import pairs_with, student_path
from .report import format_report
from .runner import check_workspace, grade_submissions
from .workspace import new_workspace

__all__ = ["EXERCISES", "Exercise", "exercise_names", "get_exercise", "new_workspace",
           "check_function", "check_workspace", "grade_submissions", "student_path",
           "pairs_with", "student_notebook", "Result", "format_report"]


def check_function(name, *functions, seed=0, quiet=False, **named):
    """Grade functions written in this process (a notebook's cells) as exercise ``name``.

        check_function("batchnorm", batchnorm_backward)
        check_function("squeeze", global_avg_pool_backward, global_max_pool_backward)
        check_function("conv", col2im=my_col2im)

    Args:
        name: the exercise (see :func:`exercise_names`).
        functions: the student's functions, matched to the exercise's by their names
            (``__name__``); an exercise with one function takes it under any name.
        seed: the seed of the random cases.
        quiet: don't print the report.
        named: functions under the exercise's names, for functions named otherwise.
    Returns:
        the :class:`Result` (``.passed``); only the functions given are checked, each
        with the reference's forward and the reference's other functions around it.
    """
    exercise = get_exercise(name)
    if name == "capstone":
        raise ValueError("check_function grades pairs; the capstone trains a model: run "
                         "npsenet exercise check DIR capstone.")
    given = dict(named)
    for function in functions:
        key = getattr(function, "__name__", None)
        if key not in exercise.todo and len(exercise.todo) == 1:
            key = next(iter(exercise.todo))
        if key not in exercise.todo:
            raise ValueError(f"{name} asks for {', '.join(exercise.todo)}; got a function "
                             f"called {key!r}: pass it by name, e.g. "
                             f"check_function({name!r}, {next(iter(exercise.todo))}=...).")
        given[key] = function
    unknown = sorted(set(given) - set(exercise.todo))
    if unknown or not given:
        raise ValueError(f"{name} asks for {', '.join(exercise.todo)}; got "
                         f"{', '.join(unknown) or 'no function'}.")
    student = types.SimpleNamespace(**{**vars(reference_pairs()), **given})
    result = check_pairs(exercise, student, functions=[f for f in exercise.todo if f in given],
                         seed=seed)
    if not quiet:
        print(format_report([result]))
    return result
