"""What a run folder's result files say: read once, damage-tolerant, bound to the config as it is now.

:class:`RunResults` reads a run folder for the report: its typed config, its units, every evaluation JSON
(left out and named when it no longer describes the run: another limit, seed, options, data root,
validation data or weights, or unreadable; a task's result made by an older revision of that task, by
``evals.registry.outdated``, is left out alone), every unit's metrics.jsonl and the evolution's records.
:func:`results_table` is the public face of the same reading, ``connectomes.results(RUN)``: one tidy
table with a row per number (every sweep axis of core.axes: shape, lineage, generation, tokens; then arm,
seed, step, task, metric, value, n, selection, source, stale, status, why), which the report's tables are built
from and researchers can plot from. Every result file has rows: a number's ``status`` is current, stale (made
under another config), unverified (its file carries no digest) or unreadable (a file that cannot be read or
was changed after it was written: one row without a value, ``why`` says what is wrong).

Every file here is read through the package's readers (core.readers) by :func:`read_json`,
:func:`read_result` and :func:`read_metrics`: a damaged file reads as missing and is named in the
report with why, never a traceback in the middle of a report. Results carry a digest of their own
content (core.integrity.sealed); one whose numbers were changed after it was written is left out and
named as changed. Results written before they were sealed (a whole file without any digest) are
used and named as not verified, so older run folders still report.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..core import axes
from ..core.errors import UserError
from ..core.integrity import seal_problem, seal_state
from ..core.layout import RunLayout
from ..core.readers import read_json as _read_json
from ..core.readers import read_jsonl as _read_jsonl
from ..evals.context import changed, context_for
from ..evals.registry import Metric, data_changed, dig, outdated, tasks  # dig: results and figures import it from here
from ..pipeline import corpora
from ..pipeline.config import Config
from ..pipeline.evolve import read_bits_record, read_generation_record
from ..pipeline.run import existing_run
from ..pipeline.sweep import Unit, connectome_generation, headline_unit, lineages, shapes, trained_at, units
from ..training.checkpoint import best_step, finished_step
from ..training.validation import REPORT_LOSS

UNVERIFIED = "carries no digest of its content (written before results were sealed, or edited): used, not verified"
# the step argument of RunResults's lookups that means each unit's own final step: develop.train.iters, or where
# develop.train.patience stopped it
FINAL = "final"
BEST = "best"  # as a step: the step each unit kept (keep_best), where early stopping reports it
# the selection column of a logged report_loss: the windows after the curve's, where the val_loss task reads
REPORT_CURVE = "the training curve's report slice (the val tokens after its windows)"
# every sweep axis is a column (core.axes declares them), so a new axis cannot be left out of the table
COLUMNS = (*(a.name for a in axes.AXES), "evolved_on", "arm", "seed", "step", "task", "metric", "value", "n", "selection", "source",
           "stale", "status", "why")
# a row's status: every result file has rows, none is dropped (issue 34); only "current" numbers enter the report
CURRENT, STALE, UNREADABLE, UNVERIFIED_STATUS = "current", "stale", "unreadable", "unverified"


def _why(e: UserError, path: Path) -> str:
    """A reader's error without the file name it starts with (the report lists the file beside it)."""
    text = str(e)
    return text[len(str(path)):].strip() if text.startswith(str(path)) else text


def read_result(path: Path) -> tuple[object, str | None]:
    """(a JSON file's content, None), or (None, why it cannot be used: unreadable, damaged)."""
    try:
        return _read_json(path, remedy="", expect=None), None
    except UserError as e:
        return None, f"unreadable: {_why(e, Path(path))}"


def read_json(path: Path):
    """A JSON file's content, or None when it is absent or cannot be read or parsed."""
    return None if not Path(path).exists() else read_result(path)[0]


def read_metrics(path: Path) -> tuple[list[dict], str | None, str | None]:
    """The usable records of a metrics.jsonl (none when it is absent), why any were left out (a damaged line
    before the last: a cut last line is a kill's and is dropped quietly; records changed after they were
    written, or without a digest among sealed ones), and a note when the whole file predates digests."""
    try:
        lines = _read_jsonl(path, remedy="", missing=None)
    except UserError as e:
        return [], f"unreadable: {_why(e, Path(path))}", None
    if lines is None:
        return [], None, None
    states = [seal_state(rec) for rec in lines.records]
    if states and all(s == "unsealed" for s in states):
        return lines.records, None, UNVERIFIED
    bad = [i for i, s in enumerate(states, 1) if s != "intact"]
    kept = [rec for rec, s in zip(lines.records, states) if s == "intact"]
    why = None if not bad else (f"{len(bad)} of its {len(states)} records (the {_ordinals(bad)}) carry no digest or "
                                "were changed after they were written; they are not used")
    return kept, why, None


