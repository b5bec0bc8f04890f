"""The grader's report: one table row per exercise, then what failed and what to check.

    exercise     status        worst error
    -----------  ------------  -----------
    linear       pass              2.2e-16
    squeeze      FAIL              2.0e+01
    softmax      not done yet            -

    squeeze: FAIL
      global_avg_pool_backward: u 2x3x4x5: du is wrong (relative error 1.9e+01)
      hint: forgot to divide by H·W in the squeeze: ...
"""
from __future__ import annotations

import textwrap

from .grader import CRASH, FAIL, NOT_DONE, PASS, TIMEOUT

SHOWN = {PASS: "pass", FAIL: "FAIL", NOT_DONE: "not done yet", TIMEOUT: "TIMEOUT",
         CRASH: "CRASHED"}


def _error_text(error):
    if error is None:
        return "-"
    if error == float("inf"):
        return "inf"
    return f"{error:.1e}"


def format_table(results):
    """The table: exercise, status, worst relative error."""
    rows = [("exercise", "status", "worst error")]
    rows += [(r.exercise, SHOWN.get(r.status, r.status), _error_text(r.error)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{rows[0][0]:<{widths[0]}}  {rows[0][1]:<{widths[1]}}  {rows[0][2]:>{widths[2]}}",
             "  ".join("-" * w for w in widths)]
    lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows[1:]]
    return "\n".join(lines)


def summary_line(results):
    """'3 of 11 exercises pass; 1 fails; 7 not done yet.'"""
    counts = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    parts = [f"{counts.get(PASS, 0)} of {len(results)} exercise"
             f"{'s' if len(results) != 1 else ''} pass"]
    for status, word in ((FAIL, "fail"), (TIMEOUT, "timed out"), (CRASH, "crashed"),
                         (NOT_DONE, "not done yet")):
        if counts.get(status):
            verb = (word + "s") if word == "fail" and counts[status] == 1 else word
            parts.append(f"{counts[status]} {verb}")
    return "; ".join(parts) + "."


def _wrap(text, indent):
    return textwrap.fill(text, width=92, initial_indent=indent,
                         subsequent_indent=indent + "  ")


def format_details(results):
    """For each exercise that did not pass (or that has notes): what failed, the hints."""
    blocks = []
    for r in results:
        lines = []
        if r.status in (FAIL, TIMEOUT, CRASH):
            lines.append(f"{r.exercise}: {SHOWN[r.status]}")
            lines += [_wrap(m, "  ") for m in r.messages]
            lines += [_wrap("hint: " + h, "  ") for h in r.hints]
        if r.notes:
            if not lines:
                lines.append(f"{r.exercise}:")
            lines += [_wrap(n, "  ") for n in r.notes]
        if lines:
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def format_report(results):
    """The table, the summary line and the details, as text."""
    text = format_table(results) + "\n" + summary_line(results)
    details = format_details(results)
    return text + ("\n\n" + details if details else "")
