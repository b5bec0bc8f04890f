"""The process that grades one exercise: ``python -m npsenet.exercise.worker WORKSPACE NAME
RESULT [--seed S] [--data-dir DIR]`` loads the student's file, grades it
(:func:`npsenet.exercise.runner.check_exercise`) and writes the result as JSON to RESULT.
:func:`npsenet.exercise.runner.run_exercise` starts it with a time limit."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m npsenet.exercise.worker")
    parser.add_argument("workspace")
    parser.add_argument("name")
    parser.add_argument("result")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    from .runner import check_exercise
    result = check_exercise(args.workspace, args.name, args.seed, args.data_dir)
    Path(args.result).write_text(json.dumps(result.to_json()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
