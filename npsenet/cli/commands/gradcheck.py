"""``npsenet gradcheck``: every layer's backward against numerical gradients, as a table."""
from __future__ import annotations

from ..args import add_plain_argument

THRESHOLD = 1e-7


def add_parser(sub):
    p = sub.add_parser("gradcheck", help="check every layer's backward against numerical gradients",
                       description="Compare each layer's hand-written backward with central "
                                   "differences in float64 (random upstream gradient) and print "
                                   "the relative errors. Everything should be far below 1e-7.")
    add_plain_argument(p)
    p.set_defaults(func=run)


def run(args):
    from ...gradcheck import gradcheck_all

    rows = gradcheck_all()
    width = max(len(r[0]) for r in rows)
    name_width = max(11, max(len(r[1]) for r in rows))
    print(f"{'layer':<{width}}  {'gradient':<{name_width}}  {'rel. error':>10}  ok")
    print("-" * (width + name_width + 19))
    failures = 0
    for layer, name, err in rows:
        ok = err < THRESHOLD
        failures += not ok
        print(f"{layer:<{width}}  {name:<{name_width}}  {err:10.2e}  {'yes' if ok else 'NO'}")
    print(f"\n{len(rows) - failures} of {len(rows)} gradients within {THRESHOLD:g}.")
    return 1 if failures else 0
