"""Figures (PNG) and ``report.md`` for a run folder, read only from what the stages wrote.

Across seeds every number is a mean with its standard error (ddof=1). Arms are compared pairwise:
seed-paired (the same seed shares the data order), and for accuracies also item-paired by a bootstrap
over seeds and items; effect sizes carry 95% intervals and p-values are Holm-adjusted over the whole
comparisons table (connectomes.stats). Each metric is shown beside its floors (chance, step 0).
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import numpy as np

from . import __version__, arms
from .atomic import atomic_write_text
from .layout import RunLayout



def headline_metrics(rd: "RunData") -> list[tuple[str, str, tuple[str, ...], bool]]:
    """(label, task, path into the task's result, higher is better) for the run's tasks, in the order
    the config lists them; each task's spec declares its headline metrics."""
    from .evals import tasks

    specs = tasks()
    names = dict.fromkeys(rd.cfg["eval"]["tasks"] + rd.cfg["eval"]["step_tasks"])
    return [(m.label, n, m.path, m.higher_is_better) for n in names if n in specs for m in specs[n].metrics]


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def dig(obj, path):
    """Follow ``path`` into nested dicts; a leaf dict with "value"/"mean"/"r" yields that number."""
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    if isinstance(obj, dict):
        for k in ("value", "mean", "r"):
            if k in obj and isinstance(obj[k], (int, float)):
                return float(obj[k])
        return None
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return float(obj)
    return None


def _read_json(path: Path):
    """A JSON file's content, or None when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _current_inputs(layout: RunLayout, cfg: dict) -> tuple[dict, dict | None]:
    """What an evaluation made now would record: the runner's request (limit, sample seed, options, data root)
    and the digests of the prepared validation shards."""
    from .config import Config, from_dict
    from .evals.runner import _request
    from .study import config_eval_context

    config = from_dict(Config, cfg)
    ctx = config_eval_context(config, None, None)
    meta = _read_json(RunLayout(layout.root, Path(config.data.dir) if config.data.dir else None).data_meta) or {}
    return _request(ctx), meta.get("splits", {}).get("val", {}).get("sha256")


def _staleness(res, request: dict, val_sha: dict | None, step_dir: Path) -> str | None:
    """Why an evaluation JSON no longer describes the run (None when it does)."""
    if not isinstance(res, dict) or not isinstance(res.get("tasks"), dict):
        return "unreadable (not an evaluation result)"
    changed = [k for k in request if res.get(k) != request[k]]
    if changed:
        return "stale: made with another " + ", ".join(changed) + " than the config now says"
    val = res["tasks"].get("val_loss")
    if isinstance(val, dict) and val_sha is not None and val.get("shard_sha256") not in (None, val_sha):
        return "stale: the validation shards changed since"
    manifest = _read_json(step_dir / "manifest.json")
    weights = manifest.get("sha256", {}).get("model.safetensors") if isinstance(manifest, dict) else None
    if weights is not None and res.get("model_sha256") != weights:
        return "stale: the step's weights changed since"
    return None


def bind_results(layout: RunLayout, cfg: dict, units: list):
    """The evaluation JSONs that belong to the run as configured now: ({unit: {step: result}}, skipped task
    names, [(file, why left out)]) for the given sweep units (connectomes.sweep.Unit). A JSON made with another
    limit, sample seed, options, data root, validation data or weights, or one that cannot be read, is left
    out and named, never mixed in."""
    request, val_sha = _current_inputs(layout, cfg)
    evals, skipped, left_out = {}, set(), []
    for u in units:
        at, a, s = layout.unit(u.tag), u.arm, u.seed
        steps = {}
        for step, p in at.eval_steps(a, s).items():
            res = _read_json(p)
            why = _staleness(res, request, val_sha, at.develop(a, s).step(step)) if res is not None else "unreadable"
            if why is None:
                steps[step] = res
            else:
                left_out.append((p, why))
        evals[u] = steps
        sk = at.skipped(a, s)
        if sk.exists():
            info = _read_json(sk)
            if isinstance(info, dict):
                skipped.update(info.get("skipped_tasks", []))
            else:
                left_out.append((sk, "unreadable"))
    return evals, skipped, left_out


def mean_se(values: list[float]) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se, len(v)


class RunData:
    """Everything the report needs, loaded once from the run folder."""

    def __init__(self, run_dir: Path):
        from .config import Config, from_dict, read_run_config
        from .evolve import generation_summaries
        from .sweep import headline_unit, lineages, units

        self.dir = Path(run_dir)
        self.layout = layout = RunLayout(self.dir)
        self.cfg = read_run_config(layout.config)
        self.arms = self.cfg["develop"]["arms"]
        self.seeds = self.cfg["develop"]["seeds"]
        self.config = config = from_dict(Config, self.cfg)
        self.units = units(config)
        # the evolution shown is the headline lineage's (the run's own evolve/ unless evolve.seeds is set)
        evolved = layout.lineage(lineages(config)[0])
        self.generations = generation_summaries(evolved.root)
        gen_metrics = [evolved.generation(g).metrics for g in evolved.generations_present()]
        self.gen_metrics = [_read_jsonl(p) for p in gen_metrics if p.exists()]
        self.unit_evals, self.skipped, self.left_out = bind_results(layout, self.cfg, self.units)
        # the headline tables, comparisons and curves report one unit per (arm, seed): a sweep's headline slice
        self.headline_units = {(a, s): headline_unit(config, a, s) for a in self.arms for s in self.seeds}
        self.evals = {k: self.unit_evals.get(u, {}) for k, u in self.headline_units.items()}
        self.unit_metrics = {u: _read_jsonl(layout.unit(u.tag).develop(u.arm, u.seed).metrics) for u in self.units}
        self.dev_metrics = {k: self.unit_metrics.get(u, []) for k, u in self.headline_units.items()}
        self.final_step = self.cfg["develop"]["train"]["iters"]

    def task_result(self, arm: str, seed: int, step: int, task: str):
        res = self.evals.get((arm, seed), {}).get(step)
        if res is None:
            return None
        tasks = res.get("tasks", res)
        return tasks.get(task)

    def metric(self, arm, seed, step, task, path):
        r = self.task_result(arm, seed, step, task)
        return dig(r, path) if r is not None else None

    @property
    def upper_bound(self) -> float | None:
        """Generation 0 = a dense model trained on the large split: the paper's upper bound."""
        return self.generations[0].get("val_loss") if self.generations else None


# ---------------------------------------------------------------------------------------------
# figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fig_loss(rd: RunData, out: Path) -> Path:
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for arm in rd.arms:
        curves = {}
        for s in rd.seeds:
            for rec in rd.dev_metrics[(arm, s)]:
                if rec.get("val_loss") is not None:
                    curves.setdefault(rec["step"], []).append(rec["val_loss"])
        if not curves:
            continue
        steps = sorted(curves)
        m = np.array([np.mean(curves[k]) for k in steps])
        lo = np.array([np.min(curves[k]) for k in steps])
        hi = np.array([np.max(curves[k]) for k in steps])
        ax1.plot(steps, m, label=f"{arms.label(arm)} (n={len(rd.seeds)})", color=arms.color(arm))
        ax1.fill_between(steps, lo, hi, alpha=0.2, color=arms.color(arm))
    if rd.upper_bound is not None:
        ax1.axhline(rd.upper_bound, ls="--", color="k", lw=1, label="dense on large (gen 0)")
    ax1.set_xlabel("inner-loop step")
    ax1.set_ylabel("validation loss (nats/token)")
    ax1.set_title("Development: mean over seeds, band = min..max")
    if ax1.get_legend_handles_labels()[0]:  # no curves before the first development step is logged
        ax1.legend(fontsize=8)
    offset = 0
    for g, recs in enumerate(rd.gen_metrics):
        pts = [(r["step"], r["val_loss"]) for r in recs if r.get("val_loss") is not None]
        if pts:
            xs, ys = zip(*pts)
            ax2.plot([offset + x for x in xs], ys, marker=".", label=f"gen {g}")
            offset += max(xs)
    ax2.set_xlabel("outer-loop step (generations concatenated)")
    ax2.set_ylabel("validation loss")
    ax2.set_title("Evolution: each generation starts pruned and re-initialised")
    if rd.gen_metrics:
        ax2.legend(fontsize=7, ncol=2)
    return _save(fig, out / "val_loss.png")


def fig_nlp(rd: RunData, out: Path) -> Path | None:
    items = [(l, t, p) for l, t, p, _ in headline_metrics(rd) if t in ("hellaswag", "mmlu")]
    items = [it for it in items if any(rd.metric(a, s, rd.final_step, it[1], it[2]) is not None for a in rd.arms for s in rd.seeds)]
    if not items:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(items), figsize=(3.2 * len(items), 3.6), squeeze=False)
    for ax, (label, task, path) in zip(axes[0], items):
        for i, arm in enumerate(rd.arms):
            m, se, n = mean_se([rd.metric(arm, s, rd.final_step, task, path) for s in rd.seeds])
            ax.bar(i, m, yerr=0 if math.isnan(se) else se, color=arms.color(arm), capsize=4)
        ax.set_xticks(range(len(rd.arms)), [arms.label(a) for a in rd.arms], rotation=20, fontsize=8)
        ax.axhline(0.25, ls=":", color="gray", lw=1)
        ax.set_title(label, fontsize=9)
    fig.suptitle("Final step, mean ± s.e. over seeds (dotted: chance 0.25)", fontsize=10)
    return _save(fig, out / "nlp.png")


