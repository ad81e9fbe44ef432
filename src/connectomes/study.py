"""The study: prepare -> evolve -> develop (arm x seed) -> evaluate saved steps -> report.

Every stage writes into the run folder and is skipped when its outputs exist and were made by the
same resolved config (each stage records a hash of everything upstream of it), so re-running the
same command after a crash or Ctrl-C continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .arms import ARMS
from .atomic import atomic_write_text, sweep_debris
from .config import Config, ConfigError, config_hash, default_data_root, dump_config, to_dict
from .errors import UserError
from .layout import RunLayout, TrainLayout
from .model import GPTConfig
from .sweep import Unit, connectome_generation, lineages, units


def note(msg: str) -> None:
    print(f"[connectomes] {msg}", file=sys.stderr, flush=True)


@dataclass
class Run:
    cfg: Config
    layout: RunLayout
    data: object  # connectomes.data.prepare.PreparedData
    gcfg: GPTConfig
    info: dict  # goes into every checkpoint's state.json
    data_hash: str

    @property
    def dir(self) -> Path:
        """The run folder."""
        return self.layout.root

    def split(self, name: str) -> list[Path]:
        return self.data.split_paths(name)

    def at(self, unit: Unit) -> "Run":
        """This run with develop/ and eval/ paths at a sweep unit (the same run for a plain study's units)."""
        return dataclasses.replace(self, layout=self.layout.unit(unit.tag))


def data_root_for(cfg: Config) -> Path | None:
    return Path(cfg.eval.data_root) if cfg.eval.data_root else default_data_root()


def resolve_source(cfg: Config) -> Config:
    """Fall back to the built-in synthetic corpus when no text folder exists (the demo works anywhere)."""
    if cfg.data.source != "local" or cfg.data.path:
        return cfg
    root = default_data_root()
    if root is not None and (root / "corpus").is_dir():
        return cfg
    if not cfg.data.synthetic_fallback:
        raise UserError("no text corpus found: set CONNECTOMES_DATA to the data folder or data.path to a folder of .txt/.jsonl files")
    note("no data folder found (CONNECTOMES_DATA unset and ../shared/data absent): using the package's synthetic corpus; "
         "numbers from it say nothing about language")
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source="synthetic"))


def _check_existing_config(layout: RunLayout, cfg: Config) -> None:
    p = layout.config
    if not p.exists():
        return
    from .config import flatten, read_run_config, result_neutral

    old = flatten(read_run_config(p))
    new = flatten(to_dict(cfg))
    # `train.*` only drives the plain `train` verb and `eval.*` is re-checked per evaluation file;
    # everything else, except result-neutral settings, shapes outputs already in the folder.
    diff = sorted(k for k in set(old) | set(new)
                  if old.get(k) != new.get(k) and not k.startswith(("train.", "eval.")) and not result_neutral(k))
    if diff:
        raise ConfigError(
            f"{layout.root} was made with a different config (differs in {', '.join(diff[:6])}"
            f"{'...' if len(diff) > 6 else ''}); use another name (name=...) or delete the folder"
        )


def open_run(cfg: Config, *, progress: bool = True, prepare: bool = True, devices: tuple[str, ...] | None = None) -> Run:
    """Resolve the config, write config.yaml, prepare (or reuse) the data, size the model.

    ``devices``: the ``train.device`` settings of the stages this process will train (default: the
    study's, evolve and develop); under torchrun the process group's backend follows them.
    """
    from .data.prepare import open_prepared, prepare_data

    from . import distributed

    distributed.init(*(devices or (cfg.evolve.train.device, cfg.develop.train.device)))
    cfg = resolve_source(cfg)
    layout = RunLayout.of(cfg)
    data_dir = layout.data
    if distributed.is_main():
        _check_existing_config(layout, cfg)
        layout.root.mkdir(parents=True, exist_ok=True)
        sweep_debris(layout.root)  # temporaries of killed writers (the caller holds the run lock)
        atomic_write_text(layout.config, dump_config(cfg))
        if prepare:
            prepare_data(cfg.data, data_dir, data_root=default_data_root(), progress=progress)
    distributed.barrier()
    data = open_prepared(data_dir)
    meta = data.meta
    tok = data.tokenizer()
    gcfg = cfg.model.gpt_config(vocab_size=tok.vocab_size)
    if gcfg.vocab_size < tok.vocab_size:
        raise ConfigError(
            f"model.vocab_size ({gcfg.vocab_size}) is smaller than the {tok.name} tokenizer's vocabulary ({tok.vocab_size}); "
            "remove the override or raise it"
        )
    data_hash = config_hash({k: meta.get(k) for k in ("tokenizer", "splits")})
    info = {
        "tokenizer": tok.name,
        "data_dir": str(data_dir.resolve()),
        "gpt2_bpe_file": cfg.data.gpt2_bpe_file,
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "data_hash": data_hash,
        "version": __version__,
    }
    return Run(cfg=cfg, layout=layout, data=data, gcfg=gcfg, info=info, data_hash=data_hash)


