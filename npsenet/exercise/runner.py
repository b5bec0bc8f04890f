"""Grading a workspace: each exercise in its own process, with a time limit.

:func:`check_workspace` starts ``python -m npsenet.exercise.worker WORKSPACE NAME RESULT``
for each exercise, which loads the student's file, grades it (:func:`check_exercise`) and
writes the :class:`~.grader.Result` as JSON. An exercise that runs past its time limit is
stopped (its whole process group) and reported as a timeout; one whose process dies
without a result (a segfault, ``sys.exit``, ``os._exit``) as a crash; the grader goes on
with the next exercise either way, and the student's code never runs in the grader's own
process. :func:`grade_submissions` does this for every student of a class and writes the
gradebook.
"""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .catalog import exercise_names, get_exercise
from .grader import CRASH, FAIL, PASS, TIMEOUT, Result, check_pairs

DEFAULT_TIMEOUT = 60.0
"""Seconds an exercise may take (its cases take about a second when they are right)."""
CAPSTONE_TIMEOUT = 900.0
"""Seconds the capstone may take: it trains SE-ResNet-20 for a few epochs on the CPU."""


def check_exercise(workspace, name, seed=0, data_dir=None):
    """Grade exercise ``name`` of ``workspace`` in this process (the subprocess's work)."""
    from .capstone import check_capstone
    from .grader import _where
    from .workspace import load_module
    exercise = get_exercise(name)
    file = Path(workspace) / exercise.filename
    started = time.perf_counter()
    try:
        module = load_module(file)
    except FileNotFoundError:
        return Result(name, FAIL, messages=[f"{file.name} is missing from {workspace}"],
                      hints=["npsenet exercise new writes a fresh copy of every file (into "
                             "a new folder)."])
    except SyntaxError as exc:
        return Result(name, FAIL, messages=[f"{file.name} does not compile: {exc.msg} "
                                            f"(line {exc.lineno})"])
    except Exception as exc:
        return Result(name, FAIL, messages=[f"importing {file.name} raised {_where(exc)}"])
    try:
        if name == "capstone":
            result = check_capstone(workspace, module, data_dir=data_dir)
        else:
            result = check_pairs(exercise, module, seed=seed)
    except Exception as exc:
        result = Result(name, FAIL, messages=[f"grading stopped on {_where(exc)}"])
    result.seconds = time.perf_counter() - started
    return result


def _package_root():
    return str(Path(__file__).resolve().parents[2])


def _stop(process):
    """Kill the exercise's process and everything it started (its own process group)."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass


def run_exercise(workspace, name, timeout=DEFAULT_TIMEOUT, seed=0, data_dir=None):
    """Grade exercise ``name`` of ``workspace`` in a subprocess limited to ``timeout``
    seconds; returns its :class:`~.grader.Result` (a timeout or a crash is a result too)."""
    workspace = Path(workspace).resolve()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_package_root()] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("MPLBACKEND", "Agg")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "npsenet.exercise.worker", str(workspace), name,
                   str(out), "--seed", str(seed)]
        if data_dir is not None:
            command += ["--data-dir", str(data_dir)]
        process = subprocess.Popen(command, cwd=workspace, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=hasattr(os, "killpg"))
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(process)
            process.communicate()
            return Result(name, TIMEOUT, seconds=time.perf_counter() - started, messages=[
                f"stopped after {timeout:g} s (the time limit, --timeout)"], hints=[
                "look for a loop that never ends (a while loop whose condition never "
                "changes) or a loop over every pixel: the grader's cases are small, and a "
                "vectorised answer takes well under a second."])
        if out.is_file():
            return Result.from_json(json.loads(out.read_text(encoding="utf-8")))
    tail = [line for line in stderr.decode(errors="replace").strip().splitlines() if line]
    how = (f"killed by signal {-process.returncode}" if process.returncode < 0
           else f"exit status {process.returncode}")
    return Result(name, CRASH, seconds=time.perf_counter() - started,
                  messages=[f"the process ended without a result ({how})"] + tail[-3:],
                  hints=["something in the file ended the Python process (sys.exit, "
                         "os._exit, a crash in native code, running out of memory); the "
                         "lines above are the last it wrote to stderr."])


def check_workspace(workspace, names=None, timeout=DEFAULT_TIMEOUT,
                    capstone_timeout=CAPSTONE_TIMEOUT, seed=0, data_dir=None, progress=None):
    """Grade the exercises ``names`` (default: all) of ``workspace``, each in its own
    process; returns their :class:`~.grader.Result` in order. ``progress(name)``, when
    given, is called as each exercise starts."""
    workspace = Path(workspace)
    if not workspace.is_dir():
        raise FileNotFoundError(f"{workspace} is not a folder; npsenet exercise new "
                                f"{workspace} writes a workspace there.")
    names = list(names) if names else exercise_names()
    for name in names:
        get_exercise(name)
    results = []
    for name in names:
        if progress is not None:
            progress(name)
        limit = capstone_timeout if name == "capstone" else timeout
        results.append(run_exercise(workspace, name, limit, seed, data_dir))
    return results


def gradebook_rows(results_by_student, names):
    """One row per student: the name, 1 or 0 per exercise, and the total."""
    rows = []
    for student, results in results_by_student.items():
        marks = {r.exercise: int(r.status == PASS) for r in results}
        rows.append({"student": student, **{n: marks.get(n, 0) for n in names},
                     "total": sum(marks.get(n, 0) for n in names)})
    return rows


def grade_submissions(folder, csv_path, names=None, timeout=DEFAULT_TIMEOUT,
                      capstone_timeout=CAPSTONE_TIMEOUT, seed=0, data_dir=None,
                      feedback_dir=None, progress=None):
    """Grade every student workspace in ``folder`` (one subfolder each) and write the
    gradebook ``csv_path``: one row per student (the subfolder's name), one column per
    exercise (1 pass, 0 otherwise) and the total.

    Args:
        folder: the folder of submissions.
        csv_path: where the gradebook goes.
        names: the exercises to grade (default: all).
        timeout, capstone_timeout, seed, data_dir: as for :func:`check_workspace`.
        feedback_dir: if given, each student's report (table and hints) is written there
            as ``<student>.txt``.
        progress: ``progress(student, exercise)``, called as each exercise starts.
    Returns:
        {student: list of results}.
    """
    from ..io import atomic_write
    from .report import format_report
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of submissions (one subfolder per "
                                "student).")
    students = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise ValueError(f"{folder} holds no student folders; put each workspace in a "
                         "subfolder named after its student.")
    names = list(names) if names else exercise_names()
    graded = {}
    for student in students:
        graded[student.name] = check_workspace(
            student, names, timeout, capstone_timeout, seed, data_dir,
            progress=None if progress is None else (lambda n, s=student.name: progress(s, n)))
        if feedback_dir is not None:
            Path(feedback_dir).mkdir(parents=True, exist_ok=True)
            (Path(feedback_dir) / f"{student.name}.txt").write_text(
                format_report(graded[student.name]) + "\n", encoding="utf-8")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["student", *names, "total"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(gradebook_rows(graded, names))
    Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(csv_path) as f:
        f.write(text.getvalue().encode("utf-8"))
    return graded
