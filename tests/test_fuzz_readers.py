"""Every reader of the package, fed damaged input: random bytes, truncations, flipped bytes and type-swapped
JSON / YAML / safetensors headers (seeded, a few hundred cases, seconds). Each must return or raise a
UserError (one line for the CLI); any other exception is a traceback a user would meet.

A longer search: FUZZ_CASES=200 FUZZ_SEED=7 pytest tests/test_fuzz_readers.py (cases per reader, and the seed)."""

import copy
import json
import os
import random
import shutil
import struct
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from connectomes.core.errors import UserError

SEED = int(os.environ.get("FUZZ_SEED", 0))
CASES_PER_TARGET = int(os.environ.get("FUZZ_CASES", 12))
ODD_VALUES = [None, True, False, -1, 0, 2 ** 70, 1e308, -1e308, float("nan"), "", "x", "../../etc", [], {}, [1, "a"],
              {"a": None}, [[[]]], {"sha256": 5}, 3.5]
STEP = Path("develop/connectome/seed_0/steps/step_000006")


# -- mutations --------------------------------------------------------------------------------------

def _swap(obj, rng: random.Random):
    """``obj`` with one randomly chosen node (the whole document included) replaced by a value of another type."""
    nodes = [((), obj)]
    for path, node in nodes:
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        nodes += [((*path, k), v) for k, v in children]
    path, _ = rng.choice(nodes)
    value = copy.deepcopy(rng.choice(ODD_VALUES))  # a shared list could end up inside itself
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return obj


def _mutate_json(raw: bytes, rng: random.Random) -> bytes:
    obj = json.loads(raw)
    for _ in range(rng.randint(1, 3)):
        obj = _swap(obj, rng)
    return json.dumps(obj).encode()


def _mutate_jsonl(raw: bytes, rng: random.Random) -> bytes:
    lines = raw.split(b"\n")
    i = rng.randrange(max(1, len(lines) - 1))
    lines[i] = _mutate_json(lines[i], rng) if lines[i].strip() else b"[1]"
    return b"\n".join(lines)


def _mutate_yaml(raw: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.3:  # a key given twice
        lines = raw.decode().splitlines()
        return "\n".join(lines + [rng.choice([ln for ln in lines if ":" in ln])]).encode()
    return yaml.safe_dump(_swap(yaml.safe_load(raw), rng)).encode()


def _mutate_safetensors(raw: bytes, rng: random.Random) -> bytes:
    """A forged header: the tensor table with a type-swapped entry, length prefix kept consistent."""
    (n,) = struct.unpack("<Q", raw[:8])
    header = _mutate_json(raw[8:8 + n], rng)
    return struct.pack("<Q", len(header)) + header + raw[8 + n:]


STRUCTURED = {"json": _mutate_json, "jsonl": _mutate_jsonl, "yaml": _mutate_yaml, "safetensors": _mutate_safetensors}


def mutations(raw: bytes, kind: str, rng: random.Random):
    """(label, damaged bytes): random bytes, a truncation, flipped bytes, and type swaps for structured formats."""
    for i in range(CASES_PER_TARGET):
        how = ["random", "truncate", "flip"][i % 3] if kind not in STRUCTURED or i % 2 else "swap"
        if how == "random":
            yield how, rng.randbytes(rng.randint(0, 300))
        elif how == "truncate":
            yield how, raw[:rng.randint(0, max(0, len(raw) - 1))]
        elif how == "flip":
            data = bytearray(raw)
            for _ in range(rng.randint(1, 4)):
                if data:
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            yield how, bytes(data)
        else:
            try:
                yield how, STRUCTURED[kind](raw, rng)
            except (ValueError, yaml.YAMLError, UnicodeDecodeError, struct.error):
                yield "random", rng.randbytes(50)


# -- the readers --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory, finished_study, synthetic_eval_root):
    """A copy of a finished study, plus Hugging Face folders (whole, sharded, the authors' .bin), a bare
    weights file, a .cnx connectome, a GPU benchmark JSON and the evaluation data files."""
    from connectomes.connectome.codec import load_connectome, save_connectome
    from connectomes.io.export import export_hf

    root = tmp_path_factory.mktemp("fuzz")
    run = root / "r"
    shutil.copytree(finished_study, run)
    hf = export_hf(run / STEP, root / "hf")
    sharded = root / "sharded"
    shutil.copytree(hf, sharded)
    from safetensors.torch import load_file

    sd = load_file(str(sharded / "model.safetensors"))
    (sharded / "model.safetensors").unlink()
    names = sorted(sd)
    halves = {"a.safetensors": names[::2], "b.safetensors": names[1::2]}
    for shard, keys in halves.items():
        save_file({k: sd[k] for k in keys}, str(sharded / shard))
    (sharded / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: s for s, keys in halves.items() for k in keys}}))
    authors = root / "authors"
    shutil.copytree(hf, authors)
    (authors / "model.safetensors").unlink()
    torch.save(sd, authors / "pytorch_model.bin")
    save_connectome(load_connectome(run / "connectome.safetensors"), root / "c.cnx", codec="ans")
    shutil.copy(run / STEP / "model.safetensors", root / "bare.safetensors")
    torch.save(sd, root / "bare.pt")
    (root / "gpu.json").write_text(json.dumps({"train": [{"model": "demo", "masked": True, "compile": False, "mfu": 0.3}]}))
    shutil.copytree(synthetic_eval_root, root / "eval_data")
    return root