def _ordinals(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:5])) + ("..." if len(numbers) > 5 else "")
    return f"record{'s' if len(numbers) > 1 else ''} {shown}"


def bits_record(layout: RunLayout, g: int) -> dict | None:
    """Generation ``g``'s connectome size record, None when absent or damaged (its rows are then left out)."""
    try:
        return read_bits_record(layout, g)
    except UserError:
        return None


def read_jsonl(path: Path) -> list[dict]:
    """The usable records of a JSON-lines file (none when it is absent or damaged)."""
    return read_metrics(path)[0]


def headline_metrics(config: Config) -> list[tuple[str, Metric]]:
    """(task, metric) for the run's tasks in the order the config lists them; each task's spec declares its
    headline metrics."""
    specs = tasks()
    names = dict.fromkeys(config.eval.tasks + config.eval.step_tasks)
    return [(n, m) for n in names if n in specs for m in specs[n].metrics]


def _staleness(res, request: dict, val_sha: dict | None, step_dir: Path) -> str | None:
    """Why an evaluation JSON no longer describes the run (None when it does)."""
    if not isinstance(res, dict) or not isinstance(res.get("tasks"), dict):
        return "unreadable (not an evaluation result)"
    if seal_state(res) == "changed":
        return f"not used: it {seal_problem(res)}"
    diff = changed(res, request)
    if diff:
        return "stale: made with another " + ", ".join(diff) + " than the config now says"
    val = res["tasks"].get("val_loss")
    if isinstance(val, dict) and val_sha is not None and val.get("shard_sha256") not in (None, val_sha):
        return "stale: the validation shards changed since"
    manifest = read_json(step_dir / "manifest.json")
    weights = manifest.get("sha256", {}).get("model.safetensors") if isinstance(manifest, dict) else None
    if weights is not None and res.get("model_sha256") != weights:
        return "stale: the step's weights changed since"
    return None


def task_stale(task: str, result, ctx) -> str | None:
    """Why one task's result in a current evaluation JSON is stale: made by an older revision of the task, or
    scored on other data files than the task's folder holds now (a paradigm removed); None when neither."""
    return outdated(task, result) or data_changed(task, result, ctx)


def bind_results(layout: RunLayout, config: Config, todo: list[Unit]):
    """The evaluation JSONs of the given units, bound to the run as configured now: ({unit: {step: result}},
    skipped task names, [(file, why left out)], {unit: {step: stale result}}, {unit: {step: why unusable}}). A
    JSON made with another limit, sample seed, options, data root, validation data or weights, or one that
    cannot be read, is left out and named, never mixed in."""
    ctx = context_for(config)
    request = ctx.request()
    evals, stale, unusable, skipped, left_out = {}, {}, {}, set(), []
    digests: dict = {}  # the val digests of each corpus, read once
    for u in todo:
        at, a, s = layout.unit(u.tag), u.arm, u.seed
        if u.corpus not in digests:
            digests[u.corpus] = _val_digests(layout, config, u.corpus)
        val_sha = digests[u.corpus]
        evals[u], stale[u], unusable[u] = {}, {}, {}
        for step, p in at.eval_steps(a, s).items():
            res, why = read_result(p)
            why = why or _staleness(res, request, val_sha, at.develop(a, s).step(step))
            if why is None:
                evals[u][step] = res
                left_out += [(p, f"stale: {old}; that task's numbers are not used (the file's other tasks are)")
                             for t, r in res["tasks"].items() if (old := task_stale(t, r, ctx))]
            else:
                left_out.append((p, why))
                if why.startswith("stale"):  # a current result no longer: shown flagged in the table
                    stale[u][step] = res
                else:  # unreadable, or changed after it was written: a row without numbers says so
                    unusable[u][step] = why
        sk = at.skipped(a, s)
        if sk.exists():
            info = read_json(sk)
            if isinstance(info, dict):
                skipped.update(info.get("skipped_tasks", []))
            else:
                left_out.append((sk, "unreadable"))
    return evals, skipped, left_out, stale, unusable


def _val_digests(layout: RunLayout, config: Config, corpus: str | None) -> dict | None:
    """The val shards' digests of the corpus a unit developed on (None: the run's own), which its val_loss scored."""
    meta = read_json(corpora.folder(layout, config.data, corpus) / "meta.json") or {}
    return meta.get("splits", {}).get("val", {}).get("sha256") if isinstance(meta, dict) else None


