"""Tasks and arms declare themselves; one yes/no parser and one data-path resolver serve every reader."""

import subprocess
import sys

import pytest

from connectomes.evals import registry, tasks as task_modules
from connectomes.connectome.arms import choices
from connectomes.cli import main
from connectomes.core.errors import ConfigError
from connectomes.core.config import describe_fields
from connectomes.pipeline.config import load_config
from connectomes.core.errors import DataError, UserError
from connectomes.core.integrity import sealed
from connectomes.evals.context import EvalContext, data_path
from connectomes.evals.registry import tasks
from connectomes.core.inputs import parse_bool, resolve_data_path


def test_discovery_finds_exactly_the_task_modules():
    assert list(tasks()) == ["blimp", "blimp_supplement", "fmri", "hellaswag", "langloc", "lexical_decision", "mmlu",
                             "reading_times", "val_loss", "word_learning", "zorro"]
    assert {n: s.data_dir for n, s in tasks().items()} == {
        "blimp": "blimp", "blimp_supplement": "blimp_supplement", "fmri": "tuckute2024", "hellaswag": "hellaswag", "langloc": "langloc", "mmlu": "mmlu",
        "lexical_decision": ".",
        "reading_times": "naturalstories", "val_loss": None, "word_learning": ".", "zorro": "zorro"}
    assert [m.label for m in tasks()["val_loss"].metrics] == ["val loss (nats)"]
    assert tasks()["val_loss"].metrics[0].higher_is_better is False


# A sampled accuracy task (a 3-way choice): everything the toolkit needs to know about it is in its spec.
FAKE_TASK = '''
from connectomes.evals.registry import Metric, Option, TaskSpec, integer
from connectomes.evals.sampling import sample

def run(lm, ctx):
    ids, selection = sample([0] * 30, ctx.limit_for("fake"), ctx.sample_seed)
    correct = [i % 3 == 0 for i in ids]
    return {"acc": sum(correct) / len(ids), "item_ids": ids, "correct": {"acc": correct}, "selection": selection,
            "scale": ctx.option("fake.n")}

SPEC = TaskSpec(name="fake", doc="a task added as one file", run=run, data_dir="fakedata",
                options=(Option("fake.n", 3, "how many", integer(1)),),
                metrics=(Metric("fake acc", ("acc",), chance=1 / 3, figures=("accuracy",)),),
                title="Fake", sampled="fake items, a seeded uniform sample (0 = all 30)")
'''


@pytest.fixture
def fake_task(tmp_path, monkeypatch):
    """A new task module in a folder on the task package's search path: nothing else is edited."""
    (tmp_path / "fake.py").write_text(FAKE_TASK)
    monkeypatch.setattr(task_modules, "__path__", [*task_modules.__path__, str(tmp_path)])
    for cached in (tasks, registry.all_options):
        cached.cache_clear()
    yield
    sys.modules.pop("connectomes.evals.tasks.fake", None)
    for cached in (tasks, registry.all_options):
        cached.cache_clear()


def test_a_new_task_file_is_validated_helped_and_run(fake_task, capsys):
    assert load_config(None, ["eval.tasks=val_loss,fake"]).eval.tasks == ["val_loss", "fake"]
    assert "fake" in dict((k, t) for k, t, *_ in describe_fields(type(load_config(None).eval)))["tasks"]
    assert registry.get_task("fake").run(None, EvalContext(options={"fake.n": "5"}))["scale"] == 5
    with pytest.raises(UserError, match=r"option fake.n=0 must be at least 1"):
        registry.check_options({"fake.n": "0"})
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "fake.n" in capsys.readouterr().out