def _pair(i: int, uid: str) -> dict:
    return {"sentence_good": f"The cat {i} sleeps.", "sentence_bad": f"The cat {i} sleep.", "UID": uid, "pairID": str(i),
            "field": "morphology", "linguistics_term": "subject_verb_agreement"}


# files the finished study does not hold, written before they are damaged (issue 34's new formats)
PRISTINE = {
    "r/develop/dense/seed_0/best.json": json.dumps({"step": 6, "val_loss": 3.25}),
    "r/.claims/unit-dense-seed_0.lock": json.dumps({"pid": 1, "host": "h", "command": "study worker 0"}),
    "r/report/anatomy/anatomy.json": json.dumps({"format": "connectome-anatomy/2", "generation": 1, "lineages": {
        "run": {"sha256": "0" * 64, "tensors": {"lm_head.weight": {"nnz": 3}}}}, "pairs": [], "figures": []}),
    "blimp/data/agreement_1.jsonl": "".join(json.dumps(_pair(i, "agreement_1")) + "\n" for i in range(4)),
    "blimp/data/agreement_2.jsonl": "".join(json.dumps(_pair(i, "agreement_2")) + "\n" for i in range(3)),
    "supplement/hypernym.jsonl": "".join(json.dumps(_pair(i, "hypernym")) + "\n" for i in range(4)),
}


def _claim(path: Path) -> None:
    from connectomes.core.lock import claim

    with claim(path, command="fuzz") as got:
        assert got


def _anatomy(w: Path) -> None:
    from connectomes.analysis.anatomy.target import AnatomyTarget, current_anatomy

    current_anatomy(AnatomyTarget.open(w / "r"), w / "r" / "report" / "anatomy")


def _report_text(run: Path) -> None:
    """The report's text sections (every number formatted), without drawing figures."""
    from connectomes.analysis import report
    from connectomes.analysis.results import RunResults, results_table

    rd = RunResults(run)
    for section in (report.intro_lines, report.finding_lines, report.evolution_lines, report.headline_lines,
                    report.stats_section, report.left_out_lines):
        section(rd)
    results_table(run)


