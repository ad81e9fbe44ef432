"""Command line: every verb is a thin call into the modules that do the work.

User mistakes (UserError) print one sentence and exit with status 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path

import torch

from .api import study
from .cli_setup import add_setup_verbs
from .connectome import arms
from .connectome.codec import inspect_connectome, save_connectome
from .core.config import check_seed, describe_fields, from_dict
from .core.entry import guarded
from .core.errors import UserError
from .core.layout import generation_name
from .core.lock import run_lock
from .core.runtime import apply_threads, choose_threads
from .evals.config import EvalConfig
from .evals.context import build_context, step_val_loss_options
from .evals.registry import check_options, logged_metric, parse_tasks, sampled_tasks, tasks
from .evals.runner import evaluate_checkpoint, evaluate_steps, summary_lines
from .io.export import export_hf
from .model.gpt import GPT
from .pipeline.config import VERB_SECTIONS, Config, load_config
from .pipeline.evolve import generation_bits, generation_connectome, generation_summaries
from .pipeline.launch import use_threads
from .pipeline import corpora
from .pipeline.plan import parallel_wall, plan_on
from .pipeline.run import existing_run, open_run
from .pipeline.study import stage_develop, stage_evolve, status
from .pipeline.sweep import Unit, units
from .pipeline.workers import PARALLEL_STUDY, joined, open_worker_run, run_claimed_item, work
from .training.loop import make_stream, train

# what a seed varies, arm by arm (docs/method.md §4)
SEED_HELP = ("the arm's seed (default 0), in [0, 2**63). It varies: dense, its initialisation and its data; random, "
             "mask_only, rewired, rows_kept, cols_kept and transplant:*, their draw and the data; connectome, "
             "sign_flipped, lowrank:*, inherit and inherit_dense, the data only. The data: with "
             "develop.sizes, the seed's own subset of the small split and its order; on the whole split, where the "
             "stream starts")
CONFIG_HELP = ("YAML config file, or a packaged preset's name (demo, replicate-cpu, ...: `connectomes config list`); "
               "keys not given take the defaults listed below")


# an override each config verb reads, for its --help
OVERRIDE_EXAMPLE = {"prepare": "data.large_tokens=1e6", "train": "train.lr=1e-3", "evolve": "evolve.train.lr=1e-3",
                    "develop": "develop.train.lr=1e-3", "study": "develop.train.lr=1e-3"}


def _options_epilog(verb: str) -> str:
    reads = ("name", "runs_dir", *VERB_SECTIONS[verb])
    lines = [f"config keys `{verb}` reads (set in the YAML file or as KEY=VALUE overrides, e.g. {OVERRIDE_EXAMPLE[verb]}; "
             "an override of any other section is refused: it would change nothing):"]
    for key, tname, default, help_ in describe_fields(Config):
        if key.split(".", 1)[0] in reads:
            lines.append(f"  {key:<30} {tname:<24} default {default:<16} {help_}")
    return "\n".join(lines)


def _tasks_epilog() -> str:
    lines = ["tasks (data folder under --data-root) and their --option keys:"]
    for spec in tasks().values():
        lines.append(f"  {spec.name:<16} ({spec.data_dir or 'the prepared val split'}) {spec.doc}")
        if spec.sampled:
            lines.append(f"    {'--limit ' + spec.name + '=N':<24} {spec.sampled}")
        lines += [f"    {o.key:<24} default {o.default!r:<18} {o.doc}" for o in spec.options]
    return "\n".join(lines)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help=CONFIG_HELP)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides of the sections this verb reads, e.g. develop.train.lr=1e-3 name=myrun")


def _load(args) -> Config:
    cfg = load_config(getattr(args, "config", None), args.overrides, verb=args.verb)
    use_threads(cfg)
    return cfg


def cmd_prepare(args) -> int:
    cfg = _load(args)
    with run_lock(cfg.run_dir, command="prepare"):
        run = open_run(cfg)
    meta = run.data.meta
    splits = ", ".join(f"{k} {v['tokens']:,}" for k, v in meta["splits"].items())
    print(f"prepared {run.info['data_dir']}: {meta['tokenizer']} tokenizer, tokens: {splits}")
    return 0


def cmd_train(args) -> int:
    cfg = _load(args)
    with run_lock(cfg.run_dir, command="train"):
        run = open_run(cfg, devices=(cfg.train.device,))
        torch.manual_seed(cfg.train.seed)
        model = GPT(run.model_config())
        stream = make_stream(run.split(args.split), run.model_config(), cfg.train)
        res = train(model, cfg.train, stream, val_paths=run.split("val"), out_dir=run.layout.train.root,
                    run_info=dict(run.info, stage="train", split=args.split))
    print(f"trained {res.final_step} steps on {args.split}: val loss {res.final_val_loss:.4f}, "
          f"{res.tokens_per_s:,.0f} tokens/s, {res.wall_s:.0f} s -> {res.out_dir}")
    return 0


def cmd_evolve(args) -> int:
    cfg = _load(args)
    with run_lock(cfg.run_dir, command="evolve"):
        run = open_run(cfg)
        path = stage_evolve(run)
    for g in generation_summaries(run.layout):
        print(f"{generation_name(g['generation'], cfg.evolve.generations)}: val loss {g['val_loss']:.4f}, "
              f"density after pruning {g['total_density_after']:.4f}")
    print(f"connectome: {path}")
    return 0


def cmd_develop(args) -> int:
    cfg = _load(args)
    with run_lock(cfg.run_dir, command="develop"):
        run = open_run(cfg)
        # every unit of the config's sweep axes (one in a plain study) for this arm and seed
        for unit in [u for u in units(run.cfg) if (u.arm, u.seed) == (args.arm, args.seed)] or [_plain_unit(args)]:
            res = stage_develop(run, unit)
            print(f"develop {unit.label}: {res.final_step} steps, val loss {res.final_val_loss:.4f} -> {res.out_dir}")
    return 0


def _plain_unit(args):
    """An arm or seed the config does not list is still developed, as a plain study's unit."""
    return Unit(args.arm, args.seed)


