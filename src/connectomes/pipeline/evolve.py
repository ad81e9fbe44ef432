"""The outer loop ("evolution", docs/method.md §3): G generations of train on `large` -> prune -> re-initialise.

Each generation is a training run in ``<run>/evolve/gen_XX/``; after it, ``pruned/`` holds the
model + masks after pruning and re-initialisation and the data stream's position (= the start of
the next generation) and ``generation.json`` its record (see :mod:`connectomes.core.layout`). With
evolve.reinit=rewind the weights at evolve.rewind_step are kept in ``rewind.safetensors``.

Every piece is written atomically, so a re-run continues from the last complete piece: a finished
generation is never retrained, and an unfinished one resumes exactly from its last checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from ..connectome.codec import GENERATION_BASE, codec_bits, load_connectome, save_connectome
from ..connectome.masks import ParamMask, dense_masks, magnitude_prune, reinit_signed_constant, rewind
from ..connectome.ternary import Connectome
from ..core import distributed
from ..core.atomic import atomic_write, atomic_write_json, make_dirs
from ..core.config import config_hash, to_dict
from ..core.errors import CheckpointError, DataError
from ..core.layout import RunLayout, generation_name
from ..core.readers import read_json, read_safetensors
from ..data.config import MULTI_CORPUS_KEYS
from ..data.stream import TokenStream
from ..model.gpt import GPT, GPTConfig, load_reference_state_dict
from ..training import checkpoint as ckpt
from ..training.loop import TrainResult, make_stream, train
from . import corpora
from .config import Config


def evolve_hash(cfg: Config, gcfg: GPTConfig, lineage: int | None = None) -> str:
    """What a generation's result depends on: model shape, outer-loop settings and the data; for a
    lineage of a sweep (evolve.seeds) also its seed, which sets the init and the data order, and the corpus it
    evolves on where that is not the run's own (evolve.corpus_by_seed). The settings that choose among corpora
    are left out: adding a corpus to develop on leaves every lineage's evolution as it was."""
    data = {k: v for k, v in to_dict(cfg.data).items() if k not in MULTI_CORPUS_KEYS}
    evolve = {k: v for k, v in to_dict(cfg.evolve).items() if k != "corpus_by_seed"}
    parts = {"model": gcfg.to_dict(), "evolve": evolve, "data": data}
    if lineage is not None:
        parts["lineage"] = lineage
    corpus = corpora.lineage_corpus(cfg, lineage)
    if corpus is not None:
        parts["corpus"] = {"name": corpus, "data": to_dict(corpora.corpus_config(cfg.data, corpus))}
    return config_hash(parts)


def initial_model(gcfg: GPTConfig, seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(gcfg)


def _load_pruned(layout: RunLayout, g: int, gcfg: GPTConfig, stream: TokenStream) -> tuple[GPT, dict[str, torch.Tensor]]:
    """Generation ``g``'s output: the next generation's model and masks, with ``stream`` moved to
    where the next generation's data start."""
    folder = layout.pruned(g)
    ckpt.verify_step(folder)  # the next generation must not start from a damaged file
    check_provenance(layout, g)  # nor from another run's
    model = GPT(gcfg)
    load_reference_state_dict(model, ckpt.load_weights(folder))
    state = ckpt.read_state(folder)
    if "stream" not in state:
        raise CheckpointError(f"{folder} has no data stream position (made by an older version); "
                              f"delete {layout.generation(g).root} to redo that generation")
    stream.load_state_dict(state["stream"])
    return model, ckpt.load_masks(folder).masks


def completed_generations(layout: RunLayout, h: str) -> int:
    """Number of leading generations whose pruned state exists and matches the config hash ``h``."""
    g = 0
    while True:
        record = read_generation_record(layout, g)
        if record is None or record.get("evolve_hash") != h:
            return g
        g += 1


def read_generation_record(layout: RunLayout, g: int) -> dict | None:
    """Generation ``g``'s generation.json (None when absent): written last, it marks the generation complete."""
    path = layout.generation_record(g)
    remedy = f"delete it and re-run evolve or study: generation {g}'s pruning is redone from its finished training"
    rec = read_json(path, missing=None, remedy=remedy)
    if rec is None:
        return None
    number = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)  # noqa: E731
    if (rec.get("generation") != g or not isinstance(rec.get("evolve_hash"), str) or not number(rec.get("total_density_after"))
            or not (rec.get("val_loss") is None or number(rec["val_loss"]))):
        raise DataError(f"{path} does not hold generation {g}'s record (generation, evolve_hash, val_loss, "
                        f"total_density_after); {remedy}")
    return rec