def fig_reading_times(rd: RunData, out: Path) -> Path | None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    drew = False
    for arm in rd.arms:
        steps = sorted({st for s in rd.seeds for st in rd.evals.get((arm, s), {})})
        pts = []
        for st in steps:
            m, se, n = mean_se([rd.metric(arm, s, st, "reading_times", ("all_words", "r")) for s in rd.seeds])
            if n:
                pts.append((st, m, se))
        if not pts:
            continue
        drew = True
        xs, ms, ses = zip(*pts)
        ses = [0 if math.isnan(e) else e for e in ses]
        ax.errorbar(xs, ms, yerr=ses, marker="o", capsize=3, label=arms.label(arm), color=arms.color(arm))
        k = int(np.argmax(ms))
        ax.scatter([xs[k]], [ms[k]], s=160, facecolors="none", edgecolors=arms.color(arm), linewidths=2)
    if not drew:
        plt.close(fig)
        return None
    ax.set_xlabel("inner-loop step")
    ax.set_ylabel("Pearson r (surprisal vs reading time)")
    ax.set_title("Reading-time alignment over development (circle = peak)")
    ax.legend(fontsize=8)
    return _save(fig, out / "reading_times.png")


def fig_fmri(rd: RunData, out: Path) -> Path | None:
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    drew = False
    for arm in rd.arms:
        per_seed = []
        for s in rd.seeds:
            r = rd.task_result(arm, s, rd.final_step, "fmri")
            if r and isinstance(r.get("per_layer"), list):
                per_seed.append([dig(x, ()) if not isinstance(x, dict) else dig(x, ("r",)) for x in r["per_layer"]])
        if not per_seed:
            continue
        drew = True
        arr = np.array(per_seed, dtype=float)
        m = arr.mean(0)
        se = arr.std(0, ddof=1) / math.sqrt(len(arr)) if len(arr) > 1 else np.zeros_like(m)
        ax1.errorbar(range(len(m)), m, yerr=se, marker="o", capsize=3, label=arms.label(arm), color=arms.color(arm))
    ax1.set_xlabel("layer (0 = embedding)")
    ax1.xaxis.get_major_locator().set_params(integer=True)
    first = _first_result(rd, "fmri", rd.final_step) or _first_result(rd, "langloc", rd.final_step) or {}
    cv = f"repeated {first.get('partitions', 5)}×{first.get('folds', 5)}-fold CV"
    ax1.set_ylabel(f"encoding r ({cv}), ± s.e. over seeds")
    ax1.set_title("fMRI language network, final step")
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(fontsize=8)
    width = 0.8 / max(1, len(rd.arms))
    for i, arm in enumerate(rd.arms):
        for j, key in enumerate(("top1", "top10")):
            m, se, n = mean_se([rd.metric(arm, s, rd.final_step, "langloc", (key, "r")) for s in rd.seeds])
            if n:
                drew = True
                ax2.bar(j + i * width, m, width, yerr=0 if math.isnan(se) else se, capsize=3, color=arms.color(arm),
                        label=arms.label(arm) if j == 0 else None)
    ax2.set_xticks([0.4 - width / 2, 1.4 - width / 2], ["top 1% units", "top 10% units"])
    ax2.set_title("via language-selective units")
    ax2.set_ylabel(f"encoding r ({cv})")
    if not drew:
        plt.close(fig)
        return None
    return _save(fig, out / "fmri.png")