def _targets():
    """(file under the fuzz world, its kind, a call that reads it through the package)."""
    from connectomes.core import readers
    from connectomes.core.integrity import read_manifest
    from connectomes.core.layout import RunLayout, TrainLayout
    from connectomes.core.lock import read_holder
    from connectomes.connectome.codec import inspect_connectome, load_connectome
    from connectomes.data.prepare import open_prepared
    from connectomes.data.shards import check_vocab
    from connectomes.evals import alignment_data
    from connectomes.evals.context import EvalContext
    from connectomes.evals.runner import _previous
    from connectomes.evals.tasks import blimp, blimp_supplement
    from connectomes.io.load import load_model, verified_weights_sha256
    from connectomes.pipeline.config import load_config, run_config
    from connectomes.pipeline.evolve import completed_generations, generation_bits
    from connectomes.pipeline.plan import mfu_from_benchmark
    from connectomes.training import checkpoint as ckpt
    from connectomes.model.gpt import GPTConfig

    def step(w):
        return w / "r" / STEP

    def prepared(w):
        d = open_prepared(w / "r" / "data")
        d.split_paths("val")
        d.documents("val")

    def model(folder):
        return lambda w: (verified_weights_sha256(w / folder), load_model(w / folder, verify=False))

    tiny = GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=64, block_size=32)
    return [
        ("r/eval/dense/seed_0/step_000006.json", "json", lambda w: readers.read_json(w / "r/eval/dense/seed_0/step_000006.json", remedy="x")),
        ("r/eval/dense/seed_0/step_000006.json", "json", lambda w: _previous(w / "r/eval/dense/seed_0/step_000006.json", "0" * 64, EvalContext())),
        ("r/eval/dense/seed_0/step_000006.json", "json", lambda w: _report_text(w / "r")),
        ("r/develop/dense/seed_0/metrics.jsonl", "jsonl", lambda w: readers.read_jsonl(w / "r/develop/dense/seed_0/metrics.jsonl", remedy="x")),
        ("r/develop/dense/seed_0/metrics.jsonl", "jsonl", lambda w: _report_text(w / "r")),
        ("r/config.yaml", "yaml", lambda w: run_config(w / "r/config.yaml")),
        ("r/config.yaml", "yaml", lambda w: _report_text(w / "r")),
        ("r/config.yaml", "yaml", lambda w: load_config(w / "r/config.yaml", ["develop.train.lr=1e-3"])),
        ("r/data/meta.json", "json", prepared),
        ("r/data/val_documents.tsv", "tsv", prepared),
        ("r/data/val_000000.bin", "bin", lambda w: check_vocab(w / "r/data/val_000000.bin", 256)),
        ("r/evolve/gen_00/generation.json", "json", lambda w: completed_generations(RunLayout(w / "r"), "x")),
        ("r/evolve/gen_00/generation.json", "json", lambda w: _report_text(w / "r")),
        ("r/evolve/gen_00/connectome_bits.json", "json", lambda w: generation_bits(RunLayout(w / "r"), 0, tiny)),
        ("r/develop/dense/seed_0/latest.json", "json", lambda w: ckpt.saved_step(TrainLayout(w / "r/develop/dense/seed_0"))),
        (str(STEP / "manifest.json"), "json", lambda w: (read_manifest(step(w), remedy="x"), ckpt.verify_step(step(w), resume=True))),
        (str(STEP / "state.json"), "json", lambda w: load_model(step(w), verify=False)),
        (str(STEP / "model.safetensors"), "safetensors", lambda w: load_model(step(w), verify=False)),
        (str(STEP / "masks.safetensors"), "safetensors", lambda w: ckpt.load_masks(step(w))),
        (str(STEP / "trainer.pt"), "pt", lambda w: ckpt.load_trainer(step(w))),
        ("r/connectome.safetensors", "safetensors", lambda w: load_connectome(w / "r/connectome.safetensors")),
        ("c.cnx", "cnx", lambda w: inspect_connectome(w / "c.cnx")),
        ("r/.lock", "json", lambda w: read_holder(w / "r")),
        ("hf/config.json", "json", model("hf")),
        ("hf/model.safetensors", "safetensors", model("hf")),
        ("sharded/model.safetensors.index.json", "json", model("sharded")),
        ("sharded/a.safetensors", "safetensors", model("sharded")),
        ("authors/pytorch_model.bin", "pt", model("authors")),
        ("bare.safetensors", "safetensors", model("bare.safetensors")),
        ("bare.pt", "pt", model("bare.pt")),
        ("gpu.json", "json", lambda w: mfu_from_benchmark(w / "gpu.json", "demo", False)),
        ("eval_data/tuckute2024/bold_response_LH.csv", "csv", lambda w: alignment_data.load_tuckute2024(w / "eval_data/tuckute2024/bold_response_LH.csv")),
        ("eval_data/langloc/langloc_fmri_run1_stim_set1.csv", "csv", lambda w: alignment_data.load_langloc(w / "eval_data/langloc")),
        ("r/develop/dense/seed_0/best.json", "json", lambda w: ckpt.best_step(TrainLayout(w / "r/develop/dense/seed_0"))),
        ("r/develop/dense/seed_0/best.json", "json", lambda w: _report_text(w / "r")),
        ("r/.claims/unit-dense-seed_0.lock", "json", lambda w: (read_holder(w / "r/.claims", "unit-dense-seed_0.lock"),
                                                                _claim(w / "r/.claims/unit-dense-seed_0.lock"))),
        ("r/report/anatomy/anatomy.json", "json", _anatomy),
        ("blimp/data/agreement_1.jsonl", "jsonl", lambda w: blimp.load_pairs(w / "blimp")),
        ("blimp/data/agreement_1.jsonl", "jsonl", lambda w: blimp.load_pairs(w / "blimp", skip_malformed=True)),
        ("supplement/hypernym.jsonl", "jsonl", lambda w: blimp_supplement.load_pairs(w / "supplement")),
        ("eval_data/naturalstories/processed_wordinfo.tsv", "csv",
         lambda w: alignment_data.load_natural_stories(w / "eval_data/naturalstories")),
    ]


def test_no_reader_lets_damage_through_as_a_traceback(world):
    rng = random.Random(SEED)
    failures, cases = [], 0
    for rel, kind, read in _targets():
        path = world / rel
        for other, text in PRISTINE.items():  # every new-format file, so that a reader finds its siblings
            if not (world / other).exists():
                (world / other).parent.mkdir(parents=True, exist_ok=True)
                (world / other).write_text(text)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"pid": 1, "command": "study"}))  # a holder's text, for the lock reader
        pristine = path.read_bytes()
        for how, damaged in mutations(pristine, kind, rng):
            path.write_bytes(damaged)
            cases += 1
            try:
                read(world)
            except UserError as e:
                assert "\n" not in str(e), (rel, how, str(e))
            except Exception as e:  # noqa: BLE001 - the point: nothing but a UserError may escape
                failures.append(f"{rel} ({how}): {type(e).__name__}: {str(e)[:200]}")
            finally:
                path.write_bytes(pristine)
    assert cases >= 300 or CASES_PER_TARGET < 12
    assert not failures, "\n".join(failures)
