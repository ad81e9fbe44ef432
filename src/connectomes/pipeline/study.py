"""The study's stages: prepare -> evolve -> develop (arm x seed) -> evaluate saved steps, in this process
(:func:`run_serial`; pipeline.launch chooses it or workers, and connectomes.api then writes the report).

Every stage writes into the run folder and is skipped when its outputs exist and were made by the
same resolved config (each stage records a hash of everything upstream of it), so re-running the
same command after a crash or Ctrl-C continues where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..connectome import arms
from ..core import distributed
from ..core.atomic import atomic_write_text, make_dirs
from ..core.config import config_hash
from ..core.progress import where
from ..core.layout import RunLayout, TrainLayout
from ..data import stream
from ..data.prepare import source_text
from ..data.shards import read_header
from ..evals.context import EvalContext, context_for, data_root_for
from ..evals.registry import get_task
from ..evals.runner import evaluate_steps
from ..training.checkpoint import best_step, finished_step, saved_step
from . import corpora
from .config import Config
from .develop import run_develop
from .evolve import evolve_hash, generation_weights, lineage_connectome, run_evolve
from .run import Run, existing_run, note, open_run
from .sweep import Unit, connectome_generation, evolutions, units
from .untrained import stage_untrained

# ---------------------------------------------------------------------------------------------
# stages


def split_lengths(run: Run, split: str, corpus: str | None = None) -> list[int]:
    return [read_header(p)[1] for p in run.data_of(corpus).split_paths(split)]


def moved_start(run: Run, split: str, seed: int, batch: int, shape: str | None = None,
                corpus: str | None = None) -> int | None:
    """The steps ``seed``'s stream over the whole ``split`` (of ``corpus``) skips at its start where
    data.stream.seed_start moved it off an earlier seed's golden position (None where it did not): part of the
    identity of what trains on that order, so a folder made before the rule is not resumed with another data order."""
    lengths = split_lengths(run, split, corpus)
    golden, steps = stream.seed_start(seed, lengths, batch * run.model_config(shape).block_size)
    return steps if steps != golden else None


def evolve_upstream(run: Run, lineage: int | None = None, shape: str | None = None) -> str:
    corpus = corpora.lineage_corpus(run.cfg, lineage)
    parts = {"evolve": evolve_hash(run.cfg, run.model_config(shape), lineage), "data": run.corpus_hash(corpus)}
    moved = None if lineage is None else moved_start(run, "large", lineage, run.cfg.evolve.train.batch_size, shape,
                                                     corpus)
    if moved is not None:
        parts["start_steps"] = moved
    return config_hash(parts)


# a sized unit's data (data.stream): its seed's chunk order, kept in that order, read as a ring
SUBSET_RULE = {"order": "seed", "read": "ring"}


def develop_upstream(run: Run, unit: Unit) -> str:
    """What a unit's result depends on; a plain study's units hash as they did before sweeps."""
    parts = {"model": run.model_config(unit.shape).to_dict(), "data": run.data_hash, "arm": unit.arm, "seed": unit.seed,
             "init_constant": run.cfg.develop.init_constant}
    if unit.corpus is not None:  # transfer: the corpus it develops and is validated on
        parts["corpus"] = {"name": unit.corpus, "data": run.corpus_hash(unit.corpus)}
    arm = arms.get(unit.arm)
    if arm.needs_lineage:
        parts["connectome"] = evolve_upstream(run, unit.lineage, unit.shape)
        if unit.generation is not None:
            parts["generation"] = unit.generation
    if unit.tokens is not None:
        # how the subset is drawn and read is part of its identity: a folder developed on other subsets (one
        # order for every seed, read in split order up to its last whole step) must not resume
        parts["tokens"] = unit.tokens
        parts["subset"] = SUBSET_RULE | {"chunk": stream.SUBSET_CHUNK, "salt": stream.SUBSET_SALT}
        return config_hash(parts)
    moved = moved_start(run, "small", unit.seed, run.cfg.develop.train.batch_size, unit.shape, unit.corpus)
    if moved is not None:
        parts["start_steps"] = moved
    return config_hash(parts)


def stage_evolve(run: Run, *, progress: bool = True, stop_at=None, lineage: int | None = None,
                 shape: str | None = None) -> Path | None:
    info = dict(run.info, upstream_hash=evolve_upstream(run, lineage, shape))
    info.update({k: v for k, v in (("lineage", lineage), ("shape", shape)) if v is not None})
    corpus = corpora.lineage_corpus(run.cfg, lineage)
    if corpus is not None:
        info["corpus"] = corpus
    data = run.data_of(corpus)
    path = run_evolve(run.cfg, run.model_config(shape), run.layout.lineage(lineage, shape),
                      train_paths=data.split_paths("large"), val_paths=data.split_paths("val"), run_info=info,
                      progress=progress, stop_at=stop_at, lineage=lineage)
    if path is not None and distributed.is_main():
        stage_untrained(run, info["upstream_hash"], lineage, shape)
    return path


def stage_develop(run: Run, unit: Unit, *, progress: bool = True, stop_at: int | None = None):
    """Develop one unit into ``run.at(unit)``'s folder from its lineage's generation's connectome."""
    gcfg = run.model_config(unit.shape)
    conn, weights, arm = None, None, arms.get(unit.arm)
    lineage, g = run.layout.lineage(unit.lineage, unit.shape), connectome_generation(run.cfg, unit)
    if arm.needs_connectome:
        conn = lineage_connectome(run.cfg, gcfg, lineage, unit.lineage, g)
    if arm.weights_from is not None:
        weights = generation_weights(run.cfg, lineage, g)
    info = dict(run.info, upstream_hash=develop_upstream(run, unit))
    info.update({k: v for k, v in (("lineage", unit.lineage), ("generation", unit.generation), ("tokens", unit.tokens),
                                   ("shape", unit.shape), ("corpus", unit.corpus)) if v is not None})
    data = run.data_of(unit.corpus)
    return run_develop(run.cfg, gcfg, unit.arm, unit.seed, run.at(unit).layout, train_paths=data.split_paths("small"),
                       val_paths=data.split_paths("val"), run_info=info, connectome=conn, weights=weights, max_tokens=unit.tokens,
                       progress=progress, stop_at=stop_at, label=unit.label)