def fig_connectome(rd: RunData, out: Path) -> Path | None:
    from .sweep import lineages

    path_c = rd.layout.lineage(lineages(rd.config)[0]).connectome
    if not path_c.exists():
        return None
    from .connectome_file import load_connectome

    stats = load_connectome(path_c).stats()
    rows = stats["tensors"] if isinstance(stats, dict) and "tensors" in stats else stats
    names = [r["name"] for r in rows]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names)), 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [r["density"] for r in rows], 0.4, label="density (alive fraction)")
    ax.bar(x + 0.2, [r["sign_balance"] for r in rows], 0.4, label="fraction of alive weights positive")
    G = rd.cfg["evolve"]["generations"]
    ax.axhline((1 - rd.cfg["evolve"]["prune_fraction"]) ** G, ls="--", color="k", lw=1, label=f"0.8^{G}")
    ax.set_xticks(x, [n.replace("transformer.", "").replace(".weight", "") for n in names], rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("The connectome, per tensor")
    return _save(fig, out / "connectome.png")


# ---------------------------------------------------------------------------------------------
# tables


def _cell(values: list) -> str:
    m, se, n = mean_se(values)
    return "—" if n == 0 else f"{m:.4f} ± {se:.4f}" if not math.isnan(se) else f"{m:.4f} (one seed)"


def sample_note(task: str, result: dict | None, path: tuple[str, ...]) -> str:
    """n and how the items were chosen, from one evaluation result (the same for every arm and seed)."""
    if not result:
        return "—"
    sel = result.get("selection")
    if sel:  # the accuracy tasks: a seeded sample or all items
        seed = f", seed {sel['seed']}" if "seed" in sel else ""
        return f"{sel['n']:,} of {sel['of']:,} items, {sel['selection']}{seed}"
    if task == "val_loss":
        return f"{result.get('tokens', 0):,} tokens: the first of the val split, the training curves' windows"
    if task == "reading_times":
        leaf = result.get(path[0], {})
        return f"all {leaf.get('n', result.get('words', 0)):,} words with a reading time (Pearson r)"
    items = result.get("items", result.get("fmri_items"))
    if items is not None and "partitions" in result:
        return f"all {items:,} sentences, repeated {result['partitions']}×{result.get('folds', 5)}-fold CV"
    # a result from before the protocol recorded how items were chosen: say so rather than guess
    return f"{items:,} items, selection not recorded" if isinstance(items, int) else "not recorded"


def _first_result(rd: "RunData", task: str, step: int) -> dict | None:
    return next((r for a in rd.arms for s in rd.seeds if (r := rd.task_result(a, s, step, task))), None)


def headline_table(rd: RunData) -> list[str]:
    """Markdown rows: per metric, its n and selection, and the arms' mean ± s.e. over seeds."""
    step = rd.final_step
    rows = ["| metric | n, selection | " + " | ".join(arms.label(a) for a in rd.arms) + " |",
            "|" + "---|" * (len(rd.arms) + 2)]
    for label, task, path, _ in headline_metrics(rd):
        vals = {a: [rd.metric(a, s, step, task, path) for s in rd.seeds] for a in rd.arms}
        if not any(v is not None for vs in vals.values() for v in vs):
            continue
        note = sample_note(task, _first_result(rd, task, step), path)
        rows.append(f"| {label} | {note} | " + " | ".join(_cell(vals[a]) for a in rd.arms) + " |")
    return rows


# ---------------------------------------------------------------------------------------------
# statistics: seed-paired and item-paired comparisons, Holm, floors, minimum detectable differences


def item_outcomes(result: dict | None, path: tuple[str, ...]) -> dict | None:
    """{item id: 0/1} for an accuracy metric: the task's ``correct`` lists sit beside the metric (HellaSwag
    ``correct[rule]``, MMLU ``<form>.correct[rule]``) in ``item_ids`` order."""
    if not result or "item_ids" not in result:
        return None
    parent = result
    for key in path[:-1]:
        parent = parent.get(key, {})
    correct = parent.get("correct", {}).get(path[-1])
    return None if correct is None else dict(zip(result["item_ids"], correct))


def paired_items(rd: RunData, a: str, b: str, task: str, path, step: int):
    """Two [seeds, items] 0/1 arrays for arms a and b: seeds both arms have, items all of them scored,
    columns matched by item id (never by position: a different sample order must not mis-pair)."""
    per = {(arm, s): item_outcomes(rd.task_result(arm, s, step, task), path) for arm in (a, b) for s in rd.seeds}
    seeds = [s for s in rd.seeds if per[(a, s)] is not None and per[(b, s)] is not None]
    if len(seeds) < 1:
        return None
    ids = sorted(set.intersection(*(set(per[(arm, s)]) for arm in (a, b) for s in seeds)), key=str)
    if not ids:
        return None
    grid = lambda arm: np.array([[per[(arm, s)][i] for i in ids] for s in seeds], dtype=float)  # noqa: E731
    return grid(a), grid(b)


def _seed_pairs(rd: RunData, a: str, b: str, task: str, path, step: int) -> tuple[list, list]:
    pairs = [(rd.metric(a, s, step, task, path), rd.metric(b, s, step, task, path)) for s in rd.seeds]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    return [x for x, _ in pairs], [y for _, y in pairs]


def comparisons(rd: RunData, n_boot: int = 10000, boot_seed: int = 0) -> list[dict]:
    """Every pair of arms on every headline metric at the final step: a seed-paired t (with d_z and the
    design's minimum detectable difference) and, for accuracies, a paired bootstrap over items and
    seeds; p-values Holm-adjusted over the whole list (one family: every test the report makes)."""
    from . import stats

    out = []
    for label, task, path, _ in headline_metrics(rd):
        for i, a in enumerate(rd.arms):
            for b in rd.arms[i + 1:]:
                xa, xb = _seed_pairs(rd, a, b, task, path, rd.final_step)
                if len(xa) >= 2:
                    r = stats.paired_seeds(xa, xb)
                    mdd = stats.minimum_detectable_difference(r["sd_diff"], r["n"]) if r["sd_diff"] > 0 else None
                    out.append({"metric": label, "a": a, "b": b, "test": f"paired t over {r['n']} seeds",
                                "diff": r["mean_diff"], "ci": r["ci"], "dz": r["dz"], "dz_ci": r["dz_ci"],
                                "p": r["p"], "mdd": mdd})
                grids = paired_items(rd, a, b, task, path, rd.final_step) if stats.chance_rate(task) else None
                if grids is not None:
                    r = stats.paired_bootstrap(*grids, n_boot=n_boot, seed=boot_seed)
                    out.append({"metric": label, "a": a, "b": b,
                                "test": f"paired bootstrap, {r['items']} items × {r['seeds']} seeds",
                                "diff": r["mean_diff"], "ci": r["ci"], "dz": None, "dz_ci": None, "p": r["p"],
                                "mdd": None})
    for row, adj in zip(out, stats.holm([r["p"] for r in out])):
        row["p_holm"] = adj
    return out


def _num(x, fmt: str = ".4f") -> str:
    return "—" if x is None else format(x, fmt)


def comparison_table(rows: list[dict]) -> list[str]:
    lines = ["| metric | A − B | test | difference [95% CI] | d_z [95% CI] | p | p (Holm) | min. detectable |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        dz = "—" if r["dz"] is None else f"{r['dz']:+.2f} [{r['dz_ci'][0]:+.2f}, {r['dz_ci'][1]:+.2f}]"
        lines.append(f"| {r['metric']} | {arms.label(r['a'])} − {arms.label(r['b'])} | {r['test']} | "
                     f"{r['diff']:+.4f} [{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}] | {dz} | {_num(r['p'], '.3g')} | "
                     f"{_num(r['p_holm'], '.3g')} | {_num(r['mdd'])} |")
    return lines


def floor_table(rd: RunData) -> list[str]:
    """Per metric its floors: the guessing rate (accuracies) and the untrained model's value (step 0,
    mean ± s.e. over seeds per arm), beside the final step's, so a metric at its floor reads as such."""
    from . import stats

    lines = ["| metric | chance | " + " | ".join(f"{arms.label(a)} step 0 → final" for a in rd.arms) + " |",
             "|" + "---|" * (len(rd.arms) + 2)]
    for label, task, path, _ in headline_metrics(rd):
        cells = [f"{_cell([rd.metric(a, s, 0, task, path) for s in rd.seeds])} → "
                 f"{_cell([rd.metric(a, s, rd.final_step, task, path) for s in rd.seeds])}" for a in rd.arms]
        if all(c == "— → —" for c in cells):
            continue
        lines.append(f"| {label} | {_num(stats.chance_rate(task), '.2f')} | " + " | ".join(cells) + " |")
    return lines


def _encoding_entries(task: str, result: dict | None) -> list[tuple[str, dict]]:
    """(name, entry with r, se, alpha_edge) of a result's encoding scores: fmri's best layer, langloc's
    unit selections."""
    if not result:
        return []
    found = []
    if task == "fmri" and result.get("per_layer"):
        found = [(f"fMRI best layer ({result.get('roi')})", result["per_layer"][result["best_layer"]])]
    if task == "langloc":
        found = [(f"fMRI top-{v['percent']:g}% language units", v) for k, v in result.items()
                 if k.startswith("top") and isinstance(v, dict)]
    # results from before repeated cross-validation have neither partitions nor alpha counts
    return [(name, e) for name, e in found if isinstance(e, dict) and "alpha_edge" in e]


def encoding_table(rd: RunData) -> list[str]:
    """Encoding scores per arm at the final step: r (mean over partitions, then mean ± s.e. over seeds),
    the mean s.e. over partitions (the cross-validation's own spread), and how many folds chose the
    alpha grid's lowest / highest value (there the grid, not the data, decided)."""
    lines = ["| score | arm | r, mean ± s.e. over seeds | s.e. over CV partitions (mean) | folds at lowest / highest alpha |",
             "|---|---|---|---|---|"]
    for task in ("fmri", "langloc"):
        for a in rd.arms:
            per_seed = [_encoding_entries(task, rd.task_result(a, s, rd.final_step, task)) for s in rd.seeds]
            per_seed = [e for e in per_seed if e]
            for k, (name, _) in enumerate(per_seed[0] if per_seed else []):
                entries = [e[k][1] for e in per_seed]
                ses = [e["se"] for e in entries if e.get("se") is not None]
                edges = [e["alpha_edge"] for e in entries]
                low, high, folds = (sum(x[f] for x in edges) for f in ("lowest", "highest", "folds"))
                lines.append(f"| {name} | {arms.label(a)} | {_cell([e['r'] for e in entries])} | "
                             f"{_num(float(np.mean(ses)) if ses else None)} | {low} / {high} of {folds} |")
    return lines if len(lines) > 2 else []


FIGURE_CAPTIONS = {
    "val_loss": "Validation loss over the inner loop per arm, and the outer loop's generations.",
    "nlp": "HellaSwag and MMLU per arm.",
    "reading_times": "Reading-time alignment across training steps (peak circled).",
    "fmri": "fMRI encoding per layer and through language-selective units.",
    "connectome": "Per-tensor density and sign balance of the connectome.",
}


def _figure_lines(figs: dict[str, Path | None]) -> list[str]:
    """The report's figure section: each figure under its caption, or a note saying why it is absent."""
    lines = []
    for key, p in figs.items():
        if p is None:
            lines += [f"- {FIGURE_CAPTIONS[key]} *(not drawn: no results for it in this run)*"]
        else:
            lines += [f"### {FIGURE_CAPTIONS[key]}", "", f"![{key}]({p.name})", ""]
    return lines


def stats_section(rd: RunData) -> list[str]:
    """The report's statistics: floors, comparisons with Holm-adjusted p, encoding robustness."""
    floors, enc = floor_table(rd), encoding_table(rd)
    out = ["## Floors", "",
           "A metric is only informative above its floors: the guessing rate (accuracies) and the untrained model "
           "(step 0 of each arm, mean ± s.e. over seeds), shown beside the final step.", "", *floors, "",
           "## Comparisons between arms", "",
           "Seed-paired: a paired t-test over seeds (seed s of each arm shares data order and draws), the mean "
           "difference with its t interval, Cohen's d_z with its exact noncentral-t interval, and the smallest "
           "difference this design (these seeds, this seed-to-seed spread of differences) detects with 80% power at "
           "α = 0.05. Item-paired (accuracies): a bootstrap over seeds and items (10,000 replicates, seed 0), both "
           "arms scored on the same items matched by item id. p (Holm) adjusts every p-value in this table as one "
           "family.", "", *comparison_table(comparisons(rd)), ""]
    if enc:
        out += ["## Encoding scores: cross-validation spread and ridge grid", "", *enc, ""]
    return out


def evolution_lines(rd: RunData) -> list[str]:
    """The outer loop per generation: val loss after training and density after pruning."""
    if not rd.generations:
        return []
    lines = ["## Evolution", "", "| generation | val loss after training | density after pruning |", "|---|---|---|"]
    for g in rd.generations:
        vl = g.get("val_loss")
        lines.append(f"| {g['generation']} | {vl:.4f} | {g['total_density_after']:.4f} |" if vl is not None else
                     f"| {g['generation']} | — | {g['total_density_after']:.4f} |")
    return lines + [""]


def headline_lines(rd: RunData) -> list[str]:
    """The headline table with what it rests on: seeds, a sweep's slice, the dense upper bound."""
    lines = ["## Headline numbers (final inner-loop step)", "",
             "Mean ± s.e. over seeds (ddof 1); the n column is the items (or tokens, words, sentences) behind each "
             "seed's number and how they were chosen.", ""]
    if is_sweep(rd.cfg):
        from .sweep import describe_slice
        lines += [f"This run is a sweep: the headline numbers, comparisons and development curves are its slice "
                  f"{describe_slice(rd.config)} (dense: the same tokens); the Sweep section has every unit.", ""]
    lines += [*headline_table(rd), ""]
    if rd.upper_bound is not None:
        lines += [f"Upper bound (generation 0: dense model trained on the large split, scored on the same validation "
                  f"windows): val loss {rd.upper_bound:.4f}.", ""]
    return lines


def write_report(run_dir: Path) -> Path:
    """Write ``report/`` (PNG figures + report.md) for a run folder; returns the report.md path."""
    from .layout import existing_run_folder

    rd = RunData(existing_run_folder(run_dir))
    out = rd.layout.report
    out.mkdir(parents=True, exist_ok=True)
    figs = {
        "val_loss": fig_loss(rd, out),
        "nlp": fig_nlp(rd, out),
        "reading_times": fig_reading_times(rd, out),
        "fmri": fig_fmri(rd, out),
        "connectome": fig_connectome(rd, out),
    }
    c = rd.cfg
    lines = [
        f"# Generational connectome study `{c['name']}`",
        "",
        f"Model preset `{c['model']['preset']}`, tokenizer `{c['data']['tokenizer']}`, data source `{c['data']['source']}`; "
        f"{c['evolve']['generations']} generations x {c['evolve']['train']['iters']} steps on {c['data']['large_tokens']:,} tokens; "
        f"inner loop {c['develop']['train']['iters']} steps on {c['data']['small_tokens']:,} tokens; "
        f"arms {', '.join(rd.arms)}; seeds {rd.seeds}.",
        "",
    ]
    if c["data"]["source"] == "synthetic":
        lines += ["> **Synthetic corpus.** No data folder was found, so this run trained on the package's generated text. "
                  "The pipeline ran end to end, but these numbers say nothing about language.", ""]
    lines += evolution_lines(rd) + headline_lines(rd)
    lines += stats_section(rd)
    if rd.left_out:
        lines += ["**Left out:** these evaluation files do not describe the run as configured now and are not used "
                  "above; re-run `connectomes study` to re-evaluate.", "",
                  *[f"- `{p.relative_to(rd.dir)}`: {why}" for p, why in rd.left_out], ""]
    if rd.skipped:
        lines += [f"**Skipped evaluations:** {', '.join(sorted(rd.skipped))} — their data folders were not found "
                  "(set CONNECTOMES_DATA).", ""]
    lines += sweep_section(rd, out)
    lines += ["## Figures", "", *_figure_lines(figs)]
    lines += ["", "## Provenance", "",
              f"connectomes {__version__}, Python {platform.python_version()}, {platform.platform()}. "
              f"The resolved config is `{rd.layout.config}`; data hashes are in `data/meta.json`; every "
              "evaluation JSON carries its data file hashes and model hash.", ""]
    atomic_write_text(rd.layout.report_md, "\n".join(lines))
    return rd.layout.report_md


# ---------------------------------------------------------------------------------------------
# sweeps (issue 10): bottleneck frontier, data efficiency, data multiplier, lineages


def is_sweep(cfg: dict) -> bool:
    """Whether the run sets any sweep axis (evolve.seeds, develop.generations, develop.sizes)."""
    return bool(cfg["evolve"].get("seeds") or cfg["develop"].get("generations") or cfg["develop"].get("sizes"))


def sweep_rows(rd: RunData) -> list[dict]:
    """One row per developed unit: its axes, tokens, connectome size in bits (its lineage's generation;
    None for dense), final val loss (the final step's evaluation, else the last logged), the best logged
    val loss and the reading-times r when evaluated."""
    from .sweep import connectome_generation

    cfg = rd.config
    rows = []
    for u in rd.units:
        logged = [r["val_loss"] for r in rd.unit_metrics[u] if "val_loss" in r]
        res = (rd.unit_evals[u].get(rd.final_step) or {}).get("tasks", {})
        bits = None
        if arms.ARMS[u.arm].needs_connectome:
            rec = _read_json(rd.layout.lineage(u.lineage).generation_bits(connectome_generation(cfg, u)))
            bits = rec.get("total") if isinstance(rec, dict) else None
        loss = dig(res.get("val_loss"), ("loss",)) if "val_loss" in res else (logged[-1] if logged else None)
        rows.append({"unit": u, "tokens": u.tokens or cfg.data.small_tokens, "bits": bits,
                     "generation": connectome_generation(cfg, u), "final": loss, "best": min(logged) if logged else None,
                     "rt_r": dig(res.get("reading_times"), ("all_words", "r")) if "reading_times" in res else None})
    return [r for r in rows if r["final"] is not None]


def _groups(rows: list[dict], key) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(-1 if x is None else x for x in kv[0][1:])))


