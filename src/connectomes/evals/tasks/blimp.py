"""BLiMP, the Benchmark of Linguistic Minimal Pairs (Warstadt et al. 2020; docs/method.md §6).

67 paradigms x 1,000 pairs (``<folder>/data/<paradigm>.jsonl``, or the paradigm files directly in the
folder), scored by :mod:`connectomes.evals.minimal_pairs`: the good sentence's summed log-probability
after the end-of-text token against the bad one's, a tie counted as half a pair.

Headline: the accuracy per paradigm, macro-averaged over the paradigms scored (the BLiMP paper's
overall score). Beside it: the pooled accuracy (equal to the macro one when every paradigm has as many
pairs), the macro accuracy per field (morphology, syntax, syntax_semantics, semantics; one paradigm
spells it ``syntax/semantics``, read as ``syntax_semantics``) and per phenomenon (``linguistics_term``, the
paper's 12: the two paradigms the files label ``s-selection`` count under ``argument_structure``, as in the
paper and ``models_summary.jsonl``), each the mean over its paradigms, and the tie count. Item ids are ``paradigm:pairID``.

``limit`` scores a seeded sample stratified by paradigm with proportional allocation
(:mod:`connectomes.evals.sampling`, seed ``ctx.sample_seed``): every paradigm is present when the limit
is at least the number of paradigms, and a multiple of 67 gives each the same number of pairs.

The report shows the published results of ``models_summary.jsonl`` (in the data folder) beside these:
per paradigm and phenomenon as published, per field the mean over that field's paradigms.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ...core.errors import DataError
from ...core.integrity import sha256_file
from ...core.readers import read_jsonl
from ..context import data_path
from ..minimal_pairs import Pair, macro, read_records, score_task, unique_ids
from ..registry import Breakdown, Metric, TaskSpec, path_option
from .hellaswag import SKIP_MALFORMED

FIELDS = {"syntax/semantics": "syntax_semantics"}  # spellings read as another field's name
# the paper's 12 phenomena: its argument structure holds the 2 paradigms the data files label s-selection
# (animate_subject_passive, animate_subject_trans), as models_summary.jsonl does
PHENOMENA = {"s-selection": "argument_structure"}
REQUIRED = ("UID", "pairID", "field", "linguistics_term")
SUMMARY = "models_summary.jsonl"
# the published models of models_summary.jsonl, by column
MODELS = {"ngram": "5-gram", "lstm": "LSTM", "txl": "Transformer-XL", "gpt2": "GPT-2 large"}
# Human agreement, overall: Warstadt et al. 2020, Table 3 (88.6%); models_summary.jsonl has no human column
HUMAN = ("human (paper)", 0.886)


GROUP_DOC = ("the mean over its paradigms of the pairs right (a tie counts half), the published models' likewise; "
             "overall: the mean over all paradigms scored")


def paradigm_files(folder: Path) -> list[Path]:
    d = folder / "data" if (folder / "data").is_dir() else folder
    files = sorted(p for p in d.glob("*.jsonl") if p.name != SUMMARY)
    if not files:
        raise DataError(f"no BLiMP paradigm files (<paradigm>.jsonl) in {d}; put BLiMP's data/ folder there "
                        "or pass the option blimp.path=DIR")
    return files


def _pair(rec: dict) -> Pair:
    field, term = str(rec["field"]), str(rec["linguistics_term"])
    return Pair(f"{rec['UID']}:{rec['pairID']}", str(rec["UID"]), rec["sentence_good"], rec["sentence_bad"],
                (("field", FIELDS.get(field, field)), ("phenomenon", PHENOMENA.get(term, term))))


@lru_cache(maxsize=4)
def _read(folder: str, skip: bool, stamp: tuple) -> tuple[tuple[Pair, ...], tuple[str, ...], tuple]:
    pairs, skipped, hashes = [], [], []
    for p in paradigm_files(Path(folder)):
        records, sk = read_records(p, REQUIRED, "BLiMP", skip)
        pairs += [_pair(rec) for _, rec in records]
        skipped += sk
        hashes.append((p.name, sha256_file(p)))
    unique_ids(pairs, Path(folder))
    return tuple(pairs), tuple(skipped), tuple(hashes)


def load_pairs(folder: Path, skip_malformed: bool = False) -> tuple[list[Pair], list[str], dict[str, str]]:
    """Every pair of every paradigm file (files in name order, pairs in file order), the skipped malformed
    records and each file's sha256; cached while no file of the folder changes."""
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in paradigm_files(Path(folder)))
    pairs, skipped, hashes = _read(str(folder), skip_malformed, stamp)
    return list(pairs), list(skipped), dict(hashes)


