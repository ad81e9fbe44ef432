"""What a task needs besides the model (:class:`EvalContext`), what decides a result besides the weights
(:meth:`EvalContext.request`), and the one way a context is built (:func:`build_context`: from the eval verb's
flags, or from a study's config by :func:`context_for`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..core.inputs import default_data_root, resolve_data_path
from ..training.validation import report_slice
from .registry import TaskSpec, all_options, sampled_tasks


@dataclass
class EvalContext:
    """What a task needs besides the model: where data lives and how much of it to use."""

    data_root: Path | None = None  # folder holding each task's data_dir
    prepared_dir: Path | None = None  # prepared token shards (the val split)
    # max items of the sampled tasks (registry.sampled_tasks), a seeded sample (0 = all): one number for
    # every such task, or per task name ({task: n}; an absent task = all); other tasks ignore it
    limit: int | dict = 0
    sample_seed: int = 0  # seed of that sample (evals.sampling)
    batch_size: int = 16
    out_dir: Path | None = None  # where tasks may write side files (per-word tables, unit masks)
    options: dict = field(default_factory=dict)  # task-specific options, e.g. {"fmri.roi": "lang_LH_IFG"}
    # val_loss on named corpora (a study with several, pipeline.corpora): their prepared folders by name, the first
    # being the one the unit developed on (its ``loss``); val_corpora are the others every unit is also scored on
    val_dirs: dict = field(default_factory=dict)
    val_corpora: list = field(default_factory=list)

    def limit_for(self, task: str) -> int:
        """The item limit of ``task`` (0 = all)."""
        return int(self.limit.get(task, 0)) if isinstance(self.limit, dict) else int(self.limit)

    def option(self, key: str):
        """The declared option ``key``, parsed; its default when not given."""
        opt = all_options()[key]
        return opt.parse(self.options.get(key, opt.default), key)

    def request(self) -> dict:
        """What, besides the weights and the task names, decides a result; JSON-normalised so that an
        option given as a list in Python and read back from a file compare equal. The data root is part
        of it: other task data (eval.data_root) means other results. Results record it, and a result is
        reused (runner) or reported (analysis) only while it matches (:func:`changed`)."""
        data_root = str(self.data_root) if self.data_root else None
        req = {"limit": self.limit, "sample_seed": self.sample_seed, "options": self.options, "data_root": data_root}
        if self.val_corpora:  # scored beside the unit's own val split (absent: results made before corpora stay current)
            req["val_corpora"] = list(self.val_corpora)
        return json.loads(json.dumps(req, sort_keys=True, default=str))


def build_context(*, data_root: str | Path | None = None, prepared_dir: str | Path | None = None, limit: int | dict = 0,
                  sample_seed: int = 0, batch_size: int = 16, out_dir: str | Path | None = None,
                  options: dict | None = None) -> EvalContext:
    """An evaluation context; an unset data root (None or empty) is $CONNECTOMES_DATA, as eval.data_root's is."""
    return EvalContext(data_root=Path(data_root) if data_root else default_data_root(),
                       prepared_dir=Path(prepared_dir) if prepared_dir else None, limit=limit, sample_seed=sample_seed,
                       batch_size=batch_size, out_dir=Path(out_dir) if out_dir else None, options=dict(options or {}))


def _limited_tasks(limit) -> dict[str, int]:
    """A recorded limit as {sampled task: n > 0}: a plain number limits every sampled task, and an absent
    task and 0 both mean all items (so adding a sampled task to the registry leaves older results current)."""
    if isinstance(limit, dict):
        return {t: n for t, n in limit.items() if n}
    return {t: limit for t in sampled_tasks()} if limit else {}


def changed(recorded: dict, request: dict) -> list[str]:
    """The parts of ``request`` (EvalContext.request) that a recorded result was made with other values of.

    Limits are compared for the tasks the result holds: a limit set for a task added later (BLiMP beside
    HellaSwag) leaves the other tasks' results current, so only the new task is scored."""
    held = recorded.get("tasks")

    def limits(limit) -> dict[str, int]:
        lim = _limited_tasks(limit)
        return lim if not isinstance(held, dict) else {t: n for t, n in lim.items() if t in held}

    return [k for k in request if (limits(recorded.get(k)) != limits(request[k]) if k == "limit"
                                   else recorded.get(k) != request[k])]


def data_path(ctx: EvalContext, spec: TaskSpec) -> Path:
    """The ``<task>.path`` option if given, else ``data_root/<spec.data_dir>``."""
    key = f"{spec.name}.path"
    return resolve_data_path(ctx.option(key), ctx.data_root, spec.data_dir, key)


def data_root_for(cfg) -> Path | None:
    """The task data folder a study's config names (eval.data_root), else $CONNECTOMES_DATA."""
    return Path(cfg.eval.data_root) if cfg.eval.data_root else default_data_root()


def context_for(cfg, prepared_dir: Path | None = None, out_dir: Path | None = None,
                val_dirs: dict | None = None) -> EvalContext:
    """The evaluation context a study's config asks for; the report rebuilds it to tell current results from stale
    ones. ``val_dirs``: the prepared folders val_loss scores at a unit (pipeline.study.val_dirs)."""
    e = cfg.eval
    ctx = build_context(data_root=data_root_for(cfg), prepared_dir=prepared_dir, limit=dict(e.limit),
                        sample_seed=e.sample_seed, batch_size=e.batch_size, out_dir=out_dir,
                        options=val_loss_options(cfg.develop.train))
    ctx.val_dirs = dict(val_dirs or {})
    ctx.val_corpora = list(cfg.data.val_corpora)
    return ctx


def val_loss_options(train) -> dict:
    """The val_loss task's options for units trained with ``train`` (a TrainConfig). Units that keep a best
    step chose it on the curves' windows, so val_loss scores the report slice after them (the curves'
    logged report_loss, number for number). Otherwise it scores the windows the training curves and
    generation 0 scored (the config requires evolve and develop to share eval_tokens), so the three are
    comparable number for number; that request is the one such results always recorded."""
    where = report_slice(train)
    if where is None:
        return {"val_loss.tokens": train.eval_tokens}
    offset, tokens = where
    return {"val_loss.tokens": tokens, "val_loss.offset": offset}


def step_val_loss_options(path: Path) -> tuple[dict, str]:
    """The val_loss options a study reports a step folder with (:func:`val_loss_options` of the training config
    its state.json records), and where they come from in words; ({}, why) for a checkpoint that records none
    (a weights file, a Hugging Face folder), which is then scored on the task's own default budget."""
    from ..core.config import from_dict
    from ..core.errors import UserError
    from ..core.readers import read_json
    from ..training.config import TrainConfig

    try:
        state = read_json(Path(path) / "state.json", missing=None, remedy="")
        train = from_dict(TrainConfig, state["train_config"]) if isinstance(state, dict) and "train_config" in state else None
    except (UserError, KeyError, TypeError):
        train = None
    if train is None:
        return {}, "no training config recorded: the val_loss task's default budget, not a study's"
    options = val_loss_options(train)
    where = (f"the report slice after the first {options['val_loss.offset']:,} tokens" if "val_loss.offset" in options
             else "the first tokens of the val split")
    return options, f"as the study reports this step: its training's eval budget, {where}"