class _OuterLoop:
    """One lineage's outer loop while it runs: its fixed parts (settings, where things go, the data, the shared
    stream) and its steps (train a generation, prune it, write the connectome)."""

    def __init__(self, cfg: Config, gcfg: GPTConfig, layout: RunLayout, stream: TokenStream, *,
                 val_paths: list[Path] | None, run_info: dict, progress: bool, lineage: int | None = None):
        self.ev, self.gcfg, self.layout, self.stream = cfg.evolve, gcfg, layout, stream
        self.hash, self.lineage = evolve_hash(cfg, gcfg, lineage), lineage
        self.val_paths, self.run_info, self.progress = val_paths, run_info, progress

    def train_generation(self, g: int, model: GPT, masks: dict | None, stop_at: int | None) -> TrainResult:
        ev, rewind_path = self.ev, self.layout.rewind

        def on_step(step: int, m: GPT) -> None:
            if ev.reinit == "rewind" and g == 0 and step == ev.rewind_step and not rewind_path.exists() and distributed.is_main():
                _save_snapshot(m, rewind_path)

        return train(
            model, ev.train, self.stream, val_paths=self.val_paths, out_dir=self.layout.generation(g).root,
            masks=ParamMask(masks) if masks is not None else None,
            run_info=dict(self.run_info, stage="evolve", generation=g),
            desc=f"evolve {'' if self.lineage is None else f'lineage {self.lineage} '}{generation_name(g, ev.generations)}",
            progress=self.progress, stop_at=stop_at, on_step=on_step,
        )

    def prune(self, g: int, model: GPT, masks: dict | None, result: TrainResult) -> dict[str, torch.Tensor]:
        """Prune and re-initialise the trained model in place; rank 0 writes the result. Returns the new masks."""
        ev = self.ev
        masks = {k: v.cpu() for k, v in (masks if masks is not None else dense_masks(model)).items()}
        model.cpu()
        alive_before = {k: int(v.sum()) for k, v in masks.items()}
        masks = magnitude_prune(model, masks, ev.prune_fraction, scope=ev.prune_scope)
        if ev.reinit == "signed_constant":
            reinit_signed_constant(model, masks, ev.reinit_constant)
        else:
            rewind(model, masks, read_safetensors(self.layout.rewind, error=DataError, remedy=(
                f"delete {self.layout.evolve} to evolve again (the rewind weights are taken at generation 0)"))[0])
        # Every rank prunes its own (identical, DDP-synchronised) copy; only rank 0 writes.
        if distributed.is_main():
            # evolve_hash: whose pruning this is, checked against generation.json beside it (check_provenance)
            state = dict(self.run_info, stage="evolve-pruned", generation=g, model_config=self.gcfg.to_dict(),
                         stream=result.stream_state, evolve_hash=self.hash)
            ckpt.save_step(self.layout.pruned(g), model, state, masks=ParamMask(masks))
            # before the record that marks the generation complete, so a complete one always has its size
            record_bits(self.layout, g, Connectome.from_model(model, masks, meta=generation_meta(self.gcfg, self.layout, g)))
            alive = {k: int(v.sum()) for k, v in masks.items()}
            numel = {k: v.numel() for k, v in masks.items()}
            atomic_write_json(self.layout.generation_record(g), {
                "generation": g,
                "evolve_hash": self.hash,
                "val_loss": result.final_val_loss,
                "alive_before": alive_before,
                "alive_after": alive,
                "numel": numel,
                "density_after": {k: alive[k] / numel[k] for k in alive},
                "total_density_after": sum(alive.values()) / sum(numel.values()),
                "train_wall_s": result.wall_s,
            })
        distributed.barrier()
        return masks

    def write_connectome(self, model: GPT, masks: dict[str, torch.Tensor]) -> Path:
        conn = Connectome.from_model(model, masks, meta=connectome_meta(self.ev, self.gcfg, self.layout, self.hash,
                                                                         self.ev.generations - 1, self.lineage))
        if distributed.is_main():
            save_connectome(conn, self.layout.connectome)
        distributed.barrier()
        return self.layout.connectome