def fig_frontier(rows: list[dict], out: Path) -> Path | None:
    """Final val loss (and reading-times r when evaluated) against the connectome's size in bits
    (structured file, log x), mean +- s.e. over seeds and lineages: one panel per data size (rows:
    metrics), one line per arm through its generations in order of size, each point labelled with
    its generation; dense (no connectome: 0 bits) is the horizontal reference in each panel."""
    if not any(r["bits"] for r in rows):
        return None
    plt = _plt()
    metrics = [("final", "final val loss (nats)")] + ([("rt_r", "reading times r")] if any(r["rt_r"] is not None for r in rows) else [])
    sizes = sorted({r["tokens"] for r in rows})
    fig, axes = plt.subplots(len(metrics), len(sizes), figsize=(3.6 * len(sizes) + 0.6, 3.4 * len(metrics)),
                             squeeze=False, sharey="row")
    for i, (key, ylabel) in enumerate(metrics):
        for j, n in enumerate(sizes):
            ax = axes[i][j]
            xs = set()
            for (arm,), rs in _groups([r for r in rows if r["tokens"] == n], lambda r: (r["unit"].arm,)).items():
                xs.update(_frontier_line(ax, arm, rs, key))
            ax.set_xscale("log")
            ax.minorticks_off()  # the sizes span well under a decade: label the connectomes' own sizes instead
            ax.set_xticks(sorted(xs), [f"{x / 1e6:.3g}M" for x in sorted(xs)], fontsize=7, rotation=45)
            ax.set_title(f"{n:,} developmental tokens", fontsize=9)
            ax.set_xlabel("connectome size (bits, structured code; log)" if i == len(metrics) - 1 else "")
            ax.set_ylabel(ylabel if j == 0 else "")
    axes[0][0].legend(fontsize=7)
    return _save(fig, out / "frontier.png")


