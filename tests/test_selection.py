"""Early stopping that does not report on its own selection tokens, and patience (issue 28, items 3 and 5).

The best step is chosen on the selection slice (the first eval_tokens of the val split, the curves' val_loss)
and reported on the report slice after it (report_loss, the val_loss evaluation); patience stops a unit at an
evaluation step that is then its final step, exactly as an uninterrupted run would; a study without keep_best
writes what it always wrote."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from connectomes.core.config import to_dict
from connectomes.core.errors import ConfigError
from connectomes.data.config import DataConfig
from connectomes.data.prepare import open_prepared, prepare_data
from connectomes.data.shards import read_shard
from connectomes.data.stream import eval_windows
from connectomes.data.tokenizers import load_tokenizer
from connectomes.evals.context import EvalContext, val_loss_options
from connectomes.evals.scoring import ScoringLM
from connectomes.evals.tasks import val_loss
from connectomes.model.gpt import GPT, GPTConfig
from connectomes.training import loop
from connectomes.training.config import TrainConfig
from connectomes.training.validation import validation_loss

T = 32
TINY = GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=32, block_size=T)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    out = tmp_path_factory.mktemp("split") / "data"
    prepare_data(DataConfig(source="synthetic", tokenizer="bytes", val_tokens=1000, small_tokens=100, large_tokens=100,
                            shard_tokens=400), out, progress=False)
    return out


def _tokens(paths) -> np.ndarray:
    return np.concatenate([read_shard(p).astype(np.int64) for p in paths])


@pytest.mark.parametrize("budget,offset", [(5 * T, 5 * T), (3 * T + 5, 3 * T + 5), (4 * T, 450)])
def test_report_slice_is_the_tokens_after_the_selection_slice(split, budget, offset):
    """Whole windows from token ``offset`` on, across shard boundaries (shards of 400), predicting none of the
    tokens the selection slice predicts; the loss is the hand computation over exactly those windows."""
    paths = open_prepared(split).split_paths("val")
    toks = _tokens(paths)
    rep = [w for batch in eval_windows(paths, T, 3, budget, offset=offset) for w in zip(*batch)]
    sel = [w for batch in eval_windows(paths, T, 3, budget) for w in zip(*batch)]
    assert len(rep) == budget // T
    for i, (x, y) in enumerate(rep):
        start = offset + i * T
        assert torch.equal(x, torch.from_numpy(toks[start:start + T])) and torch.equal(y, torch.from_numpy(toks[start + 1:start + T + 1]))
    predicted = lambda ws, at: {at + i * T + j + 1 for i in range(len(ws)) for j in range(T)}  # noqa: E731
    assert predicted(sel, 0) == set(range(1, len(sel) * T + 1))
    assert not predicted(sel, 0) & predicted(rep, offset) and min(predicted(rep, offset)) == offset + 1
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=32, block_size=T))
    with torch.no_grad():
        want = sum(-F.log_softmax(model(x[None])[0].double(), -1)[torch.arange(T), y].sum().item() for x, y in rep)
    loss, n = validation_loss(model, paths, T, budget, "cpu", offset)
    assert n == len(rep) * T and loss == pytest.approx(want / n, rel=1e-5)


def test_the_val_loss_task_scores_the_report_slice_the_config_names(split):
    torch.manual_seed(0)
    model = GPT(TINY)
    paths = open_prepared(split).split_paths("val")
    cfg = TrainConfig(keep_best=True, eval_tokens=4 * T, report_tokens=3 * T)
    opts = val_loss_options(cfg)
    assert opts == {"val_loss.tokens": 3 * T, "val_loss.offset": 4 * T}
    res = val_loss.run(ScoringLM(model, load_tokenizer("bytes"), batch_size=5), EvalContext(prepared_dir=split, options=opts))
    assert (res["loss"], res["tokens"]) == validation_loss(model, paths, T, 3 * T, "cpu", 4 * T)
    assert res["offset"] == 4 * T and "after the first 128" in res["selection"]["selection"]
    assert val_loss_options(TrainConfig(keep_best=True, eval_tokens=4 * T)) == {"val_loss.tokens": 4 * T,
                                                                                "val_loss.offset": 4 * T}


# ---------------------------------------------------------------------------------------------
# the training loop on a scripted validation curve: selection, patience, resume, re-run

NAN = float("nan")
# selection slice: best at step 4 (3.0); steps 6 and 8 do not improve on it (an equal loss is no improvement),
# so patience 2 stops the run at step 8. The NaN at step 2 is never chosen.
SEL = {0: 5.0, 2: NAN, 4: 3.0, 6: 3.5, 8: 3.0, 10: 1.0, 12: 1.0}
# report slice: lowest at step 2, where the selection slice does not choose
REP = {0: 5.1, 2: 2.5, 4: 4.2, 6: 4.4, 8: 4.3, 10: 1.1, 12: 1.1}


def _scripted(monkeypatch):
    """The loop's validation replaced by the scripted curves (the selection slice at offset 0, the report slice
    after it), keyed by the step the loop last completed; returns (that step's holder, the on_step hook)."""
    at = {"step": 0}

    def fake(model, paths, block_size, tokens, device, offset=0):
        return (REP if offset else SEL)[at["step"]], tokens

    monkeypatch.setattr(loop, "validation_loss", fake)
    return at, lambda step, model: at.update(step=step)


def _cfg(**kw) -> TrainConfig:
    base = dict(iters=12, warmup_iters=2, warmdown_iters=4, batch_size=4, micro_batch_size=4, eval_every=2,
                eval_tokens=256, save_every=3, log_every=1, keep_best=True, patience=2, device="cpu")
    return TrainConfig(**{**base, **kw})


def _train(data, out, cfg, on_step, **kw):
    torch.manual_seed(0)
    model = GPT(TINY)
    return loop.train(model, cfg, loop.make_stream(data.split_paths("large"), TINY, cfg),
                      val_paths=data.split_paths("val"), out_dir=out, progress=False, on_step=on_step, **kw)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _folder(out: Path) -> dict:
    """Every file a training run leaves, by relative path (weights as tensors)."""
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file():
            rel = str(p.relative_to(out))
            files[rel] = load_file(str(p)) if p.suffix == ".safetensors" else p.read_bytes()
    return files


def _same(a: dict, b: dict, skip=("trainer.pt",)) -> bool:
    keys = [k for k in a if not k.endswith(skip)]
    return a.keys() == b.keys() and all(
        (a[k].keys() == b[k].keys() and all(torch.equal(a[k][t], b[k][t]) for t in a[k])) if isinstance(a[k], dict)
        else a[k] == b[k] for k in keys)


def test_best_step_is_chosen_on_the_selection_slice_and_patience_stops_at_the_right_step(synthetic_data, tmp_path,
                                                                                           monkeypatch):
    _, on_step = _scripted(monkeypatch)
    res = _train(synthetic_data, tmp_path / "r", _cfg(), on_step)
    assert res.finished and res.final_step == 8 and res.final_val_loss == 3.0
    evals = [(r["step"], r["val_loss"], r["report_loss"]) for r in _records(tmp_path / "r") if "val_loss" in r]
    assert [s for s, _, _ in evals] == [0, 2, 4, 6, 8] and _records(tmp_path / "r")[-1]["step"] == 8
    assert all(rep == REP[s] and (v == SEL[s] or math.isnan(v) and math.isnan(SEL[s])) for s, v, rep in evals)
    assert json.loads((tmp_path / "r/best.json").read_text()) == {"step": 4, "val_loss": 3.0}  # not 2, the report's best
    assert json.loads((tmp_path / "r/latest.json").read_text())["step"] == 8
    assert json.loads((tmp_path / "r/done.json").read_text())["step"] == 8
    assert sorted(p.name for p in (tmp_path / "r/steps").iterdir()) == ["step_000004", "step_000008"]
    # without patience the same curve runs to the cap, and the kept best step is the selection slice's lowest
    res = _train(synthetic_data, tmp_path / "cap", _cfg(patience=0), on_step)
    assert res.final_step == 12 and json.loads((tmp_path / "cap/best.json").read_text())["step"] == 10


@pytest.mark.parametrize("stop_at", [3, 6, 8])
def test_resume_across_a_patience_stop_is_bit_identical(synthetic_data, tmp_path, monkeypatch, stop_at):
    """Stopped at a save before the patience stop (3, 6) or at the stop itself (8), then resumed: the same files
    as an uninterrupted run (metrics.jsonl, best.json, latest.json, done.json, weights of the best and final step)."""
    at, on_step = _scripted(monkeypatch)
    _train(synthetic_data, tmp_path / "full", _cfg(), on_step)
    at["step"] = 0
    part = _train(synthetic_data, tmp_path / "part", _cfg(), on_step, stop_at=stop_at)
    assert part.finished == (stop_at == 8)
    at["step"] = stop_at
    resumed = _train(synthetic_data, tmp_path / "part", _cfg(), on_step)
    assert resumed.finished and resumed.final_step == 8 and resumed.steps_run == 8 - stop_at
    assert _same(_folder(tmp_path / "full"), _folder(tmp_path / "part"))


def test_rerunning_a_stopped_unit_does_nothing(synthetic_data, tmp_path, monkeypatch):
    at, on_step = _scripted(monkeypatch)
    _train(synthetic_data, tmp_path / "r", _cfg(), on_step)
    before = _folder(tmp_path / "r")
    at["step"] = 8
    again = _train(synthetic_data, tmp_path / "r", _cfg(), on_step)
    assert again.finished and again.final_step == 8 and again.steps_run == 0
    assert _same(before, _folder(tmp_path / "r"), skip=())  # not a step trained, not a line logged


# ---------------------------------------------------------------------------------------------
# without keep_best nothing changes


def test_without_keep_best_records_eval_results_and_hashes_are_as_before(synthetic_data, tmp_path, split):
    cfg = _cfg(keep_best=False, patience=0, iters=4)
    torch.manual_seed(0)
    model = GPT(TINY)
    loop.train(model, cfg, loop.make_stream(synthetic_data.split_paths("large"), TINY, cfg),
               val_paths=synthetic_data.split_paths("val"), out_dir=tmp_path / "r", progress=False)
    recs = _records(tmp_path / "r")
    assert [list(r) for r in recs] == [["step", "val_loss", "lr", "tokens", "content_sha256"]] + \
        [["step", "loss", "lr", "tokens", "grad_norm"] + ["val_loss"] * (r["step"] % 2 == 0) + ["content_sha256"]
         for r in recs[1:]]
    assert recs[-1]["val_loss"] == validation_loss(model, synthetic_data.split_paths("val"), T, 256, "cpu")[0]
    # the run identity of keep_best runs made before report_tokens and patience existed is unchanged
    assert {"report_tokens", "patience"}.isdisjoint(to_dict(_cfg(patience=0)))
    # the val_loss task asks for and writes what it always did
    assert val_loss_options(cfg) == {"val_loss.tokens": 256}
    res = val_loss.run(ScoringLM(model, load_tokenizer("bytes"), batch_size=4),
                       EvalContext(prepared_dir=split, options=val_loss_options(cfg)))
    assert set(res) == {"loss", "tokens", "variant", "shard_sha256", "selection"}
    assert res["variant"] == "first 256 predicted tokens of the val split, non-overlapping windows of 32"
    assert res["selection"]["selection"] == "the first of the val split, the training curves' windows"


# ---------------------------------------------------------------------------------------------
# config


def test_config_refuses_a_val_split_too_small_for_both_slices_and_patience_without_selection(tmp_path):
    from test_study import tiny

    with pytest.raises(ConfigError, match=r"data.val_tokens >= 4,097 \(both \+ 1\), but it is 4,000"):
        tiny(tmp_path, "c", "develop.train.keep_best=true", "data.val_tokens=4000")
    with pytest.raises(ConfigError, match=r"data.val_tokens >= 5,121"):
        tiny(tmp_path, "c", "develop.train.keep_best=true", "develop.train.report_tokens=3072", "data.val_tokens=5000")
    with pytest.raises(ConfigError, match=r"develop.train.patience = 2 needs develop.train.keep_best=true"):
        tiny(tmp_path, "c", "develop.train.patience=2")
    with pytest.raises(ConfigError, match=r"evolve.train.patience = 1: each generation is pruned"):
        tiny(tmp_path, "c", "evolve.train.patience=1")
    cfg = tiny(tmp_path, "c", "develop.train.keep_best=true", "data.val_tokens=4097", "develop.train.patience=2")
    assert cfg.develop.train.patience == 2


# ---------------------------------------------------------------------------------------------
# a study whose units keep their best step and stop on patience: evaluations, report, re-run, status

STUDY = ("develop.arms=connectome,dense", "develop.seeds=0", "develop.sizes=1024,4096", "develop.train.iters=20",
         "develop.train.lr=0.01", "develop.train.eval_every=2", "develop.train.keep_best=true",
         "develop.train.patience=1")


@pytest.fixture(scope="module")
def patient_run(tmp_path_factory):
    from connectomes.api import study
    from test_study import tiny

    return study(tiny(tmp_path_factory.mktemp("patience"), "p", *STUDY), progress=False)


def _unit_files(run_dir: Path):
    """(develop folder, eval folder) of every unit."""
    for dev in sorted(run_dir.glob("develop/**/metrics.jsonl")):
        rel = dev.parent.relative_to(run_dir / "develop")
        yield dev.parent, run_dir / "eval" / rel


def _patience_stop(curve: list[tuple[int, float]], patience: int, cap: int) -> int:
    """Where a curve of (step, selection loss) stops: the first evaluation ``patience`` evaluations after the
    lowest so far (strictly lower counts as better), else the cap. Written out apart from the loop's."""
    best, since = math.inf, 0
    for step, v in curve:
        if v < best:
            best, since = v, 0
        elif step > 0:
            since += 1
            if since >= patience:
                return step
    return cap


def test_every_evaluation_is_the_logged_report_loss_and_units_stop_where_patience_says(patient_run):
    stopped = 0
    for dev, ev in _unit_files(patient_run):
        recs = _records(dev)
        report = {r["step"]: r["report_loss"] for r in recs if "report_loss" in r}
        done = json.loads((dev / "done.json").read_text())["step"]
        assert done == _patience_stop([(r["step"], r["val_loss"]) for r in recs if "val_loss" in r], 1, 20)
        stopped += done < 20
        assert recs[-1]["step"] == done and (dev / f"steps/step_{done:06d}").is_dir()
        steps = sorted(int(p.stem[5:]) for p in ev.glob("step_*.json"))
        best = json.loads((dev / "best.json").read_text())["step"]
        assert {0, 5, best, done} <= set(steps) and max(steps) == done  # kept, best and final: none past the stop
        assert set(steps) - set(report) == {5}  # a kept step between evaluations has no logged loss to match
        for step in set(steps) & set(report):
            res = json.loads((ev / f"step_{step:06d}.json").read_text())["tasks"]["val_loss"]
            assert res["loss"] == report[step] and res["offset"] == 2048  # the report slice, number for number
    assert stopped  # at 4,096 tokens the curves flatten within the cap


def test_the_report_reads_the_kept_step_on_the_report_slice_and_flags_units_still_improving(patient_run):
    from connectomes.analysis.results import RunResults
    from connectomes.analysis.sweep_report import sweep_rows

    rd = RunResults(patient_run)
    rows = {r["unit"]: r for r in sweep_rows(rd)}
    assert len(rows) == len(rd.units) == 4
    from connectomes import results
    curves = results(patient_run).query("source == 'metrics.jsonl' and task == 'val_loss'")
    # the two slices' curves are two metrics: a filter on one never returns both losses of a step
    assert set(curves.metric) == {"val loss (nats)", "val loss (nats), report slice"}
    assert not curves.duplicated(["shape", "lineage", "generation", "tokens", "arm", "seed", "step", "metric"]).any()
    md = (patient_run / "report/report.md").read_text()
    flagged = []
    for u, r in rows.items():
        dev = rd.layout.unit(u.tag).develop(u.arm, u.seed).root
        recs = _records(dev)
        best = json.loads((dev / "best.json").read_text())["step"]
        done = json.loads((dev / "done.json").read_text())["step"]
        report = {x["step"]: x["report_loss"] for x in recs if "report_loss" in x}
        evals = [x["step"] for x in recs if "val_loss" in x]
        still = done == 20 and evals[-1] == best  # patience 1: the best selection loss at the last evaluation
        assert (r["best_step"], r["best"], r["final"], r["steps_trained"], r["cap"], r["still_improving"]) == \
            (best, report[best], report[done], done, 20, still)
        cells = f"| {r['final']:.4f} | {r['best']:.4f} | {best} | {done} / 20 | {'**yes**' if still else 'no'} |"
        assert cells in md
        flagged += [u.label] * still
    assert flagged  # at 1,024 tokens the curves still fall at the cap
    assert f"**Still improving at the cap:** {len(flagged)} of 4 units" in md and all(f in md for f in flagged)
    assert "chosen on the first 2,048 val tokens (the selection slice" in md and "reported on the next 2,048" in md


def test_rerunning_the_study_trains_nothing_and_status_names_the_stops(patient_run):
    from connectomes.api import study
    from connectomes.core.layout import RunLayout
    from connectomes.pipeline.config import run_config
    from connectomes.pipeline.study import status
    from connectomes.pipeline.sweep import units

    before = {p: p.read_bytes() for p in patient_run.glob("develop/**/*") if p.is_file()}
    cfg = run_config(patient_run / "config.yaml")
    study(cfg, progress=False)
    assert {p: p.read_bytes() for p in patient_run.glob("develop/**/*") if p.is_file()} == before
    rows = dict(status(patient_run))
    for u in units(cfg):
        done = json.loads(RunLayout(patient_run).unit(u.tag).develop(u.arm, u.seed).done.read_text())["step"]
        assert rows[f"develop {u.label}"] == ("done" if done == 20 else f"done: stopped by patience at step {done}/20")
        n = rows[f"eval {u.label}"].split()[0].split("/")
        assert n[0] == n[1]  # every step the unit evaluates, none past its stop