def cmd_eval(args) -> int:
    names = parse_tasks(args.tasks)
    if not names:
        raise UserError("--tasks names no task; give one or more, e.g. --tasks val_loss (listed in `connectomes eval --help`)")
    options = {}
    for o in args.option or []:
        if "=" not in o:
            raise UserError(f"--option {o!r} must look like task.key=value; `connectomes eval --help` lists the keys")
        k, v = o.split("=", 1)
        options[k] = v
    check_options(options)
    with contextlib.ExitStack() as held:
        for folder, shared in _eval_locks(args):
            held.enter_context(run_lock(folder, command="eval", shared=shared))
        return _run_eval(args, names, options)


def _eval_locks(args) -> list[tuple[Path, bool]]:
    """(folder, shared) for the folders an evaluation reads or writes: a run folder holding the checkpoints
    is held as a reader (no study may write it meanwhile; readers may share it, and it may be on read-only
    storage) unless the results go into it; the run folder or output folder the results go into is held alone."""
    locks = {run: True for run in {_run_of(Path(c)) for c in args.checkpoints} - {None}}
    if args.out_dir or len(args.checkpoints) > 1:
        out = Path(args.out_dir or "eval_out").resolve()
        locks[_run_of(out / "x") or out] = False
    elif args.out and _run_of(Path(args.out)) is not None:
        locks[_run_of(Path(args.out))] = False
    return sorted(locks.items())


def _run_of(path: Path) -> Path | None:
    """The run folder (the nearest with config.yaml) that holds ``path``, if any."""
    for folder in path.resolve().parents:
        if (folder / "config.yaml").is_file():
            return folder
    return None


