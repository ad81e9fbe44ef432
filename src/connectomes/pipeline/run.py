"""A run: the resolved config written into its folder, the prepared data opened, the model sized.

:func:`open_run` is every stage's start (the study's and each single-stage verb's): a :class:`Run`.
:func:`existing_run` is the one way a folder a study made is opened again, as a :class:`RunFolder` (its
config and its layout): by the verbs that look at one (status, connectome files, report, anatomy), by a
study worker, and by the analysis.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from ..core import distributed
from ..core.atomic import atomic_write_text, sweep_debris
from ..core.config import LOCATION, config_hash, flatten, result_neutral, to_dict
from ..core.errors import ConfigError, UserError
from ..core.inputs import default_data_root
from ..core.layout import RunLayout
from ..core.readers import read_json
from ..core.provenance import VERSION
from ..data.prepare import open_prepared, prepare_data
from ..model.gpt import GPTConfig, check_memory
from . import corpora
from .config import Config, dump_config, run_config
from .plan import plan_gpt_config
from .sweep import Unit


def note(msg: str) -> None:
    print(f"[connectomes] {msg}", file=sys.stderr, flush=True)


@dataclass
class Run:
    """A run opened for the pipeline's stages: config.yaml written, the prepared data opened, the model sized."""

    cfg: Config
    layout: RunLayout
    data: object  # connectomes.data.prepare.PreparedData
    gcfg: GPTConfig
    info: dict  # goes into every checkpoint's state.json
    data_hash: str
    vocab_size: int  # the tokenizer's (the model's may be padded)
    corpora: dict = dataclasses.field(default_factory=dict)  # every corpus's PreparedData by name (pipeline.corpora)
    corpus: str | None = None  # the corpus a unit develops on (Run.at; None: the run's own)

    @property
    def dir(self) -> Path:
        """The run folder."""
        return self.layout.root

    def split(self, name: str) -> list[Path]:
        return self.data.split_paths(name)

    def data_of(self, corpus: str | None):
        """Corpus ``corpus``'s prepared data (None: the run's own)."""
        return self.data if corpora.is_own(self.cfg.data, corpus) else self.corpora[corpus]

    def corpus_hash(self, corpus: str | None) -> str:
        """What identifies corpus ``corpus``'s prepared data (the run's own: data_hash)."""
        return data_hash_of(self.data_of(corpus).meta)

    def at(self, unit: Unit) -> "Run":
        """This run with develop/ and eval/ paths at a sweep unit (the same run for a plain study's units)."""
        return dataclasses.replace(self, layout=self.layout.unit(unit.tag), corpus=unit.corpus)

    def model_config(self, shape: str | None = None) -> GPTConfig:
        """The model an evolution or a unit at ``shape`` (a model.shapes entry; None: the model section's own)
        trains."""
        return self.gcfg if shape is None else self.cfg.model.gpt_config(vocab_size=self.vocab_size, shape=shape)


def data_hash_of(meta: dict) -> str:
    """What identifies a prepared data folder's content: its tokenizer and its splits (shard digests included)."""
    return config_hash({k: meta.get(k) for k in ("tokenizer", "splits")})


def resolve_source(cfg: Config) -> Config:
    """Fall back to the built-in synthetic corpus when no text folder exists (the demo works anywhere)."""
    if cfg.data.source != "local" or cfg.data.path:
        return cfg
    root = default_data_root()
    if root is not None and (root / "corpus").is_dir():
        return cfg
    if not cfg.data.synthetic_fallback:
        raise UserError("no text corpus found: `connectomes data fetch` downloads it, or set CONNECTOMES_DATA to the data "
                        "folder or data.path to a folder of .txt/.jsonl files")
    note("no data folder with a corpus found (CONNECTOMES_DATA unset, no ../shared/data, nothing fetched): using the "
         "package's synthetic corpus; numbers from it say nothing about language (`connectomes data fetch` gets the real data)")
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source="synthetic"))


def _check_existing_config(layout: RunLayout, cfg: Config) -> None:
    p = layout.config
    if not p.exists():
        return
    old = flatten(to_dict(run_config(p)))
    new = flatten(to_dict(cfg))
    # `train.*` only drives the plain `train` verb and `eval.*` is re-checked per evaluation file;
    # everything else, except result-neutral settings and where the folder is, shapes outputs already in it.
    diff = sorted(k for k in set(old) | set(new)
                  if old.get(k) != new.get(k) and not k.startswith(("train.", "eval.")) and not result_neutral(k)
                  and k not in LOCATION)
    if diff:
        raise ConfigError(
            f"{layout.root} was made with a different config (differs in {', '.join(diff[:6])}"
            f"{'...' if len(diff) > 6 else ''}); use another name (name=...) or delete the folder"
        )


def recorded_config(cfg: Config) -> dict:
    """The config every checkpoint and result records: the resolved config without the runtime section,
    which says how the machine was used (threads, workers), not what was computed, so a run's files are
    the same bytes however many workers made them."""
    return {k: v for k, v in to_dict(cfg).items() if k != "runtime"}