def eval_context(run: Run, out_dir: Path | None) -> EvalContext:
    """The evaluation context of ``run`` (at a unit: its val_loss scores the unit's develop corpus, and
    data.val_corpora beside it)."""
    return context_for(run.cfg, Path(run.info["data_dir"]), out_dir, val_dirs=val_dirs(run))


def val_dirs(run: Run) -> dict[str, Path]:
    """The prepared folders val_loss scores at ``run``'s unit, its develop corpus first ({} in a study of one
    corpus and no data.val_corpora: the run's own val split, as before corpora existed)."""
    cfg = run.cfg
    if not cfg.develop.corpora and not cfg.data.val_corpora:
        return {}
    own = run.corpus or corpora.own_name(cfg.data)
    return {name: run.data_of(name).dir for name in dict.fromkeys([own, *cfg.data.val_corpora])}


def available_tasks(run: Run, tasks: list[str]) -> tuple[list[str], list[str]]:
    """Tasks whose data folder (their spec's data_dir) exists; the others are returned separately so
    the report can say why they are absent."""
    root = data_root_for(run.cfg)
    ok, missing = [], []
    for t in tasks:
        need = get_task(t).data_dir
        if need is not None and (root is None or not (root / need).is_dir()):
            missing.append(t)
        else:
            ok.append(t)
    return ok, missing


def unit_final_step(cfg: Config, trained: TrainLayout | None) -> int:
    """A unit's final step: where it finished (done.json: develop.train.iters, or where patience stopped
    it), the cap develop.train.iters while it is unfinished."""
    done = finished_step(trained) if trained is not None else None
    return cfg.develop.train.iters if done is None else done


def kept_steps(run: Run, trained: TrainLayout | None = None) -> list[int]:
    """The steps a unit evaluates: the kept ones it reached, the final one and, with keep_best, the best one."""
    return _unit_steps(run.cfg, trained)


def _unit_steps(cfg: Config, trained: TrainLayout | None) -> list[int]:
    t = cfg.develop.train
    final = unit_final_step(cfg, trained)
    best = best_step(trained) if t.keep_best and trained is not None else None
    return sorted({k for k in t.keep_steps if k <= final} | {final} | ({best} if best is not None else set()))


def stage_eval(run: Run, arm: str, seed: int, *, progress: bool = True, label: str | None = None) -> Path:
    """Evaluate a unit's kept steps; every line its evaluations print names ``label`` (the unit) and the step."""
    with where(label or f"{arm} seed {seed}"):
        return _stage_eval(run, arm, seed)


