"""A run folder's anatomy (docs/method.md §8): every lineage's connectome at one generation (generation k's is
derived from ``evolve/gen_XX/pruned/``, so any generation of any lineage works), its generations before it,
generation 0's trained weights, the large split's token frequencies and the recorded codec sizes, read and
analysed into ``anatomy.json`` plus figures (``report/anatomy/`` by default).

Files it reads, and what it says when one is missing: generation 0's last training step
(``evolve/gen_00/steps/step_XXXXXX/model.safetensors``, the weights before its pruning; evolve keeps it as
the generation's latest checkpoint), the prepared ``data/`` (token frequencies and names) and
``connectome_bits.json`` (computed and written when absent, as `connectomes connectome` does).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...connectome.codec import content_hash, load_connectome
from ...core.atomic import atomic_write_json, make_dirs
from ...core.errors import CheckpointError, DataError, UserError
from ...core.layout import RunLayout
from ...core.provenance import VERSION
from ...data.prepare import open_prepared
from ...data.shards import read_shard
from ...model.gpt import GPTConfig, clean_state_dict
from ...pipeline.evolve import generation_bits, generation_connectome
from ...pipeline.run import RunFolder, existing_run, note
from ...pipeline.sweep import evolutions
from ...training import checkpoint as ckpt
from ..figures import draw_figures
from ..results import read_json
from .compare import codec_agreement, generation_step, magnitude_ranks, token_table
from .lineages import lineage_pair
from .placement import Shape, connectome_anatomy
from .stats import ALPHA, DRAWS

# 2: no sign-kept test against a fair coin; lineages' sign agreement against their own sign balances
FORMAT = "connectome-anatomy/2"
FILE = "anatomy.json"
_CHUNK = 1 << 26  # tokens counted at a time: 512 MB of int64 at most


@dataclass(frozen=True)
class EvolvedLineage:
    """One lineage (at one model shape) of a run, as its anatomy reads it: how anatomy.json names it, its evolve
    tree's layout and its model."""

    label: str
    shape: str | None
    layout: RunLayout
    gcfg: GPTConfig


@dataclass(frozen=True)
class AnatomyTarget:
    """What an anatomy analyses: a run folder (opened by pipeline.run.existing_run), its model and the
    generation analysed."""

    folder: RunFolder
    gcfg: GPTConfig
    generation: int

    @classmethod
    def open(cls, run_dir: str | Path, generation: int | None = None) -> "AnatomyTarget":
        folder = existing_run(run_dir)
        last = folder.cfg.evolve.generations - 1
        g = last if generation is None else generation
        if not 0 <= g <= last:
            raise UserError(f"--generation {g} is outside this run's generations 0..{last}")
        return cls(folder, folder.gpt_config(), g)

    @property
    def dir(self) -> Path:
        return self.folder.dir

    @property
    def cfg(self):
        return self.folder.cfg

    @property
    def layout(self) -> RunLayout:
        return self.folder.layout

    def lineages(self) -> list["EvolvedLineage"]:
        """Every independent evolution: "run" for a plain study, "lineage <s>" for evolve.seeds, prefixed by
        "shape <LxW>" for model.shapes (each shape's lineages have that shape's model)."""
        out = []
        for shape, lin in evolutions(self.cfg):
            words = ([] if shape is None else [f"shape {shape}"]) + ([] if lin is None else [f"lineage {lin}"])
            gcfg = self.gcfg if shape is None else self.cfg.model.gpt_config(vocab_size=self.gcfg.vocab_size, shape=shape)
            out.append(EvolvedLineage(" ".join(words) or "run", shape, self.layout.lineage(lin, shape), gcfg))
        return out

    def default_out(self) -> Path:
        last = self.generation == self.cfg.evolve.generations - 1
        return self.layout.report / ("anatomy" if last else f"anatomy_gen_{self.generation:02d}")


def token_frequency(layout: RunLayout) -> tuple[np.ndarray | None, str | None]:
    """How often each id occurs in the large split (the outer loop's data), or None with why."""
    try:
        paths = open_prepared(layout.data).split_paths("large")
    except DataError as e:
        return None, f"no token frequencies: {e}"
    counts = np.zeros(0, dtype=np.int64)
    for p in paths:
        tokens = read_shard(p)
        for start in range(0, tokens.size, _CHUNK):
            c = np.bincount(np.asarray(tokens[start:start + _CHUNK], dtype=np.int64))
            counts = np.pad(counts, (0, max(0, c.size - counts.size)))
            counts[:c.size] += c
    return counts, None


def _byte_name(i: int) -> str:
    return f"{i:#04x} {chr(i)!r}" if 0x20 <= i < 0x7f else f"{i:#04x}"


def token_names(layout: RunLayout, vocab: int) -> tuple[list[str] | None, str | None]:
    """A printable name per id (bytes: the byte; BPE: the decoded piece; past the tokenizer: "unused id"),
    or None with why (the ids are then the names)."""
    try:
        tok = open_prepared(layout.data, verify=False).tokenizer()
    except (DataError, UserError) as e:
        return None, f"token ids, not names: {e}"
    if tok.name == "bytes":
        return [_byte_name(i) for i in range(vocab)], None
    return [repr(tok.decode([i])) if i < tok.vocab_size else f"<unused id {i}>" for i in range(vocab)], None


