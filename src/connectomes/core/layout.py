"""Where everything of a run lives: the one place that spells out the run folder.

    <run>/config.yaml                            the fully resolved config
    <run>/data/                                  prepared shards + meta.json (or data.dir)
    <run>/data-<name>/                           another corpus's prepared folder (data.corpora; beside data.dir)
    <run>/evolve/gen_XX/                         a generation's training run (a TrainLayout)
    <run>/evolve/gen_XX/pruned/                  model + masks + stream position after pruning
    <run>/evolve/gen_XX/generation.json          val loss, alive counts, density after pruning
    <run>/evolve/gen_XX/connectome_bits.json     that generation's connectome size in bits (bound, ANS, structured)
    <run>/evolve/gen_XX/connectome.{safetensors,cnx}  that generation's connectome file (`connectomes connectome`)
    <run>/evolve/rewind.safetensors              weights at evolve.rewind_step (reinit=rewind)
    <run>/connectome.safetensors                 the connectome
    <run>/develop/<arm>/seed_<k>/                an arm x seed training run (a TrainLayout)
    <run>/eval/<arm>/seed_<k>/step_XXXXXX.json   evaluation results (+ skipped.json)
    <run>/train/                                 the plain `train` verb's run (a TrainLayout)
    <run>/report/report.md                       the report and its figures
    <run>/.claims/<item>.lock                    parallel workers' per-item locks (study --workers)

Sweeps add, only when their axes are set (core.axes): ``<run>/lineages/seed_<s>/`` = a whole evolve
tree (evolve/, connectome.safetensors) per lineage (evolve.seeds) and model shape (model.shapes:
``lineages/shape_<LxW>/[seed_<s>/]``), and a unit tag between ``develop/`` (or ``eval/``) and the arm:
``[shape_<LxW>/][lineage_<s>/][gen_XX/][tokens_<n>/]`` for a shape, a lineage, a generation other than
the last, and a developmental data size. Without a sweep the tag is empty
and every path is the one above.

A training run folder (TrainLayout) holds metrics.jsonl, steps/step_XXXXXX/, latest.json (the
step to resume from) and done.json (written when the run finished).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


STEP_PREFIX = "step_"
GEN_PREFIX = "gen_"


def step_name(step: int) -> str:
    """The name of a step's checkpoint folder, and of its evaluation JSON (plus ``.json``)."""
    return f"{STEP_PREFIX}{step:06d}"


def step_of(name: str) -> int:
    """The step number in a name made by :func:`step_name` (a folder name or a JSON file's stem)."""
    return int(name[len(STEP_PREFIX):])


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def generation_name(g: int, generations: int | None = None) -> str:
    """How every message names generation ``g``: counted from 0 like the gen_XX folders and the connectome file
    (generation_base 0), with its place in words, e.g. "generation 5 (the 6th of 6)"."""
    return f"generation {g} (the {ordinal(g + 1)}{f' of {generations}' if generations is not None else ''})"


@dataclass(frozen=True)
class TrainLayout:
    """One training run's folder."""

    root: Path

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def steps(self) -> Path:
        return self.root / "steps"

    def step(self, step: int) -> Path:
        return self.steps / step_name(step)

    @property
    def latest(self) -> Path:
        return self.root / "latest.json"

    @property
    def done(self) -> Path:
        return self.root / "done.json"

    @property
    def best(self) -> Path:
        """The step with the lowest logged val loss so far, when train.keep_best keeps its weights."""
        return self.root / "best.json"


@dataclass(frozen=True)
class RunLayout:
    """A study's run folder; ``data_dir`` is set when the prepared data live elsewhere (data.dir)."""

    root: Path
    data_dir: Path | None = None
    tag: tuple[str, ...] = ()  # a sweep unit's folders between develop/ (eval/) and the arm (core.axes.tag)

    @classmethod
    def of(cls, cfg) -> "RunLayout":
        """The layout of a :class:`connectomes.pipeline.config.Config`'s run."""
        return cls(Path(cfg.run_dir), Path(cfg.data.dir) if cfg.data.dir else None)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def data(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.root / "data"

    @property
    def data_meta(self) -> Path:
        return self.data / "meta.json"

    def corpus_data(self, name: str) -> Path:
        """The prepared folder of another corpus (data.corpora): beside the run's own, ``<data>-<name>``."""
        return self.data.parent / f"{self.data.name}-{name}"

    @property
    def evolve(self) -> Path:
        return self.root / "evolve"

    def generation(self, g: int) -> TrainLayout:
        return TrainLayout(self.evolve / f"{GEN_PREFIX}{g:02d}")

    def pruned(self, g: int) -> Path:
        return self.generation(g).root / "pruned"

    def generation_record(self, g: int) -> Path:
        return self.generation(g).root / "generation.json"

    def generations_present(self) -> list[int]:
        """The numbers of the generation folders present, in order."""
        numbers = (p.name[len(GEN_PREFIX):] for p in self.evolve.glob(f"{GEN_PREFIX}*"))
        return sorted(int(n) for n in numbers if n.isdigit())

    def generation_bits(self, g: int) -> Path:
        return self.generation(g).root / "connectome_bits.json"

    def generation_connectome(self, g: int, codec: str = "packed") -> Path:
        return self.generation(g).root / ("connectome.safetensors" if codec == "packed" else "connectome.cnx")

    def lineage(self, seed: int | None, shape: str | None = None) -> "RunLayout":
        """The layout whose evolve/ and connectome belong to lineage ``seed`` at model ``shape`` (both None:
        the run's own): lineages/[shape_<shape>/][seed_<seed>]."""
        if seed is None and shape is None:
            return self
        parts = ([] if shape is None else [f"shape_{shape}"]) + ([] if seed is None else [f"seed_{seed}"])
        return RunLayout(self.root.joinpath("lineages", *parts), self.data)

    def unit(self, tag: tuple[str, ...]) -> "RunLayout":
        """This layout with develop/ and eval/ paths under a sweep unit's tag."""
        return RunLayout(self.root, self.data_dir, tuple(tag))

    @property
    def rewind(self) -> Path:
        return self.evolve / "rewind.safetensors"

    @property
    def connectome(self) -> Path:
        return self.root / "connectome.safetensors"

    def develop(self, arm: str, seed: int) -> TrainLayout:
        return TrainLayout(self.root.joinpath("develop", *self.tag, arm, f"seed_{seed}"))

    def eval(self, arm: str, seed: int) -> Path:
        return self.root.joinpath("eval", *self.tag, arm, f"seed_{seed}")

    def eval_step(self, arm: str, seed: int, step: int) -> Path:
        return self.eval(arm, seed) / f"{step_name(step)}.json"

    def eval_steps(self, arm: str, seed: int) -> dict[int, Path]:
        """The evaluation JSONs present, by step."""
        found = self.eval(arm, seed).glob(f"{STEP_PREFIX}*.json")
        return {step_of(p.stem): p for p in sorted(found) if p.stem[len(STEP_PREFIX):].isdigit()}

    def skipped(self, arm: str, seed: int) -> Path:
        return self.eval(arm, seed) / "skipped.json"

    @property
    def train(self) -> TrainLayout:
        return TrainLayout(self.root / "train")

    @property
    def report(self) -> Path:
        return self.root / "report"

    def claim(self, item: str) -> Path:
        """The lock file a study worker holds while it works on ``item`` (a lineage's evolution, a unit)."""
        return self.root / ".claims" / f"{item}.lock"

    @property
    def report_md(self) -> Path:
        return self.report / "report.md"