def open_run(cfg: Config, *, progress: bool = True, prepare: bool = True, devices: tuple[str, ...] | None = None,
             owner: bool = True) -> Run:
    """Resolve the config, prepare (or reuse) the data, size the model, write config.yaml.

    config.yaml is written last: it pins the folder to this config, so nothing refused on the way (a
    budget larger than the corpus, a model too large for this machine) may leave it behind.

    ``devices``: the ``train.device`` settings of the stages this process will train (default: the
    study's, evolve and develop); under torchrun the process group's backend follows them. A study
    worker (``owner=False``) opens a folder the study process prepared and writes nothing outside units.
    """
    distributed.init(*(devices or (cfg.evolve.train.device, cfg.develop.train.device)))
    cfg = resolve_source(cfg)
    layout = RunLayout.of(cfg)
    data_dir = layout.data
    if distributed.is_main() and owner:
        _check_existing_config(layout, cfg)
        for shape in (None, *cfg.model.shapes):  # every shape the study trains, not only the base one
            try:
                check_memory(plan_gpt_config(cfg, shape=shape),
                             f"the model of {layout.root}" + (f" at model.shapes entry {shape}" if shape else ""))
            except ValueError as e:
                raise ConfigError(f"{e}; choose a smaller model (model.*)") from None
        layout.root.mkdir(parents=True, exist_ok=True)
        sweep_debris(layout.root)  # temporaries of killed writers (the caller holds the run lock)
        if prepare:
            prepare_data(corpora.corpus_config(cfg.data, None), data_dir, data_root=default_data_root(), progress=progress)
            corpora.prepare_corpora(cfg, layout, data_root=default_data_root(), progress=progress)
    distributed.barrier()
    data = open_prepared(data_dir)
    by_name = corpora.open_corpora(cfg, layout, data)
    meta = data.meta
    tok = data.tokenizer()
    gcfg = cfg.model.gpt_config(vocab_size=tok.vocab_size)
    if gcfg.vocab_size < tok.vocab_size:
        raise ConfigError(
            f"model.vocab_size ({gcfg.vocab_size}) is smaller than the {tok.name} tokenizer's vocabulary ({tok.vocab_size}); "
            "remove the override or raise it"
        )
    text = dump_config(cfg)
    # a command that changes nothing (a resumed or finished study run again) leaves the record as it was
    if distributed.is_main() and owner and not (layout.config.is_file() and layout.config.read_text() == text):
        atomic_write_text(layout.config, text)
    data_hash = data_hash_of(meta)
    info = {
        "tokenizer": tok.name,
        "data_dir": str(data_dir.resolve()),
        "gpt2_bpe_file": cfg.data.gpt2_bpe_file,
        "config": recorded_config(cfg),
        "config_hash": config_hash(recorded_config(cfg)),
        "data_hash": data_hash,
        "version": VERSION,
    }
    run = Run(cfg=cfg, layout=layout, data=data, gcfg=gcfg, info=info, data_hash=data_hash, vocab_size=tok.vocab_size,
              corpora=by_name)
    if cfg.data.corpora:  # every source's data, by name (a plain run's records stay as they were)
        info["corpora"] = {name: {"data_dir": str(d.dir.resolve()), "data_hash": run.corpus_hash(name)}
                           for name, d in by_name.items()}
    return run


@dataclass(frozen=True)
class RunFolder:
    """A run folder on disk, read back: its resolved config and its layout (nothing opened or written)."""

    dir: Path
    cfg: Config
    layout: RunLayout

    def gpt_config(self, shape: str | None = None) -> GPTConfig:
        """The model its evolutions and units train at ``shape`` (None: the model section's own), sized by the
        vocabulary its prepared data record (the tokenizer's, by its name, when they record none)."""
        try:
            meta = read_json(self.layout.data_meta, missing={}, remedy="")
        except UserError:  # a damaged meta.json: the verbs that need the data say so when they open it
            meta = {}
        vocab = meta.get("vocab_size") if isinstance(meta, dict) and isinstance(meta.get("vocab_size"), int) else None
        gcfg = plan_gpt_config(self.cfg, vocab)
        return gcfg if shape is None else self.cfg.model.gpt_config(vocab_size=gcfg.vocab_size, shape=shape)


def existing_run(run_dir: str | Path) -> RunFolder:
    """The run folder ``run_dir`` read back; a folder without config.yaml, or with one that is not a readable
    resolved config, is one UserError. Verbs check this before locking a folder, since taking the lock
    would create it."""
    run_dir = Path(run_dir)
    if not RunLayout(run_dir).config.is_file():
        raise UserError(f"{run_dir} is not a run folder (no config.yaml); pass runs/<name>")
    cfg = run_config(RunLayout(run_dir).config)
    return RunFolder(run_dir, cfg, RunLayout(run_dir, Path(cfg.data.dir) if cfg.data.dir else None))
