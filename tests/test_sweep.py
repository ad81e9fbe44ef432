"""Sweeps (issue 10): generation connectomes, nested data sizes, lineages, expansion, resume, plan/status."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from connectomes.training.checkpoint import load_masks, read_state
from connectomes.connectome.arms import label
from connectomes.cli import main
from connectomes.core.errors import ConfigError
from connectomes.pipeline.config import dump_config, load_config
from connectomes.connectome.codec import load_connectome
from connectomes.pipeline.evolve import generation_connectome
from connectomes.api import study as run_study
from connectomes.pipeline.study import open_run, stage_develop, status
from connectomes.pipeline.sweep import Unit, units

from test_study import fingerprint, same, tiny

SWEEP = ("develop.arms=connectome,random,dense", "develop.seeds=0", "develop.generations=0,1",
         "develop.sizes=1024,12000", "develop.train.keep_steps=0,5")


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    run_dir = run_study(tiny(tmp, "sw", *SWEEP), progress=False)
    return run_dir, fingerprint_all(run_dir)


def fingerprint_all(run_dir: Path) -> dict:
    """fingerprint() of test_study, extended to the sweep's nested unit folders."""
    fp = fingerprint(run_dir)
    for p in sorted(run_dir.glob("develop/**/steps/step_*/model.safetensors")):
        fp[str(p.relative_to(run_dir))] = load_file(str(p))
    for p in sorted(run_dir.glob("develop/**/metrics.jsonl")):
        fp[str(p.relative_to(run_dir))] = p.read_text()
    for p in sorted(run_dir.glob("eval/**/step_*.json")):
        fp[str(p.relative_to(run_dir))] = json.dumps(json.loads(p.read_text())["tasks"], sort_keys=True)
    return fp


def test_expansion_is_lineage_generation_size_arm_seed_with_dense_once_per_size(tmp_path):
    cfg = tiny(tmp_path, "x", "evolve.seeds=3,4", "develop.generations=0,1", "develop.sizes=9000,3000",
               "develop.arms=connectome,dense", "develop.seeds=0,1")
    expect = []
    for n in (3000, 9000):
        expect += [Unit("connectome", s, lin, g, n) for lin in (3, 4) for g in (0, None) for s in (0, 1)]
        expect += [Unit("dense", s, None, None, n) for s in (0, 1)]
    assert units(cfg) == expect
    assert units(tiny(tmp_path, "y")) == [Unit(a, s) for a in ("connectome", "random", "dense") for s in (0, 1)]


def test_sweep_axes_at_default_leave_the_resolved_config_unchanged(tmp_path):
    text = dump_config(tiny(tmp_path, "x"))
    assert "sizes" not in text and "generations:\n" not in text and "  seeds: []" not in text
    assert "sizes:\n  - 3000" in dump_config(tiny(tmp_path, "x", "develop.sizes=3000"))
    with pytest.raises(ConfigError, match="generation 2 does not exist"):
        tiny(tmp_path, "x", "develop.generations=2")
    with pytest.raises(ConfigError, match="exceed the small split"):
        tiny(tmp_path, "x", "develop.sizes=30001")


def test_generation_connectome_equals_the_saved_masks_and_the_last_equals_the_file(sweep_run):
    run_dir, _ = sweep_run
    run = open_run(tiny(run_dir.parent, "sw", *SWEEP), progress=False)
    for g in (0, 1):
        conn = generation_connectome(run.layout, g, run.gcfg)
        saved = load_masks(run.dir / f"evolve/gen_{g:02d}/pruned").masks
        assert conn.masks().keys() == saved.keys()
        assert all(torch.equal(conn.masks()[k], saved[k]) for k in saved)
        bits = json.loads((run.dir / f"evolve/gen_{g:02d}/connectome_bits.json").read_text())
        assert bits["alive"] == sum(int(m.sum()) for m in saved.values())
        assert bits["total"]["bound"] <= bits["total"]["ans"] and bits["total"]["ans_file"] > bits["total"]["ans"]
    assert generation_connectome(run.layout, 1, run.gcfg).equal(load_connectome(run.dir / "connectome.safetensors"))
    gen0 = load_file(str(run.dir / "develop/gen_00/tokens_1024/connectome/seed_0/steps/step_000000/model.safetensors"))
    rand0 = load_file(str(run.dir / "develop/gen_00/tokens_1024/random/seed_0/steps/step_000000/model.safetensors"))
    conn0 = generation_connectome(run.layout, 0, run.gcfg)
    for name, t in conn0.ternary.items():  # both arms start from generation 0's counts, not the last's
        assert torch.equal(gen0[name], t.float() * 0.02)
        assert int((rand0[name] != 0).sum()) == int((t != 0).sum())