def _frontier_line(ax, arm: str, rs: list[dict], key: str) -> list[float]:
    """One arm's points on a frontier panel: mean +- s.e. per generation, or dense's reference line;
    returns the x positions (bits) drawn."""
    if not arms.ARMS[arm].needs_connectome:
        m, _, k = mean_se([r[key] for r in rs])
        if k:
            ax.axhline(m, ls="--", color=arms.color(arm), label=arms.label(arm))
        return []
    pts = []
    for (_, g), grp in _groups(rs, lambda r: (arm, r["generation"])).items():
        m, se, k = mean_se([r[key] for r in grp])
        if k:
            pts.append((np.mean([r["bits"]["structured_file"] for r in grp if r["bits"]]), m, 0 if math.isnan(se) else se, g))
    if not pts:
        return []
    pts.sort()
    x, y, e, gens = zip(*pts)
    ax.errorbar(x, y, yerr=e, marker="o", capsize=3, color=arms.color(arm), label=arms.label(arm))
    if arm == "connectome":
        for xi, yi, g in zip(x, y, gens):
            ax.annotate(f"g{g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    return list(x)


def fig_data_efficiency(rows: list[dict], out: Path) -> Path | None:
    """Final val loss against developmental tokens (log x) per arm at the last generation, seed s.e. bars."""
    sizes = {r["tokens"] for r in rows}
    if len(sizes) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    last = max(r["generation"] for r in rows)
    for (arm,), rs in _groups([r for r in rows if r["generation"] == last], lambda r: (r["unit"].arm,)).items():
        per = _groups(rs, lambda r: (arm, r["tokens"]))
        ms = [mean_se([r["final"] for r in g]) for g in per.values()]
        ax.errorbar([n for _, n in per], [m for m, _, _ in ms], yerr=[0 if math.isnan(s) else s for _, s, _ in ms],
                    marker="o", capsize=3, color=arms.color(arm), label=arms.label(arm))
    ax.set_xscale("log")
    ax.minorticks_off()  # label the sizes measured, not a decade grid
    ax.set_xticks(sorted(sizes), [f"{n:,}" for n in sorted(sizes)], fontsize=8)
    ax.set_xlabel("developmental tokens (log)")
    ax.set_ylabel("final val loss (nats)")
    ax.set_title(f"connectome arms from generation {last}", fontsize=9)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, out / "data_efficiency.png")