def test_a_new_sampled_accuracy_task_is_one_module(fake_task, tmp_path):
    """Its spec alone makes it a limit key, a sampled evaluation, a floor row with its chance, an
    item-paired comparison and a panel of the accuracy figure."""
    import json

    from connectomes.analysis import figures, results, tables
    from connectomes.evals.context import context_for
    from connectomes.pipeline.config import dump_config

    cfg = load_config(None, [f"runs_dir={tmp_path}", "name=r", "develop.arms=connectome,dense", "develop.seeds=0,1",
                             "develop.train.iters=10", "develop.train.warmup_iters=2", "develop.train.warmdown_iters=2",
                             "eval.tasks=fake", "eval.step_tasks=fake", "eval.limit.fake=12"])
    assert cfg.eval.limit == {"blimp": 0, "blimp_supplement": 0, "fake": 12, "hellaswag": 0, "lexical_decision": 0, "mmlu": 0,
                              "word_learning": 0, "zorro": 0}
    with pytest.raises(ConfigError, match=r"unknown config key 'eval.limit.fak'; valid keys in eval.limit: blimp, "
                                          r"blimp_supplement, fake, hellaswag, lexical_decision, mmlu, word_learning, zorro"):
        load_config(None, ["eval.limit.fak=3"])
    ctx = context_for(cfg)
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(cfg))
    for arm in ("connectome", "dense"):
        for seed in (0, 1):
            for step in (0, 10):
                res = registry.get_task("fake").run(None, ctx)
                p = run / "eval" / arm / f"seed_{seed}" / f"step_{step:06d}.json"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(json.dumps(sealed({"step": step, "tasks": {"fake": res}, **ctx.request()})))
    assert len(res["item_ids"]) == 12 and res["selection"]["n"] == 12
    rd = results.RunResults(run)
    assert tables.floor_table(rd)[2].startswith("| fake acc | 0.33 |")
    assert tables.headline_table(rd)[2].startswith("| fake acc | 12 of 30 items, seeded uniform sample, seed 0 |")
    tests = [r["test"] for r in tables.comparisons(rd, n_boot=100)]
    assert tests == ["paired bootstrap, 12 items × 2 seeds"]  # an accuracy with item outcomes: that test only
    accuracy = next(f for f in figures.report_figures(rd) if f.name == "nlp")
    assert accuracy.caption == "Fake per arm." and figures.draw_figure(accuracy, tmp_path).exists()


def test_unknown_task_option_lists_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown task option 'fmri.region'; valid options: .*fmri.roi"):
        registry.check_options({"fmri.region": "x"})


@pytest.mark.parametrize("override,message", [
    ("eval.step_tasks=val_loss,squad", "eval.step_tasks = 'squad' is not one of blimp, blimp_supplement, fmri, "
                                       "hellaswag, langloc, lexical_decision, mmlu, reading_times, "
                                       "val_loss, word_learning, zorro"),
    ("develop.arms=dense,bogus", "develop.arms = 'bogus' is not one of connectome, random, dense, mask_only, sign_flipped, "
     "rewired, rows_kept, cols_kept, inherit, inherit_dense, transplant:<embeddings|attention|mlp|lm_head|io|blocksA-B>, "
     "lowrank:<rank 1..4096>"),
    ("train.device=tpu", "train.device = 'tpu' is not one of auto, cpu, cuda"),
    ("evolve.reinit=zero", "evolve.reinit = 'zero' is not one of signed_constant, rewind"),
    ("model.preset=gpt5", "model.preset = 'gpt5' is not one of demo, replicate-cpu, gpt2-124m, gpt2-417m"),
])
def test_choice_errors_name_key_value_and_choices(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value) == message


@pytest.mark.parametrize("override,message", [
    ("train.iters=0", "train.iters = 0 must be >= 1"),
    ("develop.train.lr=0", "develop.train.lr = 0 must be > 0"),
    ("evolve.prune_fraction=1.5", "evolve.prune_fraction = 1.5 must be > 0 and < 1"),
    ("train.beta2=1", "train.beta2 = 1 must be >= 0 and < 1"),
    ("model.n_layer=0", "model.n_layer = 0 must be >= 1"),
    ("train.keep_steps=5,-1", "train.keep_steps = '-1' must be >= 0"),  # an item as typed
    ("eval.limit.mmlu=-2", "eval.limit.mmlu = -2 must be >= 0"),
])
def test_range_errors(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value) == message