class RunResults:
    """A run's results as the analysis reads them, once: its config and units, its evaluation JSONs bound to
    the config as it is now, every unit's metrics.jsonl and the evolution's records."""

    def __init__(self, run_dir: Path):
        folder = existing_run(run_dir)
        self.dir, self.config, self.layout = folder.dir, folder.cfg, folder.layout
        config, layout = self.config, self.layout
        self.arms, self.seeds = list(config.develop.arms), list(config.develop.seeds)
        self.final_step = FINAL  # pass it as a step: each unit's own final step (final_steps)
        self.ctx = context_for(config)  # what a task's result is checked against (its data files' digests)
        self.units = units(config)
        self.left_out = []
        self.unreadable_metrics: dict[Path, str] = {}  # metrics.jsonl files that could not be read at all: why
        # {unit: step} where each finished (None while unfinished) and the best step it kept (keep_best)
        trained = {u: layout.unit(u.tag).develop(u.arm, u.seed) for u in self.units}
        self.finished = {u: self._read_step(finished_step, t, t.done) for u, t in trained.items()}
        self.best_steps = {u: self._read_step(best_step, t, t.best) if config.develop.train.keep_best else None
                           for u, t in trained.items()}
        self.final_steps = {u: config.develop.train.iters if n is None else n for u, n in self.finished.items()}
        # the evolution shown is the headline lineage's (the run's own evolve/ unless evolve.seeds is set)
        evolved = layout.lineage(lineages(config)[0], shapes(config)[0])
        self.unit_evals, self.skipped, left_out, self.stale_evals, self.unusable_evals = \
            bind_results(layout, config, self.units)
        self.left_out += left_out
        # used but not vouched for by a digest: [(file, why)], named in the report
        self.unverified = [(layout.unit(u.tag).eval_step(u.arm, u.seed, step), UNVERIFIED)
                           for u, by_step in self.unit_evals.items() for step, res in by_step.items()
                           if seal_state(res) == "unsealed"]
        self.generations = self._generations(evolved)
        self.gen_metrics = [self._metrics(evolved.generation(g).metrics) for g in evolved.generations_present()
                            if evolved.generation(g).metrics.exists()]
        self.unit_metrics = {u: self._metrics(layout.unit(u.tag).develop(u.arm, u.seed).metrics) for u in self.units}
        # the headline tables, comparisons and curves report one unit per (arm, seed): a sweep's headline slice
        self.headline_units = {(a, s): headline_unit(config, a, s) for a in self.arms for s in self.seeds}
        self.evals = {k: self.unit_evals.get(u, {}) for k, u in self.headline_units.items()}
        self.dev_metrics = {k: self.unit_metrics.get(u, []) for k, u in self.headline_units.items()}
        self.table = table_rows(self)
        self._index = {(r["unit"], r["step"], r["task"], r["metric"]): r["value"] for r in self.table
                       if r["status"] in (CURRENT, UNVERIFIED_STATUS) and r["source"] == "eval"}

    def _read_step(self, read, trained, path: Path) -> int | None:
        """The step a unit's record ``path`` names (done.json, best.json); a damaged one is named and reads as none."""
        try:
            return read(trained)
        except UserError as e:
            self.left_out.append((path, f"unreadable: {_why(e, path)}"))
            return None

    def at(self, unit: Unit, step) -> int:
        """``step``, or the unit's own final step for :data:`FINAL`, its kept step for :data:`BEST` (None without)."""
        return self.final_steps[unit] if step == FINAL else self.best_steps.get(unit) if step == BEST else step

    def _metrics(self, path: Path) -> list[dict]:
        records, why, note = read_metrics(path)
        if why is not None:
            self.left_out.append((path, why))
            if why.startswith("unreadable"):
                self.unreadable_metrics[path] = why
        if note is not None:
            self.unverified.append((path, note))
        return records

    def _generations(self, evolved: RunLayout) -> list[dict]:
        """The generation records present, in order; a damaged one is named and ends the list (a later
        generation was built on it)."""
        out = []
        for g in evolved.generations_present():
            try:
                rec = read_generation_record(evolved, g)
            except UserError as e:
                self.left_out.append((evolved.generation_record(g), f"unreadable: {_why(e, evolved.generation_record(g))}"))
                break
            if rec is not None:
                out.append(rec)
        return out

    def task_result(self, arm: str, seed: int, step: int, task: str):
        """A current result of ``task`` (None when absent or made by an older revision of the task)."""
        res = self.evals.get((arm, seed), {}).get(self.at(self.headline_units[(arm, seed)], step))
        r = None if res is None else res.get("tasks", res).get(task)
        return None if task_stale(task, r, self.ctx) else r

    def unit_metric(self, unit: Unit, step: int, task: str, metric: Metric) -> float | None:
        """A number of the results table (current results only)."""
        return self._index.get((unit, self.at(unit, step), task, metric.label))

    def metric(self, arm: str, seed: int, step: int, task: str, metric: Metric) -> float | None:
        return self.unit_metric(self.headline_units[(arm, seed)], step, task, metric)

    def first_result(self, task: str, step: int) -> dict | None:
        """Any arm's and seed's result for ``task`` at ``step`` (what every arm shares: n, selection, CV scheme)."""
        return next((r for a in self.arms for s in self.seeds if (r := self.task_result(a, s, step, task))), None)

    @property
    def upper_bound(self) -> float | None:
        """Generation 0 = a dense model trained on the large split: the paper's upper bound."""
        return self.generations[0].get("val_loss") if self.generations else None

    def connectome_generation(self, unit: Unit) -> int:
        return connectome_generation(self.config, unit)