def multiplier_lines(rows: list[dict]) -> list[str]:
    """The data multiplier per size (sweep_math) of the last generation's connectome against dense,
    each seed's loss averaged over lineages, with its seed bootstrap CI, on the final val loss (the
    headline) and on the best logged one (small sets over-fit under equal steps; 'best' is the loss
    early stopping would keep), and the headline sentence."""
    from .sweep_math import data_multiplier, headline, headline_size

    last = max(r["generation"] for r in rows)
    sel = {arm: [r for r in rows if r["unit"].arm == arm and (arm == "dense" or r["generation"] == last)]
           for arm in ("dense", "connectome")}
    sizes = sorted({r["tokens"] for r in rows})
    seeds = sorted({r["unit"].seed for r in sel["dense"]} & {r["unit"].seed for r in sel["connectome"]})
    mults = {}
    for key in ("final", "best"):
        table = {arm: [[np.mean([r[key] for r in rs if r["tokens"] == n and r["unit"].seed == s] or [np.nan])
                        for s in seeds] for n in sizes] for arm, rs in sel.items()}
        if len(sizes) < 2 or not seeds or not all(np.isfinite(table[a]).all() for a in table):
            return ["*(no data multiplier: it needs the dense and connectome arms at two or more sizes with the same seeds)*"]
        mults[key] = data_multiplier(sizes, table["dense"], table["connectome"])
    bits = np.mean([r["bits"]["structured_file"] for r in sel["connectome"] if r["bits"]])
    cell = lambda m: f"{'' if m.relation == '=' else m.relation}{m.m:.3g} | {_ci_cell(m)}"  # noqa: E731
    lines = [f"Connectome of generation {last} against NoConnectome (dense), {len(seeds)} seeds per arm and size; "
             "'>' and '<' are bounds where the dense curve does not reach the loss within the sizes measured.", "",
             "| tokens | multiplier, final val loss | 95% CI | multiplier, best logged val loss | 95% CI |",
             "|---|---|---|---|---|"]
    lines += [f"| {f.tokens:,} | {cell(f)} | {cell(b)} |" for f, b in zip(mults["final"], mults["best"])]
    return lines + ["", f"**Headline:** {headline(bits, headline_size(mults['final']))}."]


