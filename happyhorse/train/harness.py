"""The one run loop every training command shares: `happyhorse train` (flow matching), `train-codec`
(the learned video codec) and `distill` (DMD-2).

An `Objective` says what is trained and how one step's loss is made; `run` does the rest, the same
way for all: the saved config, resume (from the run's own checkpoint or another run's), `--minutes`,
the learning-rate schedule, gradient clipping, EMA, atomic safetensors checkpoints, `log.jsonl`,
`loss.png`, the export of the EMA model, and DDP or FSDP under `torchrun`. A new objective is a new
`Objective`, not a copy of the loop.

Run directory: config.json, log.jsonl, loss.png, checkpoint/ (train/checkpoint.py), and whatever the
objective exports (model/ for a model directory, codec/ for a codec).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..devices import resolve_dtype
from ..media import write_json_atomic
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RunConfig


class Objective:
    """What a run trains. `run` calls, each step: `learning_rate`, `loss` (then backward, clipping, the
    optimizer step and the EMA of `model`), `after_step`; and at each checkpoint, `export`."""

    name = "objective"  # recorded in the checkpoint: a run directory of another objective is refused
    cfg: RunConfig
    model: nn.Module  # what the main optimizer trains; its EMA is what the run exports
    fsdp = False  # shard `model.blocks` across processes under torchrun (else DDP)
    curves: tuple[str, ...] = ("loss",)  # log.jsonl keys that loss.png plots (a dict: one line per key)

    def modules(self) -> dict[str, nn.Module]:
        """Other modules the run trains and checkpoints (by name), with optimizers of the same names."""
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizer of `model` as "model" (made after any sharding); then one per `modules()` entry."""
        raise NotImplementedError

    def batches(self, start: int, end: int, rank: int, world_size: int) -> Iterable[dict]:
        """Steps [start, end) of this process, in order, each a dict with its "step"."""
        raise NotImplementedError

    def learning_rate(self, step: int) -> float:
        return warmup_cosine_lr(self.cfg, step)

    def loss(self, net: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        """`model`'s loss on a batch (through `net`, its DDP or FSDP wrapper), and numbers to log: floats
        are averaged over the log window and over processes, lists (per sample) and dicts of lists are
        pooled. "tokens" and "flops" (this process's, this step) become tokens/s and MFU."""
        raise NotImplementedError

    def after_step(self, batch: dict) -> dict:
        """Updates of the other modules after the model's step (the fake denoiser); numbers to log."""
        return {}

    def export_due(self, step: int) -> bool:
        """Whether to export at `step` besides every checkpoint_every steps and the last."""
        return False

    def export(self, ema_state: dict[str, torch.Tensor], out: Path) -> tuple[Path, dict]:
        """Write what the run delivers from the EMA weights (on the main process); its directory, and
        figures to log beside the loss (a validation)."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------- helpers


def warmup_cosine_lr(cfg: RunConfig, step: int) -> float:
    """Linear warm-up over cfg.warmup_steps, then cosine decay to 10 % of cfg.lr at cfg.max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    """One EMA step towards `model`; the EMA warms up with the run (decay (1 + step) / (10 + step) until
    that reaches `decay`)."""
    rate = 1 - min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm.detach(), rate)


def autocasts(precision: str, device: torch.device) -> bool:
    """Whether the forward runs under bfloat16 autocast (`precision`; auto: as generation's dtype)."""
    if precision == "auto":
        return resolve_dtype("auto", device) == torch.bfloat16
    return precision == "bfloat16"