# ---------------------------------------------------------------------------------------------
# stages


def evolve_upstream(run: Run, lineage: int | None = None) -> str:
    from .evolve import evolve_hash

    return config_hash({"evolve": evolve_hash(run.cfg, run.gcfg, lineage), "data": run.data_hash})


def develop_upstream(run: Run, unit: Unit) -> str:
    """What a unit's result depends on; a plain study's units hash as they did before sweeps."""
    parts = {"model": run.gcfg.to_dict(), "data": run.data_hash, "arm": unit.arm, "seed": unit.seed,
             "init_constant": run.cfg.develop.init_constant}
    if ARMS[unit.arm].needs_connectome:
        parts["connectome"] = evolve_upstream(run, unit.lineage)
        if unit.generation is not None:
            parts["generation"] = unit.generation
    if unit.tokens is not None:
        from .data import stream

        # how the subset is drawn is part of its identity: a folder developed on other subsets must not resume
        parts["tokens"] = unit.tokens
        parts["subset"] = {"chunk": stream.SUBSET_CHUNK, "order_seed": stream.SUBSET_SEED}
    return config_hash(parts)


def stage_evolve(run: Run, *, progress: bool = True, stop_at=None, lineage: int | None = None) -> Path | None:
    from .evolve import run_evolve

    info = dict(run.info, upstream_hash=evolve_upstream(run, lineage))
    if lineage is not None:
        info["lineage"] = lineage
    return run_evolve(run.cfg, run.gcfg, run.layout.lineage(lineage), train_paths=run.split("large"),
                      val_paths=run.split("val"), run_info=info, progress=progress, stop_at=stop_at, lineage=lineage)


def stage_develop(run: Run, unit: Unit, *, progress: bool = True, stop_at: int | None = None):
    """Develop one unit into ``run.at(unit)``'s folder from its lineage's generation's connectome."""
    from .connectome_file import load_connectome
    from .develop import run_develop
    from .evolve import generation_connectome

    conn = None
    if ARMS[unit.arm].needs_connectome:
        lineage, g = run.layout.lineage(unit.lineage), connectome_generation(run.cfg, unit)
        # the evolved connectome is the file develop reads (sealed: a damaged one is refused); an
        # earlier generation's is derived from its verified pruned checkpoint
        conn = (load_connectome(lineage.connectome) if g == run.cfg.evolve.generations - 1
                else generation_connectome(lineage, g, run.gcfg))
    info = dict(run.info, upstream_hash=develop_upstream(run, unit))
    info.update({k: v for k, v in (("lineage", unit.lineage), ("generation", unit.generation), ("tokens", unit.tokens))
                 if v is not None})
    return run_develop(run.cfg, run.gcfg, unit.arm, unit.seed, run.at(unit).layout, train_paths=run.split("small"),
                       val_paths=run.split("val"), run_info=info, connectome=conn, max_tokens=unit.tokens,
                       progress=progress, stop_at=stop_at)


def eval_context(run: Run, out_dir: Path | None):
    return config_eval_context(run.cfg, Path(run.info["data_dir"]), out_dir)


def config_eval_context(cfg: Config, prepared_dir: Path | None, out_dir: Path | None):
    """The evaluation context a config asks for; the report rebuilds it to tell current results from stale ones."""
    from .evals import EvalContext

    e = cfg.eval
    # the val_loss headline scores the windows the training curves and generation 0 scored (the config
    # requires evolve and develop to share eval_tokens), so the three are comparable number for number
    return EvalContext(data_root=data_root_for(cfg), prepared_dir=prepared_dir, limit=e.limit.by_task(),
                       sample_seed=e.sample_seed, batch_size=e.batch_size, out_dir=out_dir,
                       options={"val_loss.tokens": cfg.develop.train.eval_tokens})


def available_tasks(run: Run, tasks: list[str]) -> tuple[list[str], list[str]]:
    """Tasks whose data folder (their spec's data_dir) exists; the others are returned separately so
    the report can say why they are absent."""
    from .evals import get_task

    root = data_root_for(run.cfg)
    ok, missing = [], []
    for t in tasks:
        need = get_task(t).data_dir
        if need is not None and (root is None or not (root / need).is_dir()):
            missing.append(t)
        else:
            ok.append(t)
    return ok, missing


def kept_steps(run: Run) -> list[int]:
    t = run.cfg.develop.train
    return sorted(set(t.keep_steps) | {t.iters})