def _run_eval(args, names: list[str], options: dict) -> int:
    budget = None
    if "val_loss" in names and not any(k.startswith("val_loss.") for k in options):
        # the budget the study reports the step with (evals.context.val_loss_options), unless --option sets one
        found, budget = step_val_loss_options(Path(args.checkpoints[0]))
        options = {**options, **found}
    ctx = build_context(data_root=args.data_root, prepared_dir=args.prepared, limit=args.limit, sample_seed=args.sample_seed,
                        batch_size=args.batch_size, out_dir=args.out_dir, options=options)
    if len(args.checkpoints) > 1 or args.out_dir:
        out_dir = Path(args.out_dir or "eval_out")
        ctx.out_dir = out_dir
        results = evaluate_steps([Path(c) for c in args.checkpoints], names, ctx, out_dir, device=args.device)
        written = f"wrote one JSON per step into {out_dir}"
    else:
        res = evaluate_checkpoint(Path(args.checkpoints[0]), names, ctx, device=args.device,
                                  out=Path(args.out) if args.out else None)
        results = {args.checkpoints[0]: res}
        written = f"wrote {args.out}" if args.out else "results not written: --out FILE writes them, --json prints them"
    if args.json:
        print(json.dumps(results if len(results) > 1 or args.out_dir else res, indent=2, default=str))
        return 0
    print("\n".join(summary_lines(results)))
    if budget is not None:
        print(f"val loss: {budget}")
    print(written)
    return 0


def cmd_connectome(args) -> int:
    """Write generation k's connectome (of a lineage) in the chosen codec and print its sizes."""
    folder = existing_run(args.run)
    layout = folder.layout.lineage(args.lineage)
    g = folder.cfg.evolve.generations - 1 if args.generation is None else args.generation
    gcfg = folder.gpt_config()
    out = Path(args.out) if args.out else layout.generation_connectome(g, args.codec)
    save_connectome(generation_connectome(layout, g, gcfg), out, codec=args.codec)
    t = generation_bits(layout, g, gcfg)["total"]
    print(f"{generation_name(g, folder.cfg.evolve.generations)}: wrote {out} ({args.codec}, {out.stat().st_size * 8:,} bits); i.i.d. bound {t['bound']:,.0f} bits, "
          f"ANS file {t['ans_file']:,} bits, structured file {t['structured_file']:,} bits")
    return 0


def cmd_inspect(args) -> int:
    print(inspect_connectome(Path(args.file)))
    return 0


def cmd_export(args) -> int:
    out = export_hf(Path(args.checkpoint), Path(args.to), tokenizer=args.tokenizer,
                    evals=[Path(e) for e in args.eval_json] if args.eval_json else None)
    print(f"wrote {out} (load with AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True))")
    return 0


def cmd_study(args) -> int:
    flags = {"runtime.workers": args.workers, "runtime.launcher": args.launcher, "runtime.slurm_partition": args.partition,
             "runtime.slurm_time_min": args.time, "runtime.slurm_gpus_per_task": args.gpus_per_task}
    cfg = load_config(args.config, [*args.overrides, *(f"{k}={v}" for k, v in flags.items() if v is not None)], verb="study")
    if args.plan:
        rows, where = plan_on(cfg, gpu=args.gpu, gpus=args.gpus, mfu_json=args.mfu_json)
        for line in corpora.describe(cfg):
            print(line)
        _print_plan(rows, where)
        if cfg.runtime.workers > 1:
            wall = parallel_wall(cfg, rows, cfg.runtime.workers)
            print(f"with {cfg.runtime.workers} workers: about {_hms(wall)} of training wall time "
                  "(lineages in parallel, then units; list scheduling of the estimates above)")
        return 0
    parallel = cfg.runtime.workers > 1 or cfg.runtime.launcher == "slurm"  # workers started by hand may join it
    with run_lock(cfg.run_dir, command=PARALLEL_STUDY if parallel else "study"):  # after validation: a refused config creates nothing
        study(cfg)  # connectomes.api: the pipeline's run_study (serial, workers or SLURM), then the report
    return 0


def _hms(s: float | None) -> str:
    if s is None:
        return "?"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def _print_plan(rows, where: str) -> None:
    def si(x: float) -> str:
        for unit, f in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(x) >= f:
                return f"{x / f:.2f}{unit}"
        return f"{x:.0f}"

    w = max([32] + [len(r["stage"]) for r in rows])  # sweep units have long names
    print(f"{'stage':<{w}} {'steps':>8} {'tokens':>16} {'FLOPs':>10} {'est. wall time':>16}")
    for r in rows:
        print(f"{r['stage']:<{w}} {r['steps']:>8,} {r['tokens']:>16,} {si(r['flops']):>10} {_hms(r['est_s']):>16}")
    print(f"(training only; evaluations, checkpoints and data preparation come on top. Time for {where}.)")