def test_develop_cycles_only_its_subset_as_a_ring(sweep_run):
    """A step is 8 x 32 tokens (+1 target): a 1,024-token subset read as a ring is 4 steps a pass, so 10 steps end
    2 passes and 512 tokens in; 12,000 tokens hold 46 steps, so 10 steps stay in pass 0. Every arm of a seed
    trains on the same subset, and its state says how many tokens a pass trains (12,000: all of them)."""
    run_dir, _ = sweep_run
    for arm in ("connectome", "random", "dense"):
        for n, expect in ((1024, {"shard": 0, "pos": 512, "epoch": 2, "steps": 10}),
                          (12000, {"shard": 0, "pos": 2560, "epoch": 0, "steps": 10})):
            where = f"develop/tokens_{n}/{arm}/seed_0" if arm == "dense" else f"develop/gen_00/tokens_{n}/{arm}/seed_0"
            state = read_state(run_dir / where / "steps/step_000010")
            assert state["stream"] == expect and state["tokens_per_pass"] == n


def test_every_arm_of_a_seed_reads_that_seeds_subset(sweep_run, monkeypatch):
    """Arms stay paired by seed: the stream a unit trains on depends on its seed and size, not on its arm."""
    from connectomes.pipeline import develop

    run = open_run(load_config(sweep_run[0] / "config.yaml"))
    asked = []

    class Stop(Exception):
        pass

    def record(paths, gcfg, tcfg, max_tokens=None, subset_seed=0):
        asked.append((tuple(paths), max_tokens, subset_seed))
        raise Stop

    monkeypatch.setattr(develop, "make_stream", record)
    for arm in ("connectome", "random", "dense"):
        with pytest.raises(Stop):
            stage_develop(run, Unit(arm, 3, None, None if arm == "dense" else 0, 1024), progress=False)
    assert len(asked) == 3 and len(set(asked)) == 1 and asked[0][1:] == (1024, 3)


def test_killed_sweep_resumes_to_identical_results(tmp_path, sweep_run):
    cfg = tiny(tmp_path, "sw", *SWEEP)
    run_study(cfg, progress=False, stop=("develop", Unit("random", 0, None, 0, 12000), 6))
    assert not (tmp_path / "sw/develop/gen_00/tokens_12000/random/seed_0/done.json").exists()
    assert (tmp_path / "sw/develop/gen_00/tokens_1024/random/seed_0/done.json").exists()
    run_study(cfg, progress=False)
    assert same(fingerprint_all(tmp_path / "sw"), sweep_run[1])


def test_plan_and_status_rows_name_every_unit(sweep_run, capsys):
    run_dir, _ = sweep_run
    rows = dict(status(run_dir))
    names = ["connectome seed 0 [gen 0, 1,024 tokens]", "connectome seed 0 [1,024 tokens]",
             "random seed 0 [gen 0, 1,024 tokens]", "random seed 0 [1,024 tokens]", "dense seed 0 [1,024 tokens]"]
    names += [n.replace("1,024", "12,000") for n in names]
    assert [k for k in rows if k.startswith("develop ")] == [f"develop {n}" for n in names]
    assert all(rows[f"develop {n}"] == "done" and rows[f"eval {n}"] == "3/3 steps" for n in names)
    assert main(["study", "configs/demo.yaml", "evolve.seeds=0,1", "develop.generations=2,5", "develop.sizes=2000,4000",
                 "develop.arms=connectome,dense", "develop.seeds=0,1", "--plan"]) == 0
    out = capsys.readouterr().out
    assert out.count("evolve gen") == 12 and "lineage 1 evolve gen 5" in out
    assert out.count("develop connectome") == 2 * 2 * 2 * 2 and out.count("develop dense") == 2 * 2
    assert "develop connectome seed 1 [lineage 1, gen 2, 2,000 tokens]" in out