def run_evolve(cfg: Config, gcfg: GPTConfig, layout: RunLayout, *, train_paths: list[Path],
               val_paths: list[Path] | None, run_info: dict, progress: bool = True,
               stop_at: tuple[int, int] | None = None, lineage: int | None = None) -> Path | None:
    """Run (or continue) the outer loop; returns the connectome path, or None if stopped early.

    ``stop_at=(generation, step)`` stops inside that generation after its checkpoint at ``step``
    (used to test that a killed study resumes exactly). One data stream runs through all
    generations, as the reference's persistent loader does. ``lineage`` (a sweep's evolve.seeds
    entry; ``layout`` is then that lineage's) seeds the initial model and moves the stream's start.
    """
    ev = cfg.evolve
    make_dirs(layout.evolve)
    done = completed_generations(layout, evolve_hash(cfg, gcfg, lineage))
    if done >= ev.generations and layout.connectome.exists():
        return layout.connectome
    evo = _OuterLoop(cfg, gcfg, layout, make_stream(train_paths, gcfg, ev.train), val_paths=val_paths,
                     run_info=run_info, progress=progress, lineage=lineage)
    if done == 0:
        model, masks = initial_model(gcfg, ev.train.seed if lineage is None else lineage), None
        if lineage is not None:
            evo.stream.seek_for_seed(lineage)  # a resumed generation 0 restores its own position instead
    else:
        model, masks = _load_pruned(layout, done - 1, gcfg, evo.stream)
    if ev.reinit == "rewind" and ev.rewind_step == 0 and not layout.rewind.exists():
        if distributed.is_main():
            _save_snapshot(model, layout.rewind)
        distributed.barrier()
    for g in range(done, ev.generations):
        result = evo.train_generation(g, model, masks, stop_at[1] if stop_at and stop_at[0] == g else None)
        if not result.finished:
            return None
        masks = evo.prune(g, model, masks, result)
    return evo.write_connectome(model, masks)


def _save_snapshot(model: GPT, path: Path) -> None:
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.endswith("inv_freq")}
    atomic_write(path, lambda tmp: save_file(weights, str(tmp)))


def connectome_meta(ev, gcfg: GPTConfig, layout: RunLayout, h: str, g: int, lineage: int | None = None) -> dict:
    """Provenance of generation ``g``'s connectome. ``config_hash`` (evolve_hash: the run's model, outer loop,
    data and lineage) and ``generation`` are what develop checks (:func:`evolved_connectome`)."""
    return {**generation_meta(gcfg, layout, g), "config_hash": h, "lineage": lineage,
            "prune_fraction": ev.prune_fraction, "prune_scope": ev.prune_scope, "reinit": ev.reinit}


def evolved_connectome(cfg: Config, gcfg: GPTConfig, layout: RunLayout, lineage: int | None = None) -> Connectome:
    """The evolved connectome develop starts from (``layout``: the lineage's), refused unless its file records
    this run's evolution (model, outer loop, data, lineage) and its last generation: another valid connectome
    put in its place (an earlier generation's, another run's or lineage's) would be developed without a word."""
    path, g = layout.connectome, cfg.evolve.generations - 1
    conn = load_connectome(path)  # an older file's generation, counted from 1, is read counted from 0
    found = (conn.meta.get("config_hash"), conn.meta.get("generation"), conn.meta.get("lineage"))
    if found[:2] != (evolve_hash(cfg, gcfg, lineage), g) or ("lineage" in conn.meta and found[2] != lineage):
        raise CheckpointError(
            f"{path} is not this run's evolved connectome: it records generation {found[1]!r}"
            f"{'' if found[2] is None else f' of lineage {found[2]}'} and evolve hash {str(found[0])[:12]!r}, this "
            f"unit needs generation {g}{'' if lineage is None else f' of lineage {lineage}'} and "
            f"{evolve_hash(cfg, gcfg, lineage)[:12]!r}; delete it and re-run evolve (or study) to write it again")
    return conn


def check_provenance(layout: RunLayout, g: int) -> None:
    """Refuse generation ``g``'s pruned state when it was made by another evolution than the generation.json
    beside it records (another run's ``pruned/`` copied in: its digests hold, its origin does not). The evolve
    hash, not a path: a run folder moved or renamed as a whole is still its own. Pruned states written before
    they recorded it are not checked."""
    made = ckpt.read_state(layout.pruned(g)).get("evolve_hash")
    record = read_generation_record(layout, g)
    if made is not None and record is not None and record.get("evolve_hash") != made:
        raise CheckpointError(
            f"{layout.pruned(g)} was made by another evolution (evolve hash {made}) than this run's generation {g} "
            f"({record.get('evolve_hash')}, {layout.generation_record(g)}): it was copied from another run; delete "
            f"{layout.generation(g).root} and re-run evolve (or study) to make this run's own")