def cmd_status(args) -> int:
    rows = status(Path(args.run))
    w = max([36] + [len(stage) for stage, _ in rows])
    for stage, state in rows:
        print(f"{stage:<{w}} {state}")
    return 0


def cmd_report(args) -> int:
    from .analysis.report import write_report  # scipy and matplotlib: loaded only by the verbs that report

    run = existing_run(args.run).dir
    with run_lock(run, command="report"):
        print(f"wrote {write_report(run)}")
    return 0


def cmd_work(args) -> int:
    """A study worker on a prepared run folder (the study starts these), or one item of it under torchrun."""
    run = open_worker_run(args.run)
    with joined(run.dir):  # refused while a serial study or a stage writes the run; joins a study with workers
        if args.item:
            run_claimed_item(run, args.item)
        else:
            use_threads(run.cfg, workers=run.cfg.runtime.workers)
            work(run, name=f"worker {os.getpid()}")
    return 0


def cmd_anatomy(args) -> int:
    """Write anatomy.json and its figures for every lineage's connectome at one generation; print a summary."""
    # scipy and matplotlib: loaded only by the verbs that report
    from .analysis.anatomy import AnatomyTarget, summary_lines, write_anatomy

    if args.draws < 99:
        raise UserError(f"--draws {args.draws} is too few for a null range; use 99 or more (default 999)")
    run = AnatomyTarget.open(args.run, args.generation)
    with run_lock(run.dir, command="anatomy"):
        result, path = write_anatomy(run, Path(args.out) if args.out else None, draws=args.draws, seed=args.seed)
    print("\n".join(summary_lines(result, path)))
    return 0


def _connectome_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("run", metavar="RUN_DIR")
    sp.add_argument("--generation", type=int, help="generation k, counted from 0 like the gen_XX folders "
                    "(density (1 - evolve.prune_fraction)^(k+1)); default the last")
    sp.add_argument("--lineage", type=_seed_arg("--lineage"), help="the evolve.seeds lineage (default: the run's plain evolution)")
    sp.add_argument("--codec", choices=["packed", "ans", "structured"], default="packed")
    sp.add_argument("--out", help="file to write (default evolve/gen_XX/connectome.safetensors or .cnx)")


FMT = argparse.RawDescriptionHelpFormatter


def _verb(sub, name, help_, fn, config=True):
    """A subcommand whose description is its help line; config verbs take --config and overrides."""
    sp = sub.add_parser(name, help=help_, description=help_, formatter_class=FMT,
                        epilog=_options_epilog(name) if config else None)
    if config:
        _add_config_args(sp)
    sp.set_defaults(fn=fn)
    return sp


def _add_stage_verbs(sub) -> None:
    _verb(sub, "prepare", "tokenise a text source into large/small/val shards + meta.json", cmd_prepare)
    sp = _verb(sub, "train", "one plain training run (random init) on a data split", cmd_train)
    sp.add_argument("--split", default="large", choices=["large", "small"], help="training split (default large)")
    _verb(sub, "evolve", "the outer loop: G generations of train -> prune -> re-initialise; writes the connectome", cmd_evolve)
    sp = _verb(sub, "develop", "one inner-loop arm on the small split", cmd_develop)
    sp.epilog = "arms (what each keeps of its lineage; what it redraws per seed):\n" + "\n".join(arms.help_lines()) + \
        "\n\n" + (sp.epilog or "")
    sp.add_argument("--arm", required=True, type=_arm_arg, metavar="ARM", help="one of " + ", ".join(arms.choices()))
    sp.add_argument("--seed", type=_seed_arg("--seed"), default=0, help=SEED_HELP)


def _arm_arg(text: str) -> str:
    if not arms.known(text):
        raise argparse.ArgumentTypeError(f"unknown arm {text!r}; choose one of {', '.join(arms.choices())}")
    return text