def test_report_has_the_sweep_section(sweep_run):
    md = (sweep_run[0] / "report/report.md").read_text()
    assert "## Sweep" in md and "![frontier](frontier.png)" in md and "![data efficiency](data_efficiency.png)" in md
    assert "**Headline:** a " in md and (sweep_run[0] / "report/frontier.png").exists()
    bits = json.loads((sweep_run[0] / "evolve/gen_01/connectome_bits.json").read_text())["total"]
    assert f"| — | 1 | {bits_density(sweep_run[0], 1):.4f} | {bits['bound']:,.0f} | {bits['ans_file']:,} |" in md


def test_sweep_headline_is_the_last_generation_at_the_largest_size(sweep_run):
    """A sweep has no plain arm folders: the headline table, comparisons and curves report one slice."""
    md = (sweep_run[0] / "report/report.md").read_text()
    assert "its slice generation 1's connectome, 12,000 developmental tokens" in md
    row = next(line for line in md.splitlines() if line.startswith("| val loss (nats) |"))
    for arm in ("connectome", "random", "dense"):
        res = json.loads((sweep_run[0] / f"eval/tokens_12000/{arm}/seed_0/step_000010.json").read_text())
        loss = res["tasks"]["val_loss"]["loss"]
        assert f"{loss:.4f} (one seed)" in row
        # every unit's row names its generation, the last one included (its folders carry no gen_ tag)
        generation = "—" if arm == "dense" else "1"
        assert f"| {label(arm)} | 0 | — | {generation} | 12,000 | " in md and f"{loss:.4f} |" in md


def test_every_sweep_axis_is_a_column_of_the_results_table(sweep_run):
    """connectomes.results takes its axis columns from core.axes: a new axis cannot be left out of the table."""
    import connectomes
    from connectomes.core import axes

    df = connectomes.results(sweep_run[0])
    names = [a.name for a in axes.AXES]
    assert list(df.columns[:len(names)]) == names and names[0] == "shape"
    conn = df[df.arm == "connectome"]
    # generation and tokens as each unit trained: both generations, both subset sizes; the lineage and shape
    # axes are not swept here
    assert set(conn.generation) == {0, 1} and set(df.tokens) == {1024, 12000} and df[df.arm == "dense"].generation.isna().all()
    assert df["shape"].isna().all() and df["lineage"].isna().all()
    one = conn[(conn.generation == 0) & (conn.tokens == 1024) & (conn.step == 10) & (conn.source == "eval")
              & (conn.task == "val_loss")]
    res = json.loads((sweep_run[0] / "eval/gen_00/tokens_1024/connectome/seed_0/step_000010.json").read_text())
    assert one.value.tolist() == [res["tasks"]["val_loss"]["loss"]]


