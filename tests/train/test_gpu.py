"""The CUDA path of training on one GPU, through the real model, task and trainer: a one-process
NCCL DDP step, bf16 autocast, torch.compile, and the eval/train reconstruction check.

Every test is marked ``gpu`` (``pytest -m gpu``; bench/gpu_check.sh runs them) and is skipped
without CUDA, unless ``CDSVAE_GPU_DRY_RUN=1`` asks for the dry run: the same tests on the CPU at
tiny sizes, with gloo for NCCL, CPU bf16 autocast, and torch.compile's aot_eager backend for
inductor (inductor compiles for over a minute per model on a 2-core CPU; aot_eager still traces
the model with dynamo and AOTAutograd). The dry run keeps these tests working where no GPU is.

Tolerances, each stated with its test and in bench/gpu_check.sh:

- DDP: a group of one process averages each gradient over one process, so the parameters (and
  batch-norm buffers) after two steps equal the plain run's within 1e-6 (absolute; rtol 1e-5).
- bf16 and fp16 (with its GradScaler): the training loss, and each of its terms, at step 1 (the same parameters and batch) and
  the validation loss and terms of the initial model are within 3% of fp32's, or within 0.03
  absolute for terms that are near zero (the MI penalty is a ReLU of a difference).
- compile: loss, terms and gradient norm of steps 1 and 2 within 1e-3 relative (1e-4 absolute)
  of eager's; parameters after two steps within 2 x lr x steps, the most that two Adam runs whose
  tiny gradients differ in sign can drift apart.
- eval/train: the model in eval mode reconstructs a fixed batch no worse than 1.25 times train
  mode (the trainer's own limit, EVAL_TRAIN_RATIO_LIMIT), and running averages shifted by three
  standard deviations are caught.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import socket

import pytest
import torch
import torch.distributed as dist

from _recon import fit_reconstruction
from cdsvae import checkpoint as ckpt
from cdsvae.experiment.loss import recon_consistency
from cdsvae.experiment.run import build_trainer
from cdsvae.experiment.schema import check_config
from cdsvae.models import build_model
from cdsvae.train.distributed import DistContext
from cdsvae.train.monitor import EVAL_TRAIN_RATIO_LIMIT
from cdsvae.train.trainer import setup_process

DRY_RUN = os.environ.get("CDSVAE_GPU_DRY_RUN") == "1"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not DRY_RUN and not torch.cuda.is_available(),
                       reason="no CUDA device (CDSVAE_GPU_DRY_RUN=1 runs these on the CPU at tiny sizes)"),
]
DEVICE = "cpu" if DRY_RUN else "cuda"
DDP_BACKEND = "gloo" if DRY_RUN else "nccl"
COMPILE_BACKEND = "aot_eager" if DRY_RUN else "inductor"

TINY_MODEL = {"s_dim": 8, "z_dim": 4, "hidden_dim": 16, "g_dim": 8, "frame_hidden": 16, "conv_width": 8}
# speech: the mini recipe's model on 80-bin frames; video: the Sprites model (conv64 defaults).
KINDS = {
    "speech": {"model": {"frame": "conv1d", "feat_dim": 80, "s_dim": 64, "z_dim": 16, "hidden_dim": 128,
                         "g_dim": 64},
               "frames": [80], "seq_len": 20, "batch": 32, "dry": {"frames": [12], "seq_len": 6, "batch": 8}},
    "video": {"model": {"frame": "conv64", "in_channels": 3},
              "frames": [3, 64, 64], "seq_len": 8, "batch": 16, "dry": {"frames": [3, 64, 64], "seq_len": 4,
                                                                        "batch": 4}},
}


def config(kind: str, steps: int | None = 2, epochs: int = 1, valid: bool = False, batches: int = 4,
           **train) -> dict:
    """A checked C-DSVAE config of ``kind`` on synthetic data (``batches`` per epoch), on this module's device."""
    spec = KINDS[kind]
    size = spec["dry"] if DRY_RUN else spec
    model = dict(spec["model"])
    if DRY_RUN:
        model.update(TINY_MODEL)
        if model["frame"] != "conv64":
            model["feat_dim"] = size["frames"][0]
    batch = size["batch"]
    cfg = {
        "model": model,
        "data": {"type": "synthetic", "num_train": batches * batch, "num_valid": 2 * batch, "seq_len": size["seq_len"],
                 "frame_shape": size["frames"], "with_motion": kind == "speech",
                 "valid_split": "dev" if valid else None},
        "train": {"epochs": epochs, "max_steps": steps, "batch_size": batch, "log_every": 1, "tensorboard": False,
                  "device": DEVICE, "num_workers": 0, "seed": 7, "deterministic": True, **train},
    }
    return check_config(cfg)