def matmul_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 1024) -> float:
    """Measured dense matmul FLOP/s on this device: the denominator of MFU."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    reps, start = 8, time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device) of this process: under torchrun a process group (NCCL on GPUs, gloo
    on CPUs) and the GPU of LOCAL_RANK; alone (0, 1) on the GPU where there is one."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def resolve_config(cfg: RunConfig, out: Path, resume: bool, log=print) -> RunConfig:
    """The config a run goes on with: with `resume`, the run's saved one (a run is rebuilt from its
    config alone), saying where CONFIG differs; a run saved before `precision` existed keeps the
    precision it ran in."""
    path = Path(out) / "config.json"
    if not (resume and path.exists()):
        return cfg
    saved_dict = json.loads(path.read_text())
    saved_dict.setdefault("precision", type(cfg).old_precision(torch.cuda.is_available()))
    saved = type(cfg).from_dict(saved_dict)
    if saved.to_dict() != cfg.to_dict():
        diff = sorted(k for k, v in cfg.to_dict().items() if saved.to_dict().get(k) != v)
        log(f"resume: using the run's saved config; CONFIG differs in {diff}")
    return saved


def read_log(out: Path) -> list[dict]:
    path = Path(out) / "log.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def check_run_directory(out: Path, objective: Objective) -> None:
    """Refuse a run directory whose checkpoint belongs to another objective, or was written before the
    shared run loop (a distill run's `student.safetensors`: those weights are named otherwise)."""
    state = Path(out) / "checkpoint" / "state.json"
    if (Path(out) / "checkpoint" / "student.safetensors").exists():
        raise ValueError(
            f"out: {out} holds a distill run of before 2026-12-08, which this version cannot resume; "
            "choose another directory (its model/ still loads as a model directory)"
        )
    theirs = json.loads(state.read_text()).get("objective") if state.exists() else None
    if theirs is not None and theirs != objective.name:
        raise ValueError(f"out: {out} holds a {theirs} run, not {objective.name}; choose another directory")


class _Window:
    """What a log record averages over: each number's values since the last record, and the time."""

    def __init__(self):
        self.t, self.steps, self.wait, self.values = time.perf_counter(), 0, 0.0, {}

    def add(self, values: dict) -> None:
        self.steps += 1
        for key, value in values.items():
            if isinstance(value, dict):
                bins = self.values.setdefault(key, {})
                for k, v in value.items():
                    bins.setdefault(k, []).extend(v if isinstance(v, list) else [v])
            else:
                self.values.setdefault(key, []).extend(value if isinstance(value, list) else [value])

    def record(self) -> dict:
        def mean(v):
            return float(np.mean(v)) if v else None

        return {
            k: ({b: mean(x) for b, x in v.items()} if isinstance(v, dict) else mean(v)) for k, v in self.values.items()
        }


def _reduce(values: dict, world_size: int) -> dict:
    """The step's floats averaged over processes (collective; the same keys on every process)."""
    keys = sorted(k for k, v in values.items() if isinstance(v, float))
    if world_size == 1 or not keys:
        return values
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {**values, **{k: float(v) / world_size for k, v in zip(keys, t.tolist(), strict=True)}}


def _parallel(objective: Objective, ema: nn.Module, world_size: int) -> nn.Module:
    """The module the forward runs through: the model; DDP over it; or, with FSDP2, the model and its EMA
    sharded block by block across processes (each sharded alike, so the EMA update stays local)."""
    model = objective.model
    if world_size == 1:
        return model
    if objective.fsdp:
        from torch.distributed.fsdp import fully_shard

        for module in (model, ema):
            for block in module.blocks:
                fully_shard(block)
            fully_shard(module)
        return model
    return nn.parallel.DistributedDataParallel(model)


# ---------------------------------------------------------------------------------------- the loop


def run(
    objective: Objective,
    out: str | Path,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    minutes: float | None = None,
    start_from: str | Path | None = None,
    log: Callable = print,
    progress: Callable[[int, int], None] | None = None,
    on_export: Callable[[Path, int, bool], None] | None = None,
) -> dict:
    """Train `objective` until `max_steps` (default: its config's) or `minutes` of wall time; return
    {"step", "log" (the last record), "export" (the last export's figures), "out"}.

    `resume` continues OUT's checkpoint; `start_from` (a run directory) continues another run's weights,
    optimizer and step in OUT instead, when OUT has none. `on_export(directory, step, last)` is called
    on the main process after each export (`last`: the run ends there), e.g. to write preview clips."""
    out, cfg = Path(out), objective.cfg
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    is_main = rank == 0
    try:
        check_run_directory(out, objective)
        model = objective.model
        ema = copy.deepcopy(model).eval().requires_grad_(False)
        extras = objective.modules()
        start, saved_optimizers = 0, {}
        source = out / "checkpoint" if resume and (out / "checkpoint" / "state.json").exists() else None
        if resume and source is None:
            log(f"resume: no checkpoint in {out / 'checkpoint'}; starting from step 0")
        if source is None and start_from is not None:
            source = Path(start_from) / "checkpoint"
            if not (source / "state.json").exists():
                raise FileNotFoundError(f"init_from: {start_from} is not a run directory (no checkpoint/)")
        if source is not None:
            weights, saved_optimizers, state = load_checkpoint(source)
            try:
                for name, module in {"model": model, "ema": ema, **extras}.items():
                    module.load_state_dict(weights[name])
            except (RuntimeError, KeyError) as exc:
                what = "resume" if source.parent == out else "init_from"
                raise ValueError(f"{what}: {source.parent}'s weights do not fit this config's: {exc}") from None
            start = state["step"]
            log(
                f"resumed from step {start}"
                if source.parent == out
                else f"continuing {source.parent} from step {start}"
            )
        end = max_steps if max_steps is not None else cfg.max_steps
        if is_main:
            out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out / "config.json", json.dumps(cfg.to_dict(), indent=1))
            kept = [r for r in read_log(out) if r["step"] <= start]  # records past the checkpoint run again
            write_json_atomic(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in kept))
        if start >= end:
            log(f"nothing to train: the run is at step {start} and max_steps is {end}")
            return {"step": start, "log": None, "export": {}, "out": str(out)}
        net = _parallel(objective, ema, world_size)
        sharded = world_size > 1 and objective.fsdp
        optimizers = objective.optimizers()
        for name, saved in saved_optimizers.items():
            if name == "model" and sharded:
                from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

                options = StateDictOptions(full_state_dict=True)
                set_optimizer_state_dict(model, optimizers[name], saved, options=options)
            else:
                optimizers[name].load_state_dict(saved)
        return _loop(objective, out, net, ema, optimizers, start, end, minutes, log, progress, on_export)
    finally:
        if dist.is_initialized():
            dist.barrier()  # leave together, then tear down (gloo aborts a rank whose peer still works)
            dist.destroy_process_group()