def generation_connectome(layout: RunLayout, g: int, gcfg: GPTConfig) -> Connectome:
    """Generation ``g``'s connectome, derived exactly from what evolve saved after its pruning: the
    masks and the signs of the re-initialised survivors (the last generation's is connectome.safetensors)."""
    folder = layout.pruned(g)
    if not (folder / ckpt.STATE).exists():
        raise CheckpointError(f"generation {g} has no pruned state in {folder}; run evolve through generation {g} first")
    ckpt.verify_step(folder)
    check_provenance(layout, g)
    model = GPT(gcfg)
    load_reference_state_dict(model, ckpt.load_weights(folder))
    masks = ckpt.load_masks(folder)
    if masks is None:
        raise CheckpointError(f"{folder} has no masks; delete {layout.generation(g).root} to redo that generation")
    return Connectome.from_model(model, masks.masks, meta=generation_meta(gcfg, layout, g))


def lineage_connectome(cfg: Config, gcfg: GPTConfig, layout: RunLayout, lineage: int | None, g: int) -> Connectome:
    """Generation ``g``'s connectome of a lineage: the last generation's is the evolved file (sealed, and checked to
    be this lineage's), an earlier one's is derived from its verified pruned checkpoint."""
    if g == cfg.evolve.generations - 1:
        return evolved_connectome(cfg, gcfg, layout, lineage)
    return generation_connectome(layout, g, gcfg)


def generation_weights(cfg: Config, layout: RunLayout, g: int) -> dict[str, torch.Tensor]:
    """Generation ``g``'s trained weights before its pruning (its final step, verified): what the inherit arms
    start from."""
    trained = layout.generation(g)
    step = ckpt.finished_step(trained)
    if step is None or not (trained.step(step) / ckpt.STATE).exists():
        raise CheckpointError(f"generation {g} in {layout.evolve} has no finished trained step (evolve.train.iters = "
                              f"{cfg.evolve.train.iters}); run evolve through generation {g} first")
    ckpt.verify_step(trained.step(step))
    return ckpt.load_weights(trained.step(step))


def generation_meta(gcfg: GPTConfig, layout: RunLayout, g: int) -> dict:
    """A generation file's provenance; the same at evolve and later, so recorded file sizes match the files.
    The generation is counted from 0 like its gen_XX/ folder, and the file says so (generation_base)."""
    return {"model_config": gcfg.to_dict(), "generation": g, "generation_base": GENERATION_BASE,
            "source_run": str(layout.root)}


def record_bits(layout: RunLayout, g: int, conn: Connectome) -> dict:
    """Write generation ``g``'s connectome size (connectome_file.codec_bits: i.i.d. bound, ANS and
    structured payloads and whole files, per tensor and in total) next to its record; returns it."""
    bits = codec_bits(conn)
    d = conn.density()
    rec = {"generation": g, "density": d["total"], "alive": sum(int((t != 0).sum()) for t in conn.ternary.values()),
           "total": bits["total"], "tensors": bits["tensors"]}
    atomic_write_json(layout.generation_bits(g), rec)
    return rec


def generation_bits(layout: RunLayout, g: int, gcfg: GPTConfig) -> dict:
    """Generation ``g``'s size record, computed from its pruned state when absent (older run folders)."""
    rec = read_bits_record(layout, g)
    return rec if rec is not None else record_bits(layout, g, generation_connectome(layout, g, gcfg))


def read_bits_record(layout: RunLayout, g: int) -> dict | None:
    """Generation ``g``'s connectome_bits.json (None when absent), with the totals the report and the
    connectome verb print checked to be numbers."""
    path = layout.generation_bits(g)
    remedy = "delete it: it is computed again from the pruned state"
    rec = read_json(path, missing=None, remedy=remedy)
    total = rec.get("total") if rec is not None else {}
    number = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)  # noqa: E731
    if rec is not None and not (number(rec.get("density")) and isinstance(total, dict)
                                and all(number(total.get(k)) for k in ("bound", "ans_file", "structured_file"))):
        raise DataError(f"{path} does not hold a connectome size record (density, total bound / ans_file / "
                        f"structured_file); {remedy}")
    return rec


def generation_summaries(layout: RunLayout) -> list[dict]:
    """The generation records present in ``layout``'s evolve/, in order."""
    return [r for g in layout.generations_present() if (r := read_generation_record(layout, g)) is not None]
