"""Print the summary CSV of ``npsenet ablate`` as a Markdown table (for docs/ablations.md).

    python tools/ablation_table.py docs/assets/results/ablations/summary.csv
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npsenet.analysis.ablate import read_csv  # noqa: E402


def markdown(rows):
    lines = ["| table | setting | paper top-1 / top-5 (%) | here: test error (%), mean ± std "
             "| seeds | epochs | parameters | mult-adds |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        paper = ("–" if row["paper_top1"] is None
                 else f"{row['paper_top1']:.2f} / {row['paper_top5']:.2f}"
                 + ("" if row.get("paper_checked", 1) else " *"))
        std = row["std_error"]
        std = "n/a" if std is None or math.isnan(std) else f"{std:.2f}"
        lines.append(f"| {row['source']} | {row['label']} (`{row['cell']}`) | {paper} | "
                     f"{row['mean_error']:.2f} ± {std} | {row['seeds']} | {row['epochs']} | "
                     f"{row['params']:,} | {row['macs']:,} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", help="summary.csv written by npsenet ablate")
    args = parser.parse_args(argv)
    try:
        rows = read_csv(args.summary)
    except OSError as exc:
        print(f"ablation_table: error: cannot read {args.summary} ({exc.strerror}); pass the "
              "summary.csv that npsenet ablate wrote.", file=sys.stderr)
        return 2
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