def generation0_weights(layout: RunLayout) -> tuple[dict[str, torch.Tensor] | None, str | None]:
    """Generation 0's trained weights before its pruning (its last kept step), or None with why."""
    gen0 = layout.generation(0)
    latest = read_json(gen0.latest)
    folder = gen0.steps / latest["step_dir"] if isinstance(latest, dict) and "step_dir" in latest else None
    if folder is None or not (folder / ckpt.WEIGHTS).exists():
        return None, (f"generation 0's trained weights are not on disk (this needs {gen0.steps}/step_XXXXXX/"
                      f"{ckpt.WEIGHTS}, the last step of generation 0, named by {gen0.latest.name})")
    try:
        ckpt.verify_step(folder)
        return clean_state_dict(ckpt.load_weights(folder)), None
    except CheckpointError as e:
        return None, f"generation 0's trained weights cannot be read: {e}"


def _generations(layout: RunLayout, g: int, gcfg: GPTConfig):
    """(generation 0's connectome, the steps 1..g, generation g's connectome), holding two at a time."""
    first = prev = generation_connectome(layout, 0, gcfg)
    steps = []
    for k in range(1, g + 1):
        cur = generation_connectome(layout, k, gcfg)
        steps.append({"generation": k, **generation_step(prev, cur)})
        prev = cur
    return first, steps, prev


def analyse_lineage(run: AnatomyTarget, ev: EvolvedLineage, names, frequency, *, draws: int, seed: int):
    """One lineage's anatomy at the run's generation, and its connectome (for the lineage pairs)."""
    first, steps, conn = _generations(ev.layout, run.generation, ev.gcfg)
    out = connectome_anatomy(conn, ev.gcfg, tokens=names, draws=draws, seed=seed)
    out["shape"] = ev.shape
    out["tokens"] = token_table(out["tensors"], frequency, Shape.of(ev.gcfg, names))
    out["generations"] = steps
    weights, why = generation0_weights(ev.layout)
    out["magnitudes"] = magnitude_ranks(weights, first, conn) if weights is not None else {"missing": why}
    out["codec"] = codec_agreement(out["tensors"], generation_bits(ev.layout, run.generation, ev.gcfg))
    out["sha256"] = content_hash(conn)
    return out, conn


def analyse_run(run: AnatomyTarget, *, draws: int = DRAWS, seed: int = 0, progress: bool = True) -> dict:
    """Every lineage of the run at ``run.generation``, and every pair of lineages of one shape."""
    frequency, no_freq = token_frequency(run.layout)
    names, no_names = token_names(run.layout, run.gcfg.vocab_size)
    found, conns = {}, {}
    evolved = run.lineages()
    for ev in evolved:
        if progress:
            note(f"anatomy: {ev.label}, generation {run.generation}")
        found[ev.label], conns[ev.label] = analyse_lineage(run, ev, names, frequency, draws=draws, seed=seed)
    pairs = [{"a": a.label, "b": b.label,
              **lineage_pair(conns[a.label], conns[b.label], found[a.label]["tensors"], found[b.label]["tensors"], a.gcfg,
                             draws=draws, seed=seed)}
             for a, b in itertools.combinations(evolved, 2) if a.shape == b.shape]
    return {"format": FORMAT, "version": VERSION, "run": str(run.dir), "generation": run.generation,
            "generations": run.cfg.evolve.generations, "tokenizer": run.cfg.data.tokenizer, "alpha": ALPHA,
            "draws": draws, "seed": seed, "notes": [n for n in (no_freq, no_names) if n],
            "frequency": frequency.tolist() if frequency is not None else None,
            "lineages": found, "pairs": pairs}


def write_anatomy(run: AnatomyTarget, out: Path | None = None, *, draws: int = DRAWS, seed: int = 0,
                  progress: bool = True) -> tuple[dict, Path]:
    """Analyse and write ``anatomy.json`` and the figures into ``out`` (default :meth:`AnatomyTarget.default_out`)."""
    from .figures import anatomy_figures  # matplotlib: only when figures are drawn

    out = Path(out) if out is not None else run.default_out()
    make_dirs(out)  # first: a file or a link in the way is said before the whole analysis, not after it
    result = analyse_run(run, draws=draws, seed=seed, progress=progress)
    result["figures"] = draw_figures(anatomy_figures(result), out)
    path = atomic_write_json(out / FILE, result)
    # the file's content, not the dict it came from (its key order, its types): a report written now and one
    # written later from the file are then the same bytes
    return read_json(path), path


def current_anatomy(run: AnatomyTarget, out: Path) -> dict | None:
    """``out/anatomy.json`` when it describes every lineage's connectome of this generation as it is now."""
    found = read_json(out / FILE)
    if not isinstance(found, dict) or found.get("format") != FORMAT or found.get("generation") != run.generation:
        return None
    last = run.generation == run.cfg.evolve.generations - 1
    for ev in run.lineages():
        rec = found.get("lineages", {}).get(ev.label)
        path = ev.layout.connectome
        if not isinstance(rec, dict) or not last or not path.exists() or rec.get("sha256") != content_hash(load_connectome(path)):
            return None
    return found
