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