def stage_eval(run: Run, arm: str, seed: int, *, progress: bool = True) -> Path:
    from .evals.runner import evaluate_steps

    out = run.layout.eval(arm, seed)
    trained = run.layout.develop(arm, seed)
    final = run.cfg.develop.train.iters
    step_tasks, missing_s = available_tasks(run, run.cfg.eval.step_tasks)
    # the final step gets every task (step tasks too, so the curves end at the final step)
    final_tasks, missing_f = available_tasks(run, list(dict.fromkeys(run.cfg.eval.tasks + run.cfg.eval.step_tasks)))
    missing = sorted(set(missing_s) | set(missing_f))
    out.mkdir(parents=True, exist_ok=True)
    if missing:
        atomic_write_text(run.layout.skipped(arm, seed), json.dumps({"skipped_tasks": missing, "reason": "data folder absent"}))
    ctx = eval_context(run, out)
    # step 0 (the untrained model) gets every task too: its values are the report's floor rows
    full = [s for s in kept_steps(run) if s in (0, final)]
    others = [trained.step(s) for s in kept_steps(run) if s not in full]
    if others and step_tasks:
        evaluate_steps(others, step_tasks, ctx, out)
    evaluate_steps([trained.step(s) for s in full], final_tasks, ctx, out)
    return out


def _stop_step(stop, unit: Unit) -> int | None:
    """The step a test's ``stop`` = ("develop", unit, step) asks this unit to stop at."""
    return stop[2] if stop and stop[0] == "develop" and stop[1] == unit else None


def run_study(cfg: Config, *, progress: bool = True, stop=None) -> Path:
    """Everything, resumable: every lineage's evolution, then every unit (sweep.units), its evaluation, the report.

    ``stop`` (tests) = ("evolve", gen, step) (in the first lineage) or ("develop", unit, step)."""
    t0 = time.time()
    run = open_run(cfg, progress=progress)
    note(f"run folder {run.dir}; data {run.info['data_dir']} ({run.info['tokenizer']} tokenizer)")
    for i, lin in enumerate(lineages(cfg)):
        stop_evolve = (stop[1], stop[2]) if stop and stop[0] == "evolve" and i == 0 else None
        if stage_evolve(run, progress=progress, stop_at=stop_evolve, lineage=lin) is None:
            note("stopped inside evolve; re-run the same command to continue")
            return run.dir
    todo = units(cfg)
    for unit in todo:
        if not stage_develop(run, unit, progress=progress, stop_at=_stop_step(stop, unit)).finished:
            note("stopped inside develop; re-run the same command to continue")
            return run.dir
    from . import distributed

    if not distributed.is_main():  # evaluation and the report are single-process work
        distributed.barrier()
        return run.dir
    for unit in todo:
        stage_eval(run.at(unit), unit.arm, unit.seed, progress=progress)
    from .report import write_report

    report = write_report(run.dir)
    distributed.barrier()
    note(f"study finished in {time.time() - t0:.0f} s; report: {report}")
    return run.dir


# ---------------------------------------------------------------------------------------------
# status and plan


def existing_run(run_dir: Path) -> tuple[Config, RunLayout]:
    """The resolved config and layout of a run folder on disk (status, connectome files); a folder
    without a readable config.yaml is one UserError."""
    from .config import from_dict, read_run_config

    from .layout import existing_run_folder

    run_dir = existing_run_folder(run_dir)
    cfg = from_dict(Config, read_run_config(RunLayout(run_dir).config))
    return cfg, RunLayout(run_dir, Path(cfg.data.dir) if cfg.data.dir else None)


def status(run_dir: Path) -> list[tuple[str, str]]:
    """(stage, state) rows for a run folder, read from what is on disk."""
    cfg, layout = existing_run(run_dir)
    rows = [("prepare", "done" if layout.data_meta.exists() else "pending")]
    for lin in lineages(cfg):
        rows += _evolve_rows(cfg, layout.lineage(lin), "" if lin is None else f"lineage {lin} ")
    kept = set(cfg.develop.train.keep_steps) | {cfg.develop.train.iters}
    todo = units(cfg)
    for u in todo:
        trained = layout.unit(u.tag).develop(u.arm, u.seed)
        rows.append((f"develop {u.label}", _train_state(trained, cfg.develop.train.iters, trained.done.exists())))
    for u in todo:
        n = sum(layout.unit(u.tag).eval_step(u.arm, u.seed, step).exists() for step in kept)
        rows.append((f"eval {u.label}", f"{n}/{len(kept)} steps"))
    rows.append(("report", "done" if layout.report_md.exists() else "pending"))
    return rows


def _evolve_rows(cfg: Config, layout: RunLayout, prefix: str) -> list[tuple[str, str]]:
    rows = [(f"{prefix}evolve gen {g}", _train_state(layout.generation(g), cfg.evolve.train.iters,
                                                     layout.generation_record(g).exists()))
            for g in range(cfg.evolve.generations)]
    return rows + [(f"{prefix}connectome", "done" if layout.connectome.exists() else "pending")]


def _train_state(trained: TrainLayout, iters: int, done: bool) -> str:
    from .checkpoint import saved_step

    if done:
        return "done"
    step = saved_step(trained)
    return "pending" if step is None else f"running/stopped at step {step}/{iters}"