def _ci_cell(m) -> str:
    """A multiplier's interval for the table: 'lo–hi', or where every resample is out of range, the side."""
    from .sweep_math import all_out_of_range

    side = all_out_of_range(m)
    return f"all resamples {side}" if side else f"{m.ci[0]:.3g}–{m.ci[1]:.3g}"


def lineage_lines(rows: list[dict]) -> list[str]:
    """Between- vs within-lineage spread of the connectome arm's final val loss, per generation and size:
    per-lineage means +- s.e. over seeds and a nested (one-way) variance decomposition."""
    conn = [r for r in rows if r["unit"].arm == "connectome" and r["unit"].lineage is not None]
    if len({r["unit"].lineage for r in conn}) < 2:
        return []
    lines = ["| generation | tokens | per-lineage mean ± s.e. | between-lineage var | within-lineage var |", "|---|---|---|---|---|"]
    for (_, g, n), rs in _groups(conn, lambda r: ("c", r["generation"], r["tokens"])).items():
        per = _groups(rs, lambda r: ("l", r["unit"].lineage))
        stats = {lin: mean_se([r["final"] for r in v]) for (_, lin), v in per.items()}
        means = [m for m, _, _ in stats.values()]
        within = [np.var([r["final"] for r in v], ddof=1) for v in per.values() if len(v) > 1]
        cells = "; ".join(f"L{lin} {m:.4f} ± {se:.4f}" for lin, (m, se, _) in stats.items())
        lines.append(f"| {g} | {n:,} | {cells} | {np.var(means, ddof=1):.2e} | "
                     f"{np.mean(within) if within else float('nan'):.2e} |")
    return lines


