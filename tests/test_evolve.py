"""The outer loop: exact densities per generation, zeros kept across generations, rewind, Muon."""

import math

import pytest
import torch
from safetensors.torch import load_file

from connectomes.training.checkpoint import load_masks, load_weights
from connectomes.connectome.codec import load_connectome
from connectomes.pipeline.study import open_run, stage_develop, stage_evolve
from connectomes.pipeline.sweep import Unit
from test_study import tiny


def _run(tmp_path, *extra):
    run = open_run(tiny(tmp_path, "ev", "develop.arms=connectome,random,dense,mask_only", "develop.seeds=0",
                        *extra), progress=False)
    assert stage_evolve(run, progress=False) is not None
    return run


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_densities_are_exact_and_pruned_weights_stay_zero_across_generations(tmp_path, optimizer):
    run = _run(tmp_path, f"evolve.train.optimizer={optimizer}", "evolve.train.weight_decay=0.1")
    conn = load_connectome(run.layout.connectome)
    gen0_masks = load_masks(run.dir / "evolve/gen_00/pruned").masks
    for name, t in conn.ternary.items():
        n = t.numel()
        a1 = n - math.floor(0.2 * n)
        assert int(gen0_masks[name].sum()) == a1
        assert int((t != 0).sum()) == a1 - math.floor(0.2 * a1)  # the product of the exact floor counts
    # generation 1 trained under gen 0's masks: its final weights are exactly zero where gen 0 pruned
    final = load_weights(run.dir / "evolve/gen_01/steps/step_000012")
    for name, mask in gen0_masks.items():
        assert torch.all(final[name][~mask] == 0.0), name


def test_connectome_signs_are_the_trained_signs(tmp_path):
    run = _run(tmp_path)
    conn = load_connectome(run.layout.connectome)
    pruned = load_weights(run.dir / "evolve/gen_01/pruned")
    for name, t in conn.ternary.items():
        assert torch.equal(pruned[name], t.float() * 0.02)


def test_rewind_resets_survivors_to_their_early_values(tmp_path):
    run = _run(tmp_path, "evolve.reinit=rewind", "evolve.rewind_step=2")
    snap = load_file(str(run.dir / "evolve/rewind.safetensors"))
    pruned = load_weights(run.dir / "evolve/gen_00/pruned")
    masks = load_masks(run.dir / "evolve/gen_00/pruned").masks
    for name, mask in masks.items():
        assert torch.equal(pruned[name][mask], snap[name][mask]) and torch.all(pruned[name][~mask] == 0)


def test_arms_start_from_their_connectomes(tmp_path):
    run = _run(tmp_path)
    conn = load_connectome(run.layout.connectome)
    starts = {}
    for arm in ("connectome", "random", "mask_only", "dense"):
        stage_develop(run, Unit(arm, 0), progress=False)
        starts[arm] = load_weights(run.dir / f"develop/{arm}/seed_0/steps/step_000000")
    for name, t in conn.ternary.items():
        assert torch.equal(starts["connectome"][name], t.float() * 0.02)
        assert int((starts["random"][name] != 0).sum()) == int((t != 0).sum())
        assert torch.equal(starts["mask_only"][name] != 0, t != 0)
        assert int((starts["dense"][name] == 0).sum()) == 0
    final = load_weights(run.dir / "develop/random/seed_0/steps/step_000010")
    for name in conn.ternary:
        assert torch.all(final[name][starts["random"][name] == 0] == 0.0)