def _stage_eval(run: Run, arm: str, seed: int) -> Path:
    out = run.layout.eval(arm, seed)
    trained = run.layout.develop(arm, seed)
    final = unit_final_step(run.cfg, trained)
    step_tasks, missing_s = available_tasks(run, run.cfg.eval.step_tasks)
    # the final step gets every task (step tasks too, so the curves end at the final step)
    final_tasks, missing_f = available_tasks(run, list(dict.fromkeys(run.cfg.eval.tasks + run.cfg.eval.step_tasks)))
    missing = sorted(set(missing_s) | set(missing_f))
    make_dirs(out)
    if missing:
        atomic_write_text(run.layout.skipped(arm, seed), json.dumps({"skipped_tasks": missing, "reason": "data folder absent"}))
    ctx = eval_context(run, out)
    # step 0 (the untrained model) gets every task too: its values are the report's floor rows; the best
    # step too, so every task is read at the model early stopping would keep
    steps = kept_steps(run, trained)
    best = best_step(trained) if run.cfg.develop.train.keep_best else None
    full = [s for s in steps if s in (0, final, best)]
    others = [trained.step(s) for s in steps if s not in full]
    if others and step_tasks:
        evaluate_steps(others, step_tasks, ctx, out)
    evaluate_steps([trained.step(s) for s in full], final_tasks, ctx, out)
    return out


def _stop_step(stop, unit: Unit) -> int | None:
    """The step a test's ``stop`` = ("develop", unit, step) asks this unit to stop at."""
    return stop[2] if stop and stop[0] == "develop" and stop[1] == unit else None


def run_serial(cfg: Config, *, progress: bool = True, stop=None) -> Path | None:
    """Every stage but the report in this process, resumable: every lineage's evolution, then every unit
    (sweep.units) and its evaluation. Returns the run folder once everything is done, None when stopped early.

    ``stop`` (tests) = ("evolve", gen, step) (in the first lineage) or ("develop", unit, step)."""
    run = open_run(cfg, progress=progress)
    root = data_root_for(cfg)
    note(f"run folder {run.dir}; corpus: {source_text(run.data.meta)}, prepared into {run.info['data_dir']} "
         f"({run.info['tokenizer']} tokenizer); evaluation data: {root if root is not None else 'none found'}")
    for i, (shape, lin) in enumerate(evolutions(cfg)):
        stop_evolve = (stop[1], stop[2]) if stop and stop[0] == "evolve" and i == 0 else None
        if stage_evolve(run, progress=progress, stop_at=stop_evolve, lineage=lin, shape=shape) is None:
            note("stopped inside evolve; re-run the same command to continue")
            return None
    todo = units(cfg)
    for unit in todo:
        if not stage_develop(run, unit, progress=progress, stop_at=_stop_step(stop, unit)).finished:
            note("stopped inside develop; re-run the same command to continue")
            return None
    if distributed.is_main():  # evaluation is single-process work
        for unit in todo:
            stage_eval(run.at(unit), unit.arm, unit.seed, progress=progress, label=unit.label)
    distributed.barrier()
    return run.dir


# ---------------------------------------------------------------------------------------------
# status


def status(run_dir: Path) -> list[tuple[str, str]]:
    """(stage, state) rows for a run folder, read from what is on disk."""
    folder = existing_run(run_dir)
    cfg, layout = folder.cfg, folder.layout
    rows = [("prepare", "done" if layout.data_meta.exists() else "pending")]
    for shape, lin in evolutions(cfg):
        where = corpora.evolution_label(cfg, shape, lin)
        rows += _evolve_rows(cfg, layout.lineage(lin, shape), f"{where} " if where else "")
    todo = units(cfg)
    for u in todo:
        trained = layout.unit(u.tag).develop(u.arm, u.seed)
        state = _train_state(trained, cfg.develop.train.iters, trained.done.exists())
        final = unit_final_step(cfg, trained)
        rows.append((f"develop {u.label}", state if final == cfg.develop.train.iters else
                     f"{state}: stopped by patience at step {final}/{cfg.develop.train.iters}"))
    for u in todo:
        trained = layout.unit(u.tag).develop(u.arm, u.seed)
        steps = _unit_steps(cfg, trained)
        n = sum(layout.unit(u.tag).eval_step(u.arm, u.seed, step).exists() for step in steps)
        rows.append((f"eval {u.label}", f"{n}/{len(steps)} steps"))
    rows.append(("report", "done" if layout.report_md.exists() else "pending"))
    return rows


def _evolve_rows(cfg: Config, layout: RunLayout, prefix: str) -> list[tuple[str, str]]:
    rows = [(f"{prefix}evolve gen {g}", _train_state(layout.generation(g), cfg.evolve.train.iters,
                                                     layout.generation_record(g).exists()))
            for g in range(cfg.evolve.generations)]
    return rows + [(f"{prefix}connectome", "done" if layout.connectome.exists() else "pending")]


def _train_state(trained: TrainLayout, iters: int, done: bool) -> str:
    if done:
        return "done"
    step = saved_step(trained)
    return "pending" if step is None else f"running/stopped at step {step}/{iters}"
