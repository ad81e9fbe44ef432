"""The report: ``report/report.md`` and its figures for a run folder, read only from what the stages wrote.

A report is a list of sections, each a function of the run's data (analysis.results.RunResults) returning
markdown lines: what the run is, the evolution, the headline numbers, floors, comparisons, encoding
robustness, accuracies by group (analysis.breakdowns), what was left out, the sweep, the connectome's
anatomy (analysis.anatomy), the figures (analysis.figures) and provenance.
"""

from __future__ import annotations

import platform
from pathlib import Path

from ..core import axes
from ..core.atomic import atomic_write_text, make_dirs
from ..core.errors import UserError
from ..core.provenance import VERSION
from ..core.readers import read_json
from ..data.prepare import source_text
from ..evals.context import data_root_for
from ..pipeline import corpora
from ..pipeline.sweep import describe_slice
from ..training.validation import report_slice
from .anatomy import report_section as anatomy_section
from .breakdowns import breakdown_figures, breakdown_lines
from .figures import figure_lines, report_figures
from .finding import finding_lines, one_seed_lines
from .learning_curves import section as learning_curves_section
from .results import RunResults
from .ablations import controls_section
from .sweep_report import sweep_section
from .transfer import transfer_section
from .tables import comparison_table, comparisons, encoding_table, families_note, floor_table, headline_table


def _source(rd: RunResults) -> str:
    """Where the run's text came from (its prepared data's meta.json), for the header."""
    try:
        return source_text(read_json(rd.layout.data_meta, missing={}, remedy=""))
    except UserError:  # a damaged meta.json: the report still says what it can
        return "source unreadable: data/meta.json is damaged"


def intro_lines(rd: RunResults) -> list[str]:
    """What the run is: model, data, loops, arms and seeds; a synthetic corpus said up front."""
    c = rd.config
    t = c.develop.train
    inner = (f"at most {t.iters} steps (a unit stops after {t.patience} evaluation{'s' * (t.patience != 1)} "
             "without improvement)"
             if t.patience else f"{t.iters} steps")
    lines = [
        f"# Generational connectome study `{c.name}`",
        "",
        f"Model preset `{c.model.preset}`, tokenizer `{c.data.tokenizer}`, data source `{c.data.source}`: "
        f"{_source(rd)} (evaluation data: {data_root_for(c) or 'not found'}); "
        f"{c.evolve.generations} generations x {c.evolve.train.iters} steps on {c.data.large_tokens:,} tokens; "
        f"inner loop {inner} on {c.data.small_tokens:,} tokens; "
        f"arms {', '.join(rd.arms)}; seeds {rd.seeds}.",
        "",
    ]
    several = corpora.describe(c)  # which stage read which corpus, where there are several
    if several:
        lines += [*(f"- {line}" for line in several), ""]
    if c.data.source == "synthetic":
        lines += ["> **Synthetic corpus.** No data folder was found, so this run trained on the package's generated text. "
                  "The pipeline ran end to end, but these numbers say nothing about language.", ""]
    return lines


def stats_section(rd: RunResults, rows: list[dict] | None = None) -> list[str]:
    """The report's statistics: floors, comparisons (``rows``, analysis.tables.comparisons) with Holm-adjusted p
    (primary and secondary families), encoding robustness."""
    floors, enc, rows = floor_table(rd), encoding_table(rd), comparisons(rd) if rows is None else rows
    tested = [families_note(rd, rows), "", *comparison_table(rows)] if len(rd.seeds) > 1 else one_seed_lines(rd)
    out = ["## Floors", "",
           "A metric is only informative above its floors: the guessing rate (accuracies) and the untrained model "
           "(step 0 of each arm, mean ± s.e. over seeds), shown beside the final step.", "", *floors, "",
           "## Comparisons between arms", "",
           "Seed-paired: a paired t-test over seeds (seed s of each arm shares data order and draws), the mean "
           "difference with its t interval, Cohen's d_z with its exact noncentral-t interval, and the smallest "
           "difference this design (these seeds, this seed-to-seed spread of differences) detects with 80% power at "
           "α = 0.05. Item-paired (accuracies): a bootstrap over seeds and items (10,000 replicates, seed 0), both "
           "arms scored on the same items matched by item id. p (Holm) adjusts each p-value within its family.", "",
           *tested, ""]
    if enc:
        out += ["## Encoding scores: cross-validation spread and ridge grid", "", *enc, ""]
    return out