@pytest.mark.parametrize("override,message", [
    ("train.iters=true", "train.iters must be an integer, got True"),
    ("train.lr=fast", "train.lr must be a number, got 'fast'"),
    ("train.compile=maybe", "train.compile must be true or false, got 'maybe'"),
    ("develop.seeds=0,x", "develop.seeds must be an integer, got 'x'"),
    ("train=5", "train must be a mapping of its fields, got 5"),
    ("evolve.train.lrr=1", "unknown config key 'evolve.train.lrr'; valid keys in evolve.train: iters, warmup_iters, "
                           "warmdown_iters, lr, min_lr, beta1, beta2, weight_decay, grad_clip, optimizer, batch_size, "
                           "micro_batch_size, eval_every, eval_tokens, save_every, keep_steps, keep_best, report_tokens, "
                           "patience, seed, device, dtype, compile, log_every, log, activation_checkpointing"),
])
def test_type_errors_name_key_and_value(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value) == message


def test_numbers_lists_and_bools_as_typed_on_the_command_line():
    cfg = load_config(None, ["data.large_tokens=1e6", "develop.seeds=3", "train.compile=yes", "name=123"])
    assert cfg.data.large_tokens == 1_000_000 and isinstance(cfg.data.large_tokens, int)
    assert cfg.develop.seeds == [3] and cfg.train.compile is True and cfg.name == "123"


def test_help_shows_choices_and_ranges():
    rows = {k: t for k, t, *_ in describe_fields(type(load_config(None)))}
    assert rows["train.optimizer"] == "adamw|muon"
    assert rows["evolve.prune_fraction"] == "float (> 0 and < 1)"
    assert rows["develop.arms"] == "list[" + "|".join(choices()) + "]"
    out = subprocess.run([sys.executable, "-m", "connectomes", "develop", "--help"], capture_output=True, text=True).stdout
    assert "adamw|muon" in out and "mask_only" in out


@pytest.mark.parametrize("raw,expected", [
    (True, True), (False, False), ("true", True), ("False", False), ("yes", True), ("no", False), ("on", True),
    ("off", False), ("1", True), ("0", False), (1, True), (0, False), (" YES ", True), ("", False),
])
def test_one_yes_no_parser(raw, expected):
    assert parse_bool(raw) is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", None])
def test_yes_no_parser_refuses(raw):
    with pytest.raises(ValueError, match="is not a yes/no value"):
        parse_bool(raw)


def test_config_and_task_options_accept_the_same_spellings():
    assert load_config(None, ["data.synthetic_fallback=off"]).data.synthetic_fallback is False
    assert EvalContext(options={"langloc.abs": "yes"}).option("langloc.abs") is True  # was refused before
    assert EvalContext(options={"skip_malformed": "on"}).option("skip_malformed") is True


def test_resolver(tmp_path):
    root = tmp_path / "data"
    (root / "corpus" / "novels").mkdir(parents=True)
    assert resolve_data_path("", root, "corpus", "data.path") == root / "corpus"
    assert resolve_data_path("corpus/novels", root, "corpus", "data.path") == root / "corpus" / "novels"
    assert resolve_data_path(str(tmp_path / "elsewhere"), root, "corpus", "data.path") == tmp_path / "elsewhere"
    assert resolve_data_path("rel/missing", None, "corpus", "data.path").as_posix() == "rel/missing"
    with pytest.raises(DataError, match=r"^no data folder for mmlu.path: set mmlu.path to the path, "
                                        r"or CONNECTOMES_DATA \(or --data-root\) to the data folder$"):
        resolve_data_path(None, None, "mmlu", "mmlu.path")


def test_tasks_resolve_their_folder_from_their_spec(tmp_path):
    spec = tasks()["reading_times"]
    assert data_path(EvalContext(data_root=tmp_path), spec) == tmp_path / "naturalstories"
    assert data_path(EvalContext(data_root=tmp_path, options={"reading_times.path": "/x/ns"}), spec).as_posix() == "/x/ns"