def test_report_multiplier_rows_equal_sweep_math_on_the_units_losses(sweep_run):
    """Two dense sizes: no fitted curve, so the multiplier is the straight line in log tokens, on the final loss
    (units do not keep their best step) with the best logged one beside it as a dash that says why."""
    from connectomes.analysis.sweep_math import data_multiplier
    from connectomes.analysis.sweep_multiplier import cell, other_cell

    run_dir = sweep_run[0]
    sizes = [1024, 12000]
    folders = {"dense": "tokens_{n}/dense", "connectome": "tokens_{n}/connectome"}  # the last generation: no gen_ folder

    def final(arm, n):
        res = json.loads((run_dir / "eval" / folders[arm].format(n=n) / "seed_0/step_000010.json").read_text())
        return res["tasks"]["val_loss"]["loss"]

    def best(arm, n):
        recs = (run_dir / "develop" / folders[arm].format(n=n) / "seed_0/metrics.jsonl").read_text().splitlines()
        return min(r["val_loss"] for r in map(json.loads, recs) if "val_loss" in r)

    md = (run_dir / "report/report.md").read_text()
    by = {how: data_multiplier(sizes, [[how("dense", n)] for n in sizes], [[how("connectome", n)] for n in sizes])
          for how in (final, best)}
    assert by[final].fit is None and "no fitted curve: 2 dense sizes: a 3-parameter curve needs at least 3" in md
    assert "| tokens | multiplier [95% CI] | straight line | on the early-stopped val loss |" in md
    for f, b in zip(by[final].rows, by[best].rows):
        assert f"| {f.tokens:,} | {cell(f, f.ci, f.span)} | {cell(f.line, None, f.span)} | {other_cell(b, by[best])} |" in md
    assert "hierarchical bootstrap over 1 lineage × 1 seed and 1 dense seed" in md


def small_lengths(run) -> list[int]:
    from connectomes.data.shards import read_header

    return [read_header(p)[1] for p in run.split("small")]


def old_rule_identity(run, unit: Unit) -> str:
    """develop_upstream of a dense unit under the rule before seeded subsets: one chunk order (seed 0) for every
    seed, read in split order, and the seed's start moved off an earlier seed's as on the whole split."""
    from connectomes.core.config import config_hash
    from connectomes.data import stream

    parts = {"model": run.model_config(unit.shape).to_dict(), "data": run.data_hash, "arm": unit.arm, "seed": unit.seed,
             "init_constant": run.cfg.develop.init_constant}
    lengths = [unit.tokens] if unit.tokens is not None else small_lengths(run)
    if unit.tokens is not None:
        parts["tokens"] = unit.tokens
        parts["subset"] = {"chunk": 4096, "order_seed": 0}
    golden, steps = stream.seed_start(unit.seed, lengths, run.cfg.develop.train.batch_size * run.gcfg.block_size)
    if steps != golden:
        parts["start_steps"] = steps
    return config_hash(parts)


def test_a_units_identity_includes_how_its_subset_is_drawn(sweep_run, monkeypatch):
    """A folder developed on differently drawn subsets (e.g. prefixes, before chunks; one order for every seed,
    before seeded subsets) must not be resumed; a unit on the whole split keeps its identity."""
    from connectomes.data import stream
    from connectomes.pipeline.study import develop_upstream

    run = open_run(load_config(sweep_run[0] / "config.yaml"))
    sized = [Unit("dense", s, tokens=1024) for s in range(4)]
    plain = [Unit("dense", s) for s in range(4)]
    assert [develop_upstream(run, u) == old_rule_identity(run, u) for u in sized + plain] == [False] * 4 + [True] * 4
    before = develop_upstream(run, sized[0]), develop_upstream(run, plain[0])
    for name, value in (("SUBSET_CHUNK", 2048), ("SUBSET_SALT", 1)):
        with monkeypatch.context() as m:
            m.setattr(stream, name, value)
            assert develop_upstream(run, sized[0]) != before[0] and develop_upstream(run, plain[0]) == before[1]


def test_a_unit_moved_off_an_earlier_seeds_start_has_its_own_identity(sweep_run, monkeypatch):
    """A unit on the whole split whose data start the seed rule moved (data.stream.seed_start) must not resume a
    folder made before the rule; every other unit keeps its identity, so existing runs stay valid. Sized units
    have no seed start: their seed draws their subset."""
    from connectomes.data import stream
    from connectomes.pipeline.study import develop_upstream

    run = open_run(load_config(sweep_run[0] / "config.yaml"))
    # the first seed whose golden step of the small split (about 117 starts of 8 x 32 tokens) an earlier one holds
    moved = next(s for s in range(300) if len(set(stream.seed_start(s, small_lengths(run), 256))) == 2)
    at = [Unit("connectome", 1, generation=1, tokens=1024), Unit("connectome", 2, generation=1, tokens=1024),
          Unit("dense", 2, tokens=1024), Unit("dense", 2), Unit("dense", moved), Unit("connectome", moved, generation=1)]
    now = [develop_upstream(run, u) for u in at]
    monkeypatch.setattr(stream, "seed_start", lambda seed, lengths, step: (3, 3))  # as if no start ever moved
    before = [develop_upstream(run, u) for u in at]
    assert [a == b for a, b in zip(now, before)] == [True, True, True, True, False, False]


