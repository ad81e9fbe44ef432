"""Re-adjust a published report's comparisons under one test per comparison (issue 28).

Reports written before issue 28 tested an accuracy twice, by a seed t and by a bootstrap over seeds and items,
and both p-values entered the secondary Holm family. The current rule keeps one test per comparison (the item
bootstrap for an accuracy with per-item outcomes, the seed t otherwise). This reads a report.md's comparison
table, drops the seed-t rows of comparisons that also have a bootstrap row, and re-applies Holm within each
family with the package's own `analysis.stats.holm_families`: the numbers the report would print now, without
re-running the study (the raw p-values do not change).

    python benchmarks/refamily.py docs/replicate-cpu/report.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from connectomes.analysis.stats import holm_families


def rows(report: Path) -> list[dict]:
    """The comparison table's rows: metric, pair, test, raw p (None for '—'), family, published adjusted p."""
    out = []
    for line in report.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and " − " in cells[1] and cells[6] in ("primary", "secondary"):
            p = None if cells[5] == "—" else float(cells[5])
            out.append({"metric": cells[0], "pair": cells[1], "test": cells[2], "p": p, "family": cells[6],
                        "published": cells[7]})
    return out


def one_test_each(table: list[dict]) -> list[dict]:
    boot = {(r["metric"], r["pair"]) for r in table if r["test"].startswith("paired bootstrap")}
    return [r for r in table if not (r["test"].startswith("paired t") and (r["metric"], r["pair"]) in boot)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    args = ap.parse_args()
    table = rows(args.report)
    kept = one_test_each(table)
    adjusted = holm_families([r["p"] for r in kept], [r["family"] for r in kept])
    print(f"{args.report}: {len(table)} comparisons published, {len(kept)} under one test per comparison "
          f"({sum(r['family'] == 'secondary' for r in kept)} secondary)")
    for r, a in zip(kept, adjusted):
        if a is not None and (a < 0.1 or r["published"] not in ("1", "—")):
            print(f"  {r['family']:9s} {r['metric']} | {r['pair']} | {r['test']}: p {r['p']:.3g}, "
                  f"Holm {a:.3g} (published {r['published']})")


if __name__ == "__main__":
    main()