class OneProcessGroup(DistContext):
    """A process group of one process that the trainer treats as distributed: the model is wrapped
    in DDP and the step's statistics, checkpoints and validation go through the collectives."""

    @property
    def distributed(self) -> bool:
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def compile_backend(backend: str):
    """torch.compile with ``backend`` while the trainer is built (it calls torch.compile(model))."""
    original = torch.compile
    if backend != "inductor":
        torch.compile = functools.partial(original, backend=backend)
    try:
        yield
    finally:
        torch.compile = original


@contextlib.contextmanager
def eager_random_numbers():
    """Inductor replaces random ops (randn_like of the reparameterisation) with its own generator
    (pytorch/pytorch#118735), so compiled and eager steps draw other noise; fallback_random keeps
    eager's RNG ops, and the comparison is then of the compiled arithmetic alone."""
    import torch._inductor.config as inductor_config

    with inductor_config.patch(fallback_random=True):
        yield


@contextlib.contextmanager
def trainer_for(cfg: dict, outdir, ddp: bool = False):
    """A Trainer of ``cfg`` in this process, set up as an entry point sets it up; ``ddp``: in a
    one-process group of DDP_BACKEND, ended on leaving the block."""
    ctx = setup_process(cfg["train"], outdir)
    if ddp:
        if ctx.device.type == "cuda":
            torch.cuda.set_device(ctx.device)
        kwargs = {"device_id": ctx.device} if ctx.device.type == "cuda" else {}
        dist.init_process_group(DDP_BACKEND, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1,
                                **kwargs)
        ctx = OneProcessGroup(device=ctx.device, backend=DDP_BACKEND)
    try:
        with compile_backend(COMPILE_BACKEND):
            trainer = build_trainer(cfg, outdir, ctx)
        yield trainer
    finally:
        if ddp and dist.is_initialized():
            dist.destroy_process_group()


def fit(cfg: dict, outdir, ddp: bool = False):
    with trainer_for(cfg, outdir, ddp) as trainer:
        trainer.fit()
    return trainer


def state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().cpu() for k, v in trainer.model.state_dict().items() if v.is_floating_point()}


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def rel_gaps(got: dict[str, float], want: dict[str, float], floor: float) -> dict[str, float]:
    """Per key, |got - want| / max(|want|, floor): a relative gap, absolute (over ``floor``) near
    zero. A limit rtol on it allows rtol relative or rtol * floor absolute."""
    return {k: abs(got[k] - want[k]) / max(abs(want[k]), floor) for k in want}


def step_values(trainer, step: int) -> dict[str, float]:
    """What the trainer logged for ``step`` (log_every 1): loss, its terms, gradient norm."""
    row = next(h for h in trainer.history if h["step"] == step)
    return {k: float(v) for k, v in row.items() if k not in ("step", "lr", "seq_per_s")}