def _limit_arg(text: str) -> dict[str, int]:
    """--limit as eval.limit in a config: one number for every sampled task, or task=N pairs."""
    try:
        value = text
        if "=" in text:
            pairs = [part.split("=", 1) for part in text.split(",")]
            if any(len(p) != 2 for p in pairs):
                raise ValueError(f"{text!r}: give one number, or task=N pairs such as "
                                 + ",".join(f"{t}=100" for t in sampled_tasks()))
            value = dict(pairs)
        return from_dict(EvalConfig, {"limit": value}, prefix="eval.").limit
    except (UserError, ValueError) as e:  # argparse turns this into its one-line usage error, exit 2
        raise argparse.ArgumentTypeError(str(e)) from None


def _seed_arg(key: str):
    """A seed flag's type: a whole number in the range every seed takes (core.config.Seed), checked as argparse
    reads it, before any work (a seed out of range would otherwise reach the data stream or a generator)."""
    def parse(text: str) -> int:
        try:
            return check_seed(text, key)
        except UserError as e:  # argparse turns this into its one-line usage error, exit 2
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def _add_eval_verb(sub) -> None:
    sp = sub.add_parser("eval", help="evaluate checkpoints (step folders or reference-format files)",
                        description="Evaluate checkpoints (step folders or reference-format files).",
                        formatter_class=FMT, epilog=_tasks_epilog())
    sp.set_defaults(fn=cmd_eval)
    sp.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="step_XXXXXX folder(s) of one run, or a .safetensors/.pt state dict")
    sp.add_argument("--tasks", default=logged_metric()[0], help="comma-separated task names (listed below)")
    sp.add_argument("--limit", type=_limit_arg, default=0,
                    help=f"items of the sampled tasks ({', '.join(sampled_tasks())}): N for each, or task=N pairs "
                         "(0 = all; below, how each samples)")
    sp.add_argument("--sample-seed", type=_seed_arg("eval.sample_seed"), default=0, help="seed of the sampled tasks' item samples")
    sp.add_argument("--batch-size", type=int, default=16)
    sp.add_argument("--out", help="JSON file for a single checkpoint's results (default: a summary table only)")
    sp.add_argument("--json", action="store_true", help="print the results as JSON instead of the summary table")
    sp.add_argument("--out-dir", help="folder for one JSON per step when evaluating several steps")
    sp.add_argument("--data-root", help="folder holding each task's data folder (listed below; default $CONNECTOMES_DATA)")
    sp.add_argument("--prepared", help="prepared data folder, for tasks that score its val split or count word "
                    "frequencies in its large split (default: the checkpoint's own)")
    sp.add_argument("--device", default="cpu")
    sp.add_argument("--option", action="append", metavar="TASK.KEY=VALUE", help="task option, listed below (repeatable)")


def _add_file_verbs(sub) -> None:
    sp = _verb(sub, "inspect", "per-tensor density, sign balance, entropy and stored bits/weight of a connectome file", cmd_inspect, config=False)
    sp.epilog = ("columns: density = alive weights / weights; + frac = share of the alive weights that are +1; H bits/w = "
                 "the i.i.d. bound H(d) + d; stored b/w = bits per weight in this file; struct b/w = bits per weight of "
                 "the structured code; ctx = what that code conditions on (iid: one rate per tensor; rows/cols: a rate "
                 "per row/column)")
    sp.add_argument("file")

    _connectome_args(_verb(sub, "connectome", "write a generation's connectome file in a codec (packed, ans or "
                           "structured) and print its sizes", cmd_connectome, config=False))
    sp = _verb(sub, "export", "write a Hugging Face folder (config.json, model.safetensors, remote code, tokenizer, model card)",
               cmd_export, config=False)
    sp.add_argument("checkpoint", metavar="STEP_OR_FILE", help="a step_XXXXXX folder or a .safetensors/.pt state dict")
    sp.add_argument("--to", required=True, metavar="OUT", help="new folder to write")
    sp.add_argument("--tokenizer", help="gpt2, bytes or bpe-N (default: the checkpoint's; gpt2 for a bare file)")
    sp.add_argument("--eval-json", action="append", metavar="FILE",
                    help="evaluation result JSON for the model card (default: the run's own for this step)")