def _eval_rows(rd: RunResults, u: Unit, step: int, res: dict, stale: bool) -> list[dict]:
    """One row per headline metric of every task in an evaluation result."""
    rows = []
    unsealed = seal_state(res) == "unsealed"
    for task, metric in headline_metrics(rd.config):
        result = res.get("tasks", {}).get(task)
        value = dig(result, metric.path) if isinstance(result, dict) else None
        if value is None:
            continue
        sel = result.get("selection") if isinstance(result.get("selection"), dict) else {}
        rows.append({"unit": u, "step": step, "task": task, "metric": metric.label, "value": value,
                     "n": sel.get("n"), "selection": tasks()[task].describe(result, metric), "source": "eval",
                     **_status(stale or task_stale(task, result, rd.ctx) is not None, unsealed)})
    return rows


def _status(stale: bool, unsealed: bool) -> dict:
    """The stale, status and why columns of a row whose number was read."""
    if stale:
        return {"stale": True, "status": STALE, "why": "made under another config, or by an older task revision"}
    return {"stale": False, "status": UNVERIFIED_STATUS if unsealed else CURRENT, "why": UNVERIFIED if unsealed else None}


def _unreadable_row(u: Unit, step, source: str, why: str) -> dict:
    """The one row of a result file whose numbers cannot be used: no value, its status and why."""
    return {"unit": u, "step": step, "task": None, "metric": None, "value": math.nan, "n": None, "selection": None,
            "source": source, "stale": False, "status": UNREADABLE, "why": why}


def table_rows(rd: RunResults) -> list[dict]:
    """The results table's rows (with the Unit itself; results_table spreads it into columns): every
    headline metric of every evaluation JSON, current ones and stale ones (flagged), and every logged
    validation loss of every unit's metrics.jsonl (source "metrics.jsonl")."""
    rows = []
    logged = next(((n, s) for n, s in tasks().items() if s.logged), None)
    for u in rd.units:
        for step, res in sorted(rd.unit_evals[u].items()):
            rows += _eval_rows(rd, u, step, res, stale=False)
        for step, res in sorted(rd.stale_evals[u].items()):
            rows += _eval_rows(rd, u, step, res, stale=True)
        rows += [_unreadable_row(u, step, "eval", why) for step, why in sorted(rd.unusable_evals[u].items())]
        path = rd.layout.unit(u.tag).develop(u.arm, u.seed).metrics
        if path in rd.unreadable_metrics:
            rows.append(_unreadable_row(u, None, "metrics.jsonl", rd.unreadable_metrics[path]))
        if logged is None:
            continue
        task, spec = logged
        unsealed = any(p == path for p, _ in rd.unverified)
        for rec in rd.unit_metrics[u]:
            for field, selection, label in ((spec.logged, "the training curve's windows", spec.metrics[0].label),
                                            (REPORT_LOSS, REPORT_CURVE, f"{spec.metrics[0].label}, report slice")):
                value = rec.get(field)
                if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(rec.get("step"), int):
                    rows.append({"unit": u, "step": rec["step"], "task": task, "metric": label,
                                 "value": float(value), "n": None, "selection": selection,
                                 "source": "metrics.jsonl", **_status(False, unsealed)})
    return rows


def _evolved_on(config: Config, unit: Unit) -> str | None:
    """The corpus the unit's lineage evolved on, in a study of several corpora (None otherwise, and for dense)."""
    several = config.develop.corpora or config.evolve.corpus_by_seed or config.data.corpora
    return corpora.evolved_on(config, unit) if several else None


def results_table(run_dir: str | Path):
    """``connectomes.results(RUN)``: a pandas DataFrame with one row per number of the run folder (columns
    :data:`COLUMNS`). The axis columns say what the unit trained at (pipeline.sweep.trained_at): shape and
    lineage (None when not swept), generation (the one its connectome comes from, None for an arm that
    inherits none), tokens (its developmental tokens per pass: the whole small split when not swept) and corpus (the
    corpus it developed on, None when not swept); evolved_on is the corpus its lineage evolved on, in a study of
    several corpora."""
    import pandas as pd

    rd = RunResults(Path(run_dir))
    records = [{**trained_at(rd.config, r["unit"]), "evolved_on": _evolved_on(rd.config, r["unit"]), "arm": r["unit"].arm,
                "seed": r["unit"].seed, **{k: v for k, v in r.items() if k != "unit"}} for r in rd.table]
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))