def generation_size_lines(rd: RunData) -> list[str]:
    """Each lineage's generations with their connectome size in bits (evolve/gen_XX/connectome_bits.json)."""
    lines = ["| lineage | generation | density | i.i.d. bound | ANS file | structured file |", "|---|---|---|---|---|---|"]
    for lin in rd.cfg["evolve"].get("seeds") or [None]:
        layout = rd.layout.lineage(lin)
        for g in layout.generations_present():
            p = layout.generation_bits(g)
            if p.exists():
                rec = json.loads(p.read_text())
                t = rec["total"]
                lines.append(f"| {'—' if lin is None else lin} | {g} | {rec['density']:.4f} | {t['bound']:,.0f} | "
                             f"{t['ans_file']:,} | {t['structured_file']:,} |")
    return lines


def sweep_section(rd: RunData, out: Path) -> list[str]:
    """The report's sweep section (empty for a plain study): sizes, figures, multiplier, lineages."""
    if not is_sweep(rd.cfg):
        return []
    rows = sweep_rows(rd)
    if not rows:
        return ["## Sweep", "", "*(no developed units yet)*", ""]
    lines = ["## Sweep", "", "Connectome sizes in bits per generation:", "", *generation_size_lines(rd), "",
             "Every size trains the same steps, so smaller sets are seen for more epochs; "
             "'best' is the lowest logged val loss, 'final' the final step's.", "",
             "| arm | seed | lineage | connectome of generation | tokens | connectome bits (bound / ANS file / structured file) "
             "| final val loss | best val loss |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, u = r["bits"], r["unit"]
        size = f"{b['bound']:,.0f} / {b['ans_file']:,} / {b['structured_file']:,}" if b else "—"
        inherits = arms.ARMS[u.arm].needs_connectome
        lines.append(f"| {arms.label(u.arm)} | {u.seed} | {'—' if u.lineage is None else u.lineage} | "
                     f"{r['generation'] if inherits else '—'} | {r['tokens']:,} | {size} | {r['final']:.4f} | {r['best']:.4f} |")
    for name, fig in (("frontier", fig_frontier(rows, out)), ("data efficiency", fig_data_efficiency(rows, out))):
        lines += ["", f"### {name}", "", f"![{name}]({fig.name})" if fig else "*(not drawn: too few points)*"]
    lines += ["", "### Data multiplier", "", *multiplier_lines(rows)]
    lin = lineage_lines(rows)
    if lin:
        lines += ["", "### Lineages", "", *lin]
    return lines + [""]
