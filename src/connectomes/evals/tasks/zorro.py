"""Zorro: grammatical minimal pairs in child-directed vocabulary (Huebner et al. 2021, BabyBERTa; used by the
BabyLM challenge). docs/method.md §6.

23 paradigm files (``<folder>/sentences/<phenomenon>-<paradigm>.txt``, or the files directly in the folder),
each 2,000 pairs of lines: the odd-numbered line the ungrammatical sentence, the even-numbered line after it
its grammatical partner (the data folder's README). The phenomenon is the file name before its last ``-``
(``filler-gap-wh_question_object`` is ``filler-gap``), 13 of them. Scored exactly as BLiMP, by the same code
(:mod:`connectomes.evals.minimal_pairs`): the whole sentence after the end-of-text token, summed
log-probability, sliding windows past the model's window, a tie counted as half a pair.

Headline: the accuracy per paradigm macro-averaged over the paradigms scored; beside it the pooled accuracy
and the macro accuracy per phenomenon (the mean over its paradigms). Item ids are ``paradigm:k`` with k the
0-based pair index in the file (lines 2k+1 and 2k+2). ``limit`` scores a seeded sample stratified by paradigm
(proportional allocation: a multiple of 23 gives every paradigm as many pairs).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ...core.errors import DataError
from ...core.integrity import sha256_file
from ..minimal_pairs import Pair, macro, score_task, unique_ids
from ..registry import Breakdown, Metric, TaskSpec, path_option
from .hellaswag import SKIP_MALFORMED


def paradigm_files(folder: Path) -> list[Path]:
    d = folder / "sentences" if (folder / "sentences").is_dir() else folder
    files = sorted(d.glob("*.txt"))
    if not files:
        raise DataError(f"no Zorro paradigm files (<phenomenon>-<paradigm>.txt) in {d}; put Zorro's sentences/ "
                        "folder there or pass the option zorro.path=DIR")
    return files


def phenomenon(paradigm: str) -> str:
    """The phenomenon a paradigm file belongs to: its name before the last hyphen."""
    return paradigm.rsplit("-", 1)[0]


def read_file(path: Path, skip_malformed: bool = False) -> tuple[list[Pair], list[str]]:
    """The pairs of one paradigm file (bad line, then good line) and the reasons of pairs skipped. An odd number
    of lines is damage to the file and always an error; an empty line is a malformed pair."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 2:
        raise DataError(f"{path} has {len(lines)} lines, not pairs of lines (bad, then good); fix or replace the file")
    name = path.stem
    pairs, skipped = [], []
    for k in range(len(lines) // 2):
        bad, good = lines[2 * k].strip(), lines[2 * k + 1].strip()
        if not bad or not good:
            why = f"{path}: pair {k} (lines {2 * k + 1}-{2 * k + 2}) has an empty sentence"
            if not skip_malformed:
                raise DataError(f"{why}; fix the file or pass the option skip_malformed=true")
            skipped.append(why)
            continue
        pairs.append(Pair(f"{name}:{k}", name, good, bad, (("phenomenon", phenomenon(name)),)))
    return pairs, skipped


@lru_cache(maxsize=4)
def _read(folder: str, skip: bool, stamp: tuple) -> tuple[tuple[Pair, ...], tuple[str, ...], tuple]:
    pairs, skipped, hashes = [], [], []
    for p in paradigm_files(Path(folder)):
        got, sk = read_file(p, skip)
        pairs += got
        skipped += sk
        hashes.append((p.name, sha256_file(p)))
    unique_ids(pairs, Path(folder))
    return tuple(pairs), tuple(skipped), tuple(hashes)


def load_pairs(folder: Path, skip_malformed: bool = False) -> tuple[list[Pair], list[str], dict[str, str]]:
    """Every pair of every paradigm file (files in name order, pairs in file order), the skipped pairs and each
    file's sha256; cached while no file of the folder changes."""
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in paradigm_files(Path(folder)))
    pairs, skipped, hashes = _read(str(folder), skip_malformed, stamp)
    return list(pairs), list(skipped), dict(hashes)


def run(lm, ctx) -> dict:
    pairs, scored, common = score_task(lm, ctx, SPEC, load_pairs, "Zorro")
    paradigms = scored["groups"]
    members: dict[str, dict[str, None]] = {}
    for p in pairs:
        paradigms[p.group].update(dict(p.info))
        members.setdefault(dict(p.info)["phenomenon"], {})[p.group] = None
    phenomena = {}
    for g in sorted(members):
        summary = macro({u: paradigms[u] for u in members[g]})
        summary["paradigms"] = summary.pop("groups")
        phenomena[g] = summary
    acc = dict(scored["macro"])
    acc["paradigms"] = acc.pop("groups")
    return {
        **common,
        "acc": acc, "acc_pooled": scored["pooled"], "paradigms": paradigms, "phenomena": phenomena,
        "correct": {"acc": scored["outcomes"]},
        "variant": scored["variant"] + "; headline: macro mean over paradigms",
    }


GROUP_DOC = ("the mean over its paradigms of the pairs right (a tie counts half); overall: the mean over all "
             "paradigms scored")

SPEC = TaskSpec(
    name="zorro", doc="Zorro minimal pairs (child-directed vocabulary): macro accuracy over 23 paradigms",
    run=run, data_dir="zorro",
    options=(path_option("zorro", "zorro", "the Zorro folder (sentences/<phenomenon>-<paradigm>.txt)"),
             SKIP_MALFORMED),
    metrics=(Metric("Zorro acc", ("acc",), chance=0.5, figures=("accuracy",),
                    tick="Zorro accuracy (macro over paradigms)"),),
    title="Zorro", sampled="Zorro pairs, a seeded sample stratified by paradigm (0 = all 46,000)",
    breakdowns=(Breakdown("phenomena", "phenomenon", doc=GROUP_DOC), Breakdown("paradigms", "paradigm", view="figure")),
)