def evolution_lines(rd: RunResults) -> list[str]:
    """The outer loop per generation: val loss after training and density after pruning."""
    if not rd.generations:
        return []
    lines = ["## Evolution", "", "| generation | val loss after training | density after pruning |", "|---|---|---|"]
    for g in rd.generations:
        vl = g.get("val_loss")
        lines.append(f"| {g['generation']} | {vl:.4f} | {g['total_density_after']:.4f} |" if vl is not None else
                     f"| {g['generation']} | — | {g['total_density_after']:.4f} |")
    return lines + [""]


def headline_lines(rd: RunResults) -> list[str]:
    """The headline table with what it rests on: seeds, a sweep's slice, the dense upper bound."""
    lines = ["## Headline numbers (final inner-loop step)", "",
             "Mean ± s.e. over seeds (ddof 1); the n column is the items (or tokens, words, sentences) behind each "
             "seed's number and how they were chosen.", ""]
    if axes.is_sweep(rd.config):
        lines += [f"This run is a sweep: the headline numbers, comparisons and development curves are its slice "
                  f"{describe_slice(rd.config)} (dense: the same tokens); the Sweep section has every unit.", ""]
    lines += [*headline_table(rd), ""]
    if rd.upper_bound is not None:
        where = ("the curves' selection slice, not the report slice the arms' losses above are read on"
                 if report_slice(rd.config.develop.train) else "the same validation windows")
        lines += [f"Upper bound (generation 0: dense model trained on the large split, scored on {where}): val loss "
                  f"{rd.upper_bound:.4f}.", ""]
    return lines


def left_out_lines(rd: RunResults) -> list[str]:
    """Result files not used, and tasks not evaluated, with why."""
    lines = []
    if rd.left_out:
        lines += ["**Left out:** these result files do not describe the run as configured now, or cannot be trusted, "
                  "and are not used above; re-run `connectomes study` to re-evaluate.", "",
                  *[f"- `{p.relative_to(rd.dir)}`: {why}" for p, why in rd.left_out], ""]
    if rd.unverified:
        lines += ["**Not verified:** these result files carry no digest of their content (written before results "
                  "were sealed, or edited by hand); their numbers are used above.", "",
                  *[f"- `{p.relative_to(rd.dir)}`" for p, _ in rd.unverified], ""]
    if rd.skipped:
        lines += [f"**Skipped evaluations:** {', '.join(sorted(rd.skipped))} — their data folders were not found "
                  "(set CONNECTOMES_DATA).", ""]
    return lines


def provenance_lines(rd: RunResults) -> list[str]:
    return ["", "## Provenance", "",
            f"connectomes {VERSION}, Python {platform.python_version()}, {platform.platform()}. "
            f"The resolved config is `{rd.layout.config}`; data hashes are in `data/meta.json`; every "
            "evaluation JSON carries its data file hashes and model hash.", ""]


def write_report(run_dir: Path) -> Path:
    """Write ``report/`` (PNG figures + report.md) for a run folder; returns the report.md path."""
    rd = RunResults(run_dir)
    out = rd.layout.report
    make_dirs(out)
    # drawn first: a figure that fails leaves no half-written report.md
    figures = figure_lines([*report_figures(rd), *breakdown_figures(rd)], out)
    rows = comparisons(rd)
    lines = [*intro_lines(rd), *finding_lines(rd, rows), *evolution_lines(rd), *headline_lines(rd),
             *stats_section(rd, rows), *breakdown_lines(rd), *learning_curves_section(rd, out),
             *left_out_lines(rd), *sweep_section(rd, out), *controls_section(rd, out), *transfer_section(rd, out), *anatomy_section(rd.dir, out),
             "## Figures", "", *figures,
             *provenance_lines(rd)]
    atomic_write_text(rd.layout.report_md, "\n".join(lines))
    return rd.layout.report_md
