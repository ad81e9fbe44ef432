"""lm-evaluation-harness datasets read from the connectomes data folder, for the task YAMLs beside this file
(`lm_eval --include_path tasks --tasks connectomes_hellaswag_local ...`). Each reads the files `connectomes
eval` reads, with the toolkit's own readers, so the harness scores the very items we score: no jsonl to
convert first and no Hub download. The folder is --metadata '{"data_root": DIR}', else $CONNECTOMES_DATA
(or the toolkit's default data folder; `connectomes data fetch` fills it)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from connectomes.core.errors import DataError
from connectomes.core.inputs import default_data_root
from connectomes.evals.tasks.hellaswag import FILES, read_items
from connectomes.evals.tasks.mmlu import load_split


def _root(data_root: str | None) -> Path:
    root = Path(data_root) if data_root else default_data_root()
    if root is None or not root.is_dir():
        raise DataError("no data folder: pass --metadata '{\"data_root\": DIR}' or set CONNECTOMES_DATA "
                        "(`connectomes data fetch` downloads one)")
    return root


def hellaswag(data_root: str | None = None, **_) -> datasets.DatasetDict:
    """HellaSwag validation from hellaswag/ (hellaswag_val.jsonl or the text form): ctx, endings, label."""
    folder = _root(data_root) / "hellaswag"
    path = next((folder / n for n in FILES if (folder / n).is_file()), None)
    if path is None:
        raise DataError(f"no HellaSwag file in {folder} (looked for {', '.join(FILES)}); `connectomes data fetch hellaswag`")
    items, _ = read_items(path)
    rows = [{"ctx": it.ctx, "endings": list(it.endings), "label": it.label, "activity_label": it.activity_label}
            for it in items]
    return datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows)})


def mmlu(data_root: str | None = None, **_) -> datasets.DatasetDict:
    """MMLU test (and dev, when present) from mmlu/: subject, question, choices, answer (0-3)."""
    folder = _root(data_root) / "mmlu"

    def rows(split: str) -> datasets.Dataset:
        qs = load_split(folder, split).questions
        return datasets.Dataset.from_list([{"subject": q.subject, "question": q.question, "choices": list(q.choices),
                                            "answer": q.answer} for q in qs])

    out = {"test": rows("test")}
    if (folder / "dev").is_dir():
        out["dev"] = rows("dev")
    return datasets.DatasetDict(out)


def blimp(data_root: str | None = None, **_) -> datasets.DatasetDict:
    """Every BLiMP pair of blimp/data/*.jsonl, paradigm by paradigm: sentence_good, sentence_bad, UID, pairID."""
    folder = _root(data_root) / "blimp" / "data"
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise DataError(f"no BLiMP paradigm files in {folder}; `connectomes data fetch blimp`")
    keep = ("sentence_good", "sentence_bad", "UID", "pairID", "field", "linguistics_term")
    rows = [{k: str(rec.get(k, "")) for k in keep}
            for p in files for rec in map(json.loads, p.read_text(encoding="utf-8").splitlines()) if rec]
    return datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})


def zorro(data_root: str | None = None, **_) -> datasets.DatasetDict:
    """Every Zorro pair of zorro/sentences/*.txt (odd line bad, even line good), file by file: sentence_good,
    sentence_bad, id (paradigm:k), phenomenon; read by the toolkit's own reader."""
    from connectomes.evals.tasks.zorro import load_pairs

    pairs, _, _ = load_pairs(_root(data_root) / "zorro")
    rows = [{"sentence_good": p.good, "sentence_bad": p.bad, "id": p.item_id, "phenomenon": dict(p.info)["phenomenon"]}
            for p in pairs]
    return datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})


def lexical_decision(data_root: str | None = None, seed: int = 0, **_) -> datasets.DatasetDict:
    """The lexical-decision items of the data folder (connectomes.evals.pseudowords: the words of the BLiMP and Zorro
    sentences and their pseudo-words, seed 0), each read as " word " and " pseudo-word ": word, good, bad. No
    frequency bands (they come from a run's own corpus): every item, where `connectomes eval` may sample by band."""
    from connectomes.evals.pseudowords import items
    from connectomes.evals.tasks.lexical_decision import text

    made = items(_root(data_root), seed)
    rows = [{"word": w, "pseudoword": p, "good": text(w), "bad": text(p)} for w, p in made["pairs"]]
    return datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})
