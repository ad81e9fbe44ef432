"""The ``train`` config section: one training loop's schedule, optimizer, batch and cadence (used by the
plain ``train`` verb and, nested, by ``evolve.train`` and ``develop.train``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from ..core.config import SECTION, Beta, Bool, Count, NonNegFloat, PosFloat, PosInt, Seed, comma_list, doc, later_field


@dataclass
class TrainConfig:
    """One training loop's settings (docs/method.md §3): schedule, optimizer, batch, cadence."""

    __pydantic_config__ = SECTION
    iters: Annotated[PosInt, doc("optimizer steps")] = 200
    warmup_iters: Annotated[Count, doc("linear warmup from 0 to lr over the first warmup_iters steps")] = 20
    warmdown_iters: Annotated[Count, doc("linear decay to min_lr over the last warmdown_iters")] = 100
    lr: Annotated[PosFloat, doc("peak learning rate")] = 3e-3
    min_lr: Annotated[NonNegFloat, doc("learning rate at the end of the decay")] = 0.0
    beta1: Annotated[Beta, doc("Adam beta1")] = 0.9
    beta2: Annotated[Beta, doc("Adam beta2")] = 0.95
    weight_decay: Annotated[NonNegFloat, doc("decoupled weight decay (AdamW)")] = 0.1
    grad_clip: Annotated[NonNegFloat, doc("global gradient-norm clip (0 = off)")] = 1.0
    optimizer: Annotated[Literal["adamw", "muon"], doc("optimizer of the weight matrices")] = "adamw"
    batch_size: Annotated[PosInt, doc("global sequences per step, whatever the process count")] = 16
    micro_batch_size: Annotated[PosInt, doc("sequences per forward pass per process")] = 16
    eval_every: Annotated[Count, doc("validation cadence in steps (0 = only at the end)")] = 50
    eval_tokens: Annotated[PosInt, doc("fixed validation token budget")] = 32_768
    save_every: Annotated[Count, doc("checkpoint cadence in steps (0 = only at the end)")] = 100
    keep_steps: Annotated[comma_list(Count), doc("steps whose weights are kept for evaluation")] = field(default_factory=list)
    keep_best: Annotated[Bool, doc("also keep the weights of the step with the lowest logged val loss (the model early "
                                   "stopping would keep), chosen on the first eval_tokens of the val split and "
                                   "reported on the report_tokens after them; the study evaluates it like the final "
                                   "step")] = later_field(False)
    report_tokens: Annotated[Count, doc("with keep_best: the report slice, the val tokens after the first eval_tokens "
                                        "(the selection slice), logged as report_loss and scored by the val_loss "
                                        "task; 0 = as many as eval_tokens")] = later_field(0)
    patience: Annotated[Count, doc("with keep_best: stop once the selection-slice loss has not improved for this "
                                   "many evaluations in a row, the stopped step then being the final one (iters is "
                                   "the cap; the LR schedule stays defined on iters); 0 = off")] = later_field(0)
    seed: Annotated[Seed, doc("seed for torch's RNG at the start of training")] = 0
    device: Annotated[Literal["auto", "cpu", "cuda"], doc("auto = cuda when visible, else cpu")] = "auto"
    dtype: Annotated[Literal["auto", "float32", "bfloat16"], doc("auto = bf16 on CUDA, fp32 on CPU")] = "auto"
    compile: Annotated[Bool, doc("torch.compile the model (inductor: C++ on CPU, Triton on CUDA); faster steps after a "
                                 "one-off compile, not bit-identical to eager, so part of the run's identity")] = False
    log_every: Annotated[PosInt, doc("metrics.jsonl cadence in steps")] = 10
    log: Annotated[Literal["none", "tensorboard"], doc("also log every metrics.jsonl record to <run>/tb (TensorBoard event files)")] = "none"
    activation_checkpointing: Annotated[Bool, doc("recompute each block in backward: less activation memory, ~1/3 more forward FLOPs")] = False