def _add_study_verb(sub) -> None:
    sp = sub.add_parser("study", help="everything, resumable: prepare -> evolve -> develop -> eval -> report",
                        description="Run the whole study described by CONFIG; re-running continues where it stopped.",
                        formatter_class=FMT, epilog=_options_epilog("study"))
    sp.add_argument("config", metavar="CONFIG", help=CONFIG_HELP)
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    sp.add_argument("--plan", action="store_true", help="print every stage with steps, tokens, FLOPs and estimated time; run nothing")
    sp.add_argument("--gpu", choices=["a100", "h100", "h200"], help="with --plan: estimate the time on this GPU kind (bf16 dense peak x MFU) instead of this machine")
    sp.add_argument("--gpus", type=int, help="with --plan --gpu: number of GPUs (default 1)")
    sp.add_argument("--mfu-json", metavar="JSON", help="with --plan --gpu: take the MFU from a benchmarks/gpu.py result instead of the default 0.40")
    sp.add_argument("--workers", type=int, metavar="N", help="run lineages and units in N processes (runtime.workers); "
                    "with --plan, also the wall time with N workers")
    sp.add_argument("--launcher", choices=["local", "slurm"], help="where workers run: local processes or SLURM jobs "
                    "through submitit (runtime.launcher)")
    sp.add_argument("--partition", help="SLURM partition of the worker jobs (runtime.slurm_partition)")
    sp.add_argument("--time", type=int, metavar="MIN", help="SLURM time limit per worker job in minutes (runtime.slurm_time_min)")
    sp.add_argument("--gpus-per-task", type=int, metavar="G", help="GPUs per worker job; each unit trains on all of them "
                    "under torchrun (runtime.slurm_gpus_per_task)")
    sp.set_defaults(fn=cmd_study)


def _add_run_folder_verbs(sub) -> None:
    sp = _verb(sub, "status", "what is done in a run folder", cmd_status, config=False)
    sp.add_argument("run", metavar="RUN_DIR")
    sp = _verb(sub, "work", "a study worker: take and do the lineages and units of a run folder the study prepared "
               "(more workers on other machines can share a folder on a shared filesystem)", cmd_work, config=False)
    sp.add_argument("run", metavar="RUN_DIR")
    sp.add_argument("--item", help="do this one work item (a claim name under <run>/.claims), e.g. under torchrun")
    sp = _verb(sub, "report", "figures (PNG) and report.md for a run folder", cmd_report, config=False)
    sp.add_argument("run", metavar="RUN_DIR")
    sp = _verb(sub, "anatomy", "which wiring survives, against the random arm's null, across generations and lineages: "
               "anatomy.json + figures (docs/method.md §8)", cmd_anatomy, config=False)
    sp.add_argument("run", metavar="RUN_DIR")
    sp.add_argument("--generation", type=int, help="generation k, counted from 0 like the gen_XX folders "
                    "(density (1 - evolve.prune_fraction)^(k+1)); default the last")
    sp.add_argument("--out", help="folder to write (default RUN/report/anatomy/, or report/anatomy_gen_XX/ for an earlier generation)")
    sp.add_argument("--draws", type=int, default=999, help="null draws per dispersion test (default 999)")
    sp.add_argument("--seed", type=_seed_arg("--seed"), default=0, help="seed of the null draws")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="connectomes",
        description="Generational connectome studies of language models: prepare data, evolve a connectome, "
        "develop models from it and from controls, evaluate, report.",
        formatter_class=FMT,
        epilog="Run `connectomes VERB --help` for each verb's options and every config key.",
    )
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    # in the order `connectomes --help` lists them
    for add in (_add_stage_verbs, _add_eval_verb, _add_file_verbs, _add_study_verb, _add_run_folder_verbs, add_setup_verbs):
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_threads(choose_threads("auto"))  # verbs with a config refine it for the model they train
    return guarded(lambda: args.fn(args))  # core.entry: the boundary every entry point shares


if __name__ == "__main__":
    raise SystemExit(main())
