"""The model card (README.md) of an exported Hugging Face folder.

It says what the model is (shape, tokenizer, source checkpoint), how it was trained (the run's
resolved config from the step's state.json), what its wiring is (density and sign balance of every
matrix, and the run's connectome file when there is one) and how it scored (the run's evaluation JSON
for this step, when it exists). Everything is read from files the toolkit wrote; nothing is recomputed.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..connectome.codec import inspect_connectome
from ..core.errors import UserError
from ..core.integrity import seal_state
from ..core.readers import read_json


def _run_dir(step_dir: Path) -> Path | None:
    """The run folder above a step folder: the nearest ancestor holding config.yaml."""
    for parent in step_dir.resolve().parents:
        if (parent / "config.yaml").is_file():
            return parent
    return None


def find_eval_results(src: Path) -> list[dict]:
    """The run's evaluation of this step: RUN/develop/ARM/seed_K/steps/step_N is evaluated into
    RUN/eval/ARM/seed_K/step_N.json (the study layout). Empty when there is none."""
    src = Path(src)
    run = _run_dir(src) if src.is_dir() else None
    if run is None:
        return []
    rel = src.resolve().relative_to(run).parts
    if len(rel) >= 4 and rel[0] == "develop" and rel[-2] == "steps":
        path = run.joinpath("eval", *rel[1:-2], rel[-1] + ".json")
        try:
            res = read_json(path, remedy="", missing=None)
        except UserError:
            return []  # a damaged result is not advertised on the card
        return [res] if res is not None and seal_state(res) != "changed" else []
    return []


def _metric_rows(task: str, res: dict) -> list[str]:
    """One table row per scalar metric: plain numbers, {"value", "stderr"}, {"r", "n"} and {"delta_r2", "n"} records
    (the revision of the task a result records is not a metric)."""
    rows = []
    for key, v in res.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)) and key not in ("items", "words", "skipped_malformed",
                                                       "truncated_items", "task_revision"):
            rows.append(f"| {task} | {key} | {v:.4f} | |")
        elif isinstance(v, dict) and isinstance(v.get("value"), (int, float)):
            se = v.get("stderr")
            rows.append(f"| {task} | {key} | {v['value']:.4f} | {'' if se is None else f'{se:.4f}'} |")
        elif isinstance(v, dict) and isinstance(v.get("r"), (int, float)):
            rows.append(f"| {task} | {key} (Pearson r, n={v.get('n')}) | {v['r']:.4f} | |")
        elif isinstance(v, dict) and isinstance(v.get("delta_r2"), (int, float)):
            rows.append(f"| {task} | {key} (ΔR², n={v.get('n')}) | {v['delta_r2']:.4f} | |")
    return rows


def _limit_text(limit) -> str:
    """'all items', 'limit 500' or 'limits hellaswag 500, mmlu 570' (a per-task limit is a mapping)."""
    if isinstance(limit, dict):
        parts = [f"{task} {n}" for task, n in limit.items() if n]
        return "limits " + ", ".join(parts) if parts else "all items"
    return f"limit {limit}" if limit else "all items"


def eval_section(results: list[dict]) -> list[str]:
    if not results:
        return ["No evaluation of this step was found next to it (run `connectomes eval` on the step folder)."]
    lines = []
    for res in results:
        lines += [f"Step {res.get('step')}, `{res.get('checkpoint')}`, {_limit_text(res.get('limit'))}:", "",
                  "| task | metric | value | stderr |", "|---|---|---|---|"]
        for task, r in (res.get("tasks") or {}).items():
            if isinstance(r, dict):
                lines += _metric_rows(task, r)
        lines.append("")
    return lines


def wiring_section(model, src: Path) -> list[str]:
    """Density (non-zero fraction) and positive fraction of each matrix, plus the run's connectome."""
    lines = ["| tensor | shape | density | positive fraction of non-zeros |", "|---|---|---|---|"]
    for name, p in model.named_parameters():
        nz = p != 0
        alive = int(nz.sum())
        pos = int((p > 0).sum())
        lines.append(f"| {name} | {'x'.join(map(str, p.shape))} | {alive / p.numel():.4f} | "
                     f"{pos / alive if alive else 0:.4f} |")
    run = _run_dir(src) if Path(src).is_dir() else None
    if run is not None and (run / "connectome.safetensors").is_file():
        lines += ["", "The run's connectome (`connectomes inspect`):", "", "```",
                  inspect_connectome(run / "connectome.safetensors"), "```"]
    return lines


def model_card(model, info: dict, config: dict, src: Path, results: list[dict], folder: Path | None = None) -> str:
    """The folder's README.md. Its snippets run as written (tests/test_readme_snippets.py): FOLDER is where the
    folder was written (its Hub id once uploaded), and AutoTokenizer gets trust_remote_code=True too, because it
    reads config.json, whose classes are the folder's own code (without it transformers stops at a y/N prompt)."""
    c = model.config
    front = {"library_name": "transformers", "pipeline_tag": "text-generation",
             "tags": ["connectomes", "custom_code"], "license": "mit"}
    run_config = info.get("config")
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {Path(src).name} (connectomes export)", "",
             f"A GPT of {c.n_layer} layers × width {c.n_embd} ({c.n_head} heads), context {c.block_size}, "
             f"vocabulary {c.vocab_size}, {model.num_params():,} weights; RoPE, weightless RMS norm, untied "
             f"lm_head, no biases. Tokenizer `{info['tokenizer']}`. Exported from `{src}` "
             f"(step {info.get('step')}, weights sha256 `{config['connectomes']['source_sha256'][:16]}…`).", "",
             "## Use", "", "```python",
             "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
             f"FOLDER = {str(folder or 'path/to/this/folder')!r}  # where this folder was written; its Hub id once uploaded",
             "model = AutoModelForCausalLM.from_pretrained(FOLDER, trust_remote_code=True)",
             "tokenizer = AutoTokenizer.from_pretrained(FOLDER, trust_remote_code=True)",
             "ids = tokenizer(\"The cat sat on the\", return_tensors=\"pt\").input_ids",
             "logits = model(ids).logits  # [1, tokens, vocabulary]", "```", "",
             "```bash", "lm_eval --model hf --model_args pretrained=FOLDER,trust_remote_code=True --tasks hellaswag",
             "connectomes eval FOLDER --tasks val_loss,hellaswag", "```", "",
             "## Evaluation", "", *eval_section(results), "",
             "## Wiring", "", *wiring_section(model, src), "",
             "## Training configuration", ""]
    if run_config:
        lines += ["```yaml", yaml.safe_dump(run_config, sort_keys=True).strip(), "```"]
    else:
        lines.append("The source is a bare weights file: no training configuration was recorded with it.")
    return "\n".join(lines) + "\n"
