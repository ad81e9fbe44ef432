"""The BLiMP supplement of the BabyLM Challenge's evaluation pipeline (docs/method.md §6).

Five files of minimal pairs (``hypernym``, ``qa_congruence_easy``, ``qa_congruence_tricky``,
``subject_aux_inversion``, ``turn_taking``; 5,218 pairs; the dialogue items hold two turns separated by
``\\n``, scored as one text), scored as BLiMP (:mod:`connectomes.evals.minimal_pairs`: a tie counts as
half a pair).

Headline: the unweighted mean of the files' accuracies, BabyLM's convention, under which the 64 pairs of
``qa_congruence_easy`` weigh as much as the 3,867 of ``subject_aux_inversion``; beside it the pooled
accuracy over pairs, which weighs every pair alike. Per-pair outcomes sit beside the pooled accuracy
(``correct[acc_pooled]``), so arms are compared pair by pair on it; the mean over files is compared over
seeds. Item ids are ``file:index`` (0-based record index within the file, every file's own ``row`` field
repeats). ``limit`` scores a seeded sample stratified by file with proportional allocation (every file
present when the limit is at least 5).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ...core.errors import DataError
from ...core.integrity import sha256_file
from ..context import data_path
from ..minimal_pairs import Pair, read_records, score_task, unique_ids
from ..registry import Breakdown, Metric, TaskSpec, path_option
from .hellaswag import SKIP_MALFORMED


def pair_files(folder: Path) -> list[Path]:
    files = sorted(Path(folder).glob("*.jsonl"))
    if not files:
        raise DataError(f"no supplement files (*.jsonl) in {folder}; put the BabyLM supplement_filtered files there "
                        "or pass the option blimp_supplement.path=DIR")
    return files


@lru_cache(maxsize=4)
def _read(folder: str, skip: bool, stamp: tuple) -> tuple[tuple[Pair, ...], tuple[str, ...], tuple]:
    pairs, skipped, hashes = [], [], []
    for p in pair_files(Path(folder)):
        records, sk = read_records(p, (), "BLiMP supplement", skip)
        pairs += [Pair(f"{p.stem}:{k}", p.stem, rec["sentence_good"], rec["sentence_bad"]) for k, rec in records]
        skipped += sk
        hashes.append((p.name, sha256_file(p)))
    unique_ids(pairs, Path(folder))
    return tuple(pairs), tuple(skipped), tuple(hashes)


def load_pairs(folder: Path, skip_malformed: bool = False) -> tuple[list[Pair], list[str], dict[str, str]]:
    """Every pair of every file (files in name order), the skipped malformed records and each file's sha256;
    cached while no file of the folder changes."""
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in pair_files(Path(folder)))
    pairs, skipped, hashes = _read(str(folder), skip_malformed, stamp)
    return list(pairs), list(skipped), dict(hashes)


def run(lm, ctx) -> dict:
    _, scored, common = score_task(lm, ctx, SPEC, load_pairs, "supplement")
    mean = dict(scored["macro"])
    mean["files"] = mean.pop("groups")
    return {
        **common,
        "acc": mean, "acc_pooled": scored["pooled"], "files": scored["groups"],
        "correct": {"acc_pooled": scored["outcomes"]},
        "variant": scored["variant"] + "; headline: unweighted mean over files (BabyLM), pooled beside it",
    }


SPEC = TaskSpec(
    name="blimp_supplement", doc="BabyLM's BLiMP supplement (5 files of minimal pairs): mean accuracy over files",
    run=run, data_dir="blimp_supplement",
    options=(path_option("blimp_supplement", "blimp_supplement", "the folder of the supplement's *.jsonl files"),
             SKIP_MALFORMED),
    metrics=(Metric("BLiMP supplement acc (mean of files)", ("acc",), chance=0.5, figures=("accuracy",),
                    tick="supplement accuracy (mean over files)"),
             Metric("BLiMP supplement acc (pooled)", ("acc_pooled",), chance=0.5)),
    title="BLiMP supplement", default=True,
    sampled="BLiMP supplement pairs, a seeded sample stratified by file (0 = all 5,218)",
    breakdowns=(Breakdown("files", "file", doc="the pairs right in each file (a tie counts half); overall: the "
                          "unweighted mean over files, BabyLM's convention"),),
    data_digest=lambda ctx: data_digest(ctx),
)


def data_digest(ctx) -> dict[str, str]:
    """Each file's sha256 as a result records it (``data_sha256``)."""
    return load_pairs(data_path(ctx, SPEC), ctx.option("skip_malformed"))[2]