def _loop(objective, out, net, ema, optimizers, start, end, minutes, log, progress, on_export) -> dict:
    cfg, model = objective.cfg, objective.model
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    is_main = rank == 0
    main = optimizers["model"]
    device = next(model.parameters()).device
    started = fetched = time.perf_counter()
    window, record, figures, peak, done = _Window(), None, {}, None, start
    for batch in objective.batches(start, end, rank, world_size):
        window.wait += time.perf_counter() - fetched  # time the model waited for its data
        step = batch["step"]
        lr = objective.learning_rate(step)
        for group in main.param_groups:
            group["lr"] = lr
        loss, values = objective.loss(net, batch)
        main.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        main.step()
        update_ema(ema, model, step, cfg.ema_decay)
        values = {**values, **objective.after_step(batch), "loss": loss.item(), "grad_norm": float(grad_norm)}
        window.add(_reduce(values, world_size))
        done = step + 1
        if progress is not None and is_main:
            progress(done, end)
        out_of_time = minutes is not None and time.perf_counter() - started > minutes * 60
        if is_main and (done % cfg.log_every == 0 or done == end):
            elapsed = time.perf_counter() - window.t
            record = {"step": done, **window.record(), "lr": lr, "steps_per_s": window.steps / elapsed}
            if record.get("flops") is not None:  # MFU against this device's measured matmul peak
                peak = peak or matmul_peak_flops(device)
                record["tokens_per_s"] = record.pop("tokens") * world_size * record["steps_per_s"]
                record["mfu"] = record.pop("flops") * record["steps_per_s"] / peak
            record["data_wait"] = window.wait / elapsed  # share of the time spent waiting for data
            record["elapsed_s"] = time.perf_counter() - started
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            window = _Window()
        if done % cfg.checkpoint_every == 0 or done == end or out_of_time or objective.export_due(done):
            figures = _save(objective, out, ema, optimizers, done, done == end or out_of_time, on_export)
        if out_of_time:
            log(f"stopping after {minutes} minutes at step {done}")
            break
        fetched = time.perf_counter()
    if is_main:
        plot_loss(out, objective.curves)
    return {"step": done, "log": record, "export": figures, "out": str(out)}


def _save(objective: Objective, out: Path, ema, optimizers, step: int, last: bool, on_export) -> dict:
    """The checkpoint, then the export of the EMA model (main process); its figures, also logged."""
    model, extras = objective.model, objective.modules()
    sharded = dist.is_initialized() and objective.fsdp
    if sharded:  # gather full weights and optimizer state (collective)
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_state, ema_state = get_model_state_dict(model, options=opts), get_model_state_dict(ema, options=opts)
        main_optimizer = get_optimizer_state_dict(model, optimizers["model"], options=opts)
    else:
        model_state, ema_state, main_optimizer = model.state_dict(), ema.state_dict(), optimizers["model"].state_dict()
    if dist.is_initialized() and dist.get_rank() != 0:
        return {}
    modules = {"model": model_state, "ema": ema_state, **{k: m.state_dict() for k, m in extras.items()}}
    states = {"model": main_optimizer, **{k: o.state_dict() for k, o in optimizers.items() if k != "model"}}
    state = {"step": step, "objective": objective.name, "config": objective.cfg.to_dict()}
    save_checkpoint(out / "checkpoint", modules, states, state)
    directory, figures = objective.export({k: v.detach().cpu() for k, v in ema_state.items()}, out)
    if figures:  # a validation curve beside the loss curve
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **figures}) + "\n")
    if on_export is not None:
        on_export(directory, step, last)
    return figures


def plot_loss(out: Path, curves: tuple[str, ...] = ("loss",)) -> None:
    """loss.png: each of `curves` (a dict-valued one: each of its keys) against step, log scale."""
    records = [r for r in read_log(out) if any(r.get(c) is not None for c in curves)]
    if not records:  # a run stopped before its first record: nothing to plot
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, curve in enumerate(curves):
        last = records[-1].get(curve)
        lines = [(curve, lambda r, c=curve: r.get(c))]
        if isinstance(last, dict):
            lines = [(f"{curve} {k}", lambda r, c=curve, k=k: (r.get(c) or {}).get(k)) for k in last]
        for label, get in lines:
            points = [(r["step"], get(r)) for r in records if get(r) is not None]
            if not points:
                continue
            ax.plot(*zip(*points, strict=True), label=label, lw=2 if i == 0 and len(lines) == 1 else 1)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)