def bits_density(run_dir: Path, g: int) -> float:
    return json.loads((run_dir / f"evolve/gen_{g:02d}/generation.json").read_text())["total_density_after"]


def test_lineages_differ_and_develop_from_their_own_connectome(tmp_path):
    cfg = tiny(tmp_path, "lin", "evolve.seeds=0,1", "develop.arms=connectome", "develop.seeds=0", "evolve.generations=1")
    run_dir = run_study(cfg, progress=False)
    a = load_connectome(run_dir / "lineages/seed_0/connectome.safetensors")
    b = load_connectome(run_dir / "lineages/seed_1/connectome.safetensors")
    assert not a.equal(b) and not (run_dir / "connectome.safetensors").exists()
    start = load_file(str(run_dir / "develop/lineage_1/connectome/seed_0/steps/step_000000/model.safetensors"))
    assert all(torch.equal(start[k], t.float() * 0.02) for k, t in b.ternary.items())
    assert "| 0 | 30,000 | L0 " in (run_dir / "report/report.md").read_text()  # per-lineage means, generation 0


@pytest.mark.parametrize("codec", ["packed", "ans", "structured"])
def test_connectome_verb_writes_a_generation_in_each_codec(sweep_run, codec, capsys):
    run_dir, _ = sweep_run
    assert main(["connectome", str(run_dir), "--generation", "0", "--codec", codec]) == 0
    path = run_dir / "evolve/gen_00" / ("connectome.safetensors" if codec == "packed" else "connectome.cnx")
    run = open_run(tiny(run_dir.parent, "sw", *SWEEP), progress=False)
    assert load_connectome(path).equal(generation_connectome(run.layout, 0, run.gcfg))
    total = json.loads((run_dir / "evolve/gen_00/connectome_bits.json").read_text())["total"]
    if codec != "packed":  # the recorded file sizes are those of the files the codecs write
        assert 8 * path.stat().st_size == total[f"{codec}_file"]
    assert f"wrote {path}" in capsys.readouterr().out


def test_frontier_draws_an_accuracys_guessing_rate_and_not_the_losss():
    from connectomes.analysis import sweep_report
    from connectomes.evals.registry import Metric

    acc = Metric("BLiMP acc", ("accuracy",), chance=0.5, figures=("frontier",))
    rows = [{"unit": Unit(arm, seed, generation=g, tokens=100), "tokens": 100, "generation": g,
             "bits": {"structured_file": 1000.0 * (g + 1)} if arm != "dense" else None,
             "final": 2.0 + seed / 10, "BLiMP acc": 0.52}
            for arm in ("connectome", "random", "dense") for seed in (0, 1) for g in ((0, 1) if arm != "dense" else (None,))]
    loss_ax, acc_ax = sweep_report.fig_frontier(rows, [acc], "final").axes

    def flat(ax):  # horizontal lines across the panel: (y, label)
        return {(ln.get_ydata()[0], ln.get_label()) for ln in ax.get_lines() if len(set(ln.get_ydata())) == 1 and len(ln.get_ydata()) == 2}
    assert (0.5, "chance") in flat(acc_ax) and not any(lab == "chance" for _, lab in flat(loss_ax))
    assert [y for y, lab in flat(loss_ax) if lab == label("dense")] == [pytest.approx(2.05)]
    assert "chance" in [t.get_text() for t in acc_ax.get_legend().get_texts()]