def _macro_by(pairs: list[Pair], paradigms: dict[str, dict], label: str) -> dict[str, dict]:
    """Macro accuracy over the paradigms of each field (or phenomenon)."""
    members: dict[str, dict[str, None]] = {}
    for p in pairs:
        members.setdefault(dict(p.info)[label], {})[p.group] = None
    return {g: _renamed(macro({u: paradigms[u] for u in members[g]})) for g in sorted(members)}


def _renamed(summary: dict) -> dict:
    """A macro summary with its group count named for what the groups are."""
    out = dict(summary)
    out["paradigms"] = out.pop("groups")
    return out


def run(lm, ctx) -> dict:
    pairs, scored, common = score_task(lm, ctx, SPEC, load_pairs, "BLiMP")
    paradigms = scored["groups"]
    for p in pairs:
        paradigms[p.group].update(dict(p.info))
    return {
        **common,
        "acc": _renamed(scored["macro"]),
        "acc_pooled": scored["pooled"],
        "paradigms": paradigms,
        "fields": _macro_by(pairs, paradigms, "field"),
        "phenomena": _macro_by(pairs, paradigms, "phenomenon"),
        "correct": {"acc": scored["outcomes"]},
        "variant": scored["variant"] + "; headline: macro mean over paradigms",
    }


def references(folder: Path) -> dict[str, dict]:
    """The published results in the data folder's models_summary.jsonl, as {source: {"overall": value,
    "paradigms": {...}, "phenomena": {...}, "fields": {...}}} (fields: the mean over each field's paradigms,
    by the paradigm files' own field labels), and the paper's human agreement (overall only). Empty when
    the file is absent."""
    lines = read_jsonl(Path(folder) / SUMMARY, remedy="fix or remove it (the report's BLiMP references)", missing=None)
    if lines is None:
        return {}
    out: dict[str, dict] = {label: {"paradigms": {}, "phenomena": {}} for label in MODELS.values()}
    for rec in lines.records:
        uid, term = rec.get("UID"), rec.get("linguistics_term")
        for col, label in MODELS.items():
            v = rec.get(col)
            if not isinstance(v, (int, float)):
                continue
            if uid != "overall":
                out[label]["paradigms"][uid] = float(v)
            elif term == "overall":
                out[label]["overall"] = float(v)
            else:
                out[label]["phenomena"][term] = float(v)
    field_of = {p.group: dict(p.info)["field"] for p in load_pairs(Path(folder))[0]}
    for ref in out.values():
        fields: dict[str, list[float]] = {}
        for uid, v in ref["paradigms"].items():
            if uid in field_of:
                fields.setdefault(field_of[uid], []).append(v)
        ref["fields"] = {f: sum(vs) / len(vs) for f, vs in sorted(fields.items())}
    return {**{k: v for k, v in out.items() if "overall" in v or v["paradigms"]}, HUMAN[0]: {"overall": HUMAN[1]}}


SPEC = TaskSpec(
    name="blimp", doc="BLiMP minimal pairs: good vs bad sentence log-probability, macro accuracy over 67 paradigms",
    run=run, data_dir="blimp",
    options=(path_option("blimp", "blimp", "the BLiMP folder (data/<paradigm>.jsonl, models_summary.jsonl)"),
             SKIP_MALFORMED),
    metrics=(Metric("BLiMP acc", ("acc",), chance=0.5, figures=("accuracy", "frontier"),
                    tick="BLiMP accuracy (macro over paradigms)"),),
    title="BLiMP", sampled="BLiMP pairs, a seeded sample stratified by paradigm (0 = all 67,000)", default=True,
    breakdowns=(Breakdown("fields", "field", doc=GROUP_DOC), Breakdown("phenomena", "phenomenon", doc=GROUP_DOC),
                Breakdown("paradigms", "paradigm", view="figure")),
    references=references, data_digest=lambda ctx: data_digest(ctx),
)


def data_digest(ctx) -> dict[str, str]:
    """Each paradigm file's sha256 as a result records it (``data_sha256``)."""
    return load_pairs(data_path(ctx, SPEC), ctx.option("skip_malformed"))[2]