@pytest.mark.parametrize("kind", ["speech", "video"])
def test_one_process_ddp_step_equals_the_plain_step(kind, tmp_path, record_property):
    cfg = config(kind)
    plain = fit(cfg, tmp_path / "plain")
    ddp = fit(cfg, tmp_path / "ddp", ddp=True)
    assert "1 process(es) (%s)" % DDP_BACKEND in (tmp_path / "ddp" / "train.log").read_text()
    assert type(ddp.step_module).__name__ == "DistributedDataParallel"
    diff = max_abs_diff(state(plain), state(ddp))
    record_property("max |param diff|", f"{diff:.2e} ({DDP_BACKEND})")
    for k, v in state(plain).items():
        assert torch.allclose(v, state(ddp)[k], rtol=1e-5, atol=1e-6), (k, diff)
    assert step_values(plain, 2) == pytest.approx(step_values(ddp, 2), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.parametrize("kind", ["speech", "video"])
def test_autocast_losses_match_fp32(kind, amp, tmp_path, record_property):
    """Step 1 (train mode, the same parameters and batch) and the initial model's validation (eval
    mode) under bf16 autocast, or fp16 autocast with its GradScaler: loss and every term within 3%
    of fp32, or 0.03 absolute near zero."""
    rtol, atol = 0.03, 0.03
    values = {}
    for run in ("none", amp):
        with trainer_for(config(kind, steps=1, valid=True, amp=run), tmp_path / run) as trainer:
            valid = trainer.validate()
            trainer.fit()
        values[run] = {**{f"valid {k}": v for k, v in valid.items()},
                       **{f"step1 {k}": v for k, v in step_values(trainer, 1).items()
                          if k not in ("grad_norm", "amp_skipped_steps", "amp_scale")}}
    gaps = rel_gaps(values[amp], values["none"], atol / rtol)
    worst = max(gaps, key=gaps.get)
    record_property("worst gap", f"{gaps[worst]:.2e} ({worst}; limit {rtol})")
    loss = {run: f"{v['step1 loss']:.6g}" for run, v in values.items()}
    record_property("step-1 loss", f"fp32 {loss['none']}, {amp} {loss[amp]}")
    bad = {k: (values[amp][k], values["none"][k]) for k, g in gaps.items() if not g <= rtol}
    assert not bad, f"{amp} vs fp32 beyond {rtol:.0%} (or {atol} absolute): {bad}"


@pytest.mark.parametrize("kind", ["speech", "video"])
def test_compiled_steps_match_eager(kind, tmp_path, record_property):
    """Steps 1-2 with torch.compile(model) (inductor; aot_eager in the dry run) against eager."""
    from torch._dynamo.utils import counters

    steps = 2
    eager = fit(config(kind, steps=steps), tmp_path / "eager")
    # As in a process of its own: compiled code of another model makes dynamo mark sizes dynamic.
    torch._dynamo.reset()
    counters.clear()
    try:
        with eager_random_numbers():
            compiled = fit(config(kind, steps=steps, compile=True), tmp_path / "compiled")
        graphs = counters["stats"]["unique_graphs"]
        breaks = sum(counters["graph_break"].values())
    finally:
        torch._dynamo.reset()
    assert type(compiled.loss_module.model).__name__ == "OptimizedModule"
    worst = 0.0
    for step in range(1, steps + 1):
        got, want = step_values(compiled, step), step_values(eager, step)
        gaps = rel_gaps(got, want, 1e-4 / 1e-3)
        worst = max(worst, *gaps.values())
        assert all(g <= 1e-3 for g in gaps.values()), (step, got, want)
    diff = max_abs_diff(state(eager), state(compiled))
    lr = float(eager.oopt["lr"])
    record_property("worst gap of loss, terms, grad norm", f"{worst:.2e} ({COMPILE_BACKEND})")
    record_property("max |param diff|", f"{diff:.2e} (limit {2 * lr * steps:g})")
    record_property("dynamo", f"{graphs} graphs, {breaks} graph breaks")
    assert diff <= 2 * lr * steps


# The batch of tests/experiment/test_loss.py's CPU test of recon_consistency, with a model twice as wide
# trained twice as long: that test's model explains so little of x that even running averages
# far off the mark cost it only 1.25 times its train-mode error (its last layer, a tanh, saturates).
CONSISTENCY_MODEL = {"frame": "mlp", "feat_dim": 12, "s_dim": 16, "z_dim": 8, "hidden_dim": 32, "g_dim": 16,
                     "frame_hidden": 32}


def test_eval_mode_reconstructs_as_well_as_train_mode_on_the_device(record_property):
    """The approach of tests/experiment/test_loss.py's CPU test on the device: a model trained on x, with running
    averages that describe it, reconstructs x alike in both modes, measured in fp32 and under bf16
    autocast (as the trainer measures it with train.amp bf16); lagging averages are caught in both."""
    device = torch.device(DEVICE)
    torch.manual_seed(0)
    model = build_model(dict(CONSISTENCY_MODEL, init="default")).to(device)
    x = torch.randn(16, 6, 12, device=device)
    fit_reconstruction(model, x, 300)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def ratio(amp: str) -> float:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            eval_err, train_err = recon_consistency(model, {"x": x})
        return float(eval_err / train_err)

    good = {amp: ratio(amp) for amp in ("fp32", "bf16")}
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # running statistics and counters untouched
    with torch.no_grad():
        for bn in model.frame_encoder.layers:
            if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
                bn.running_mean += 3.0 * bn.running_var.sqrt()
    shifted = {amp: ratio(amp) for amp in ("fp32", "bf16")}
    record_property("eval/train", ", ".join(f"{k} {v:.3f}" for k, v in good.items()))
    record_property("with shifted averages", ", ".join(f"{k} {v:.2f}" for k, v in shifted.items()))
    assert all(0.8 < r <= EVAL_TRAIN_RATIO_LIMIT for r in good.values()), good
    assert all(r > EVAL_TRAIN_RATIO_LIMIT for r in shifted.values()), shifted


@pytest.mark.parametrize("kind", ["speech", "video"])
def test_the_trainers_eval_train_check_passes_on_the_device(kind, tmp_path, record_property):
    """Three epochs of 8 steps through the trainer with validation (the batch-norm running averages,
    momentum 0.1, then weigh their initial values by 0.9^24 < 0.1): the ratios its check stores with best.pt."""
    fit(config(kind, steps=None, epochs=3, valid=True, batches=8), tmp_path)
    valid = ckpt.load_checkpoint(tmp_path / "checkpoints" / ckpt.BEST)["valid"]
    ratios = {k: valid[k] for k in ("eval_train_ratio", "eval_train_ratio_train")}
    record_property("eval/train", f"valid batch {ratios['eval_train_ratio']:.3f}, "
                                  f"training batch {ratios['eval_train_ratio_train']:.3f}")
    assert all(math.isfinite(v) and 0.5 < v <= EVAL_TRAIN_RATIO_LIMIT for v in ratios.values()), ratios


def test_a_run_checkpointed_contiguous_resumes_channels_last_with_the_fused_kernel(tmp_path, record_property):
    """A conv64 run checkpointed with contiguous weights (as on the CPU) and resumed channels-last
    with fused Adam (the CUDA default): CUDA's fused kernel refuses moments of another layout."""
    first = fit(config("video", steps=2, channels_last=False), tmp_path)
    resumed = fit(config("video", steps=3, channels_last=True), tmp_path)
    assert resumed.optimizer.defaults.get("fused") or DRY_RUN  # the CPU's fused Adam checks no layout
    convs = [p for p in resumed.model.parameters() if p.dim() == 4]
    bad = [tuple(p.shape) for p in convs
           if resumed.optimizer.state[p]["exp_avg"].stride() != p.stride()]
    record_property("resumed", f"step {first.step} -> {resumed.step}, {len(convs)} channels-last weights, "
                               f"{len(bad)} with moments of another layout")
    assert resumed.step == 3 and not bad
    assert all(torch.isfinite(p).all() for p in resumed.model.parameters())


def test_swap_draws_with_a_cpu_generator_on_the_device(record_property):
    """Stage 6's swap protocols hand a seeded CPU generator to the model on the device: the draws
    are made on the CPU and moved, the same numbers as a model on the CPU draws."""
    torch.manual_seed(0)
    model = build_model(config("speech")["model"]).to(DEVICE).eval()
    s = model.sample_s(3, generator=torch.Generator().manual_seed(4))
    z = model.sample_z_prior(3, 5, generator=torch.Generator().manual_seed(4))
    assert s.device.type == z.device.type == torch.device(DEVICE).type
    assert torch.equal(s.cpu(), torch.randn(3, model.s_dim, generator=torch.Generator().manual_seed(4)))
    record_property("draws", f"s {tuple(s.shape)}, z {tuple(z.shape)} on {DEVICE} from a CPU generator")
