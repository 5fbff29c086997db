"""Train the default recipe on a lent GPU machine for a fixed wall budget, and bring the EMA back.

The device tool runs one command of at most 10 minutes on a bare machine, and gives back at most
16 MiB per file; so this measures the step rate first (80 steps), sets the cosine schedule to the
steps that fit the rest of the budget, trains, and writes the EMA weights in float32 shards of <= 12 MiB
under $OUT (also every 500 steps, so a run cut short still returns its last checkpoint).

    python scripts/device_bundle.py                      # here, once: .gpu/ (see its docstring)
    # device call, carry [".gpu"]:
    python3 scripts/device_train.py 545 128 2 1e-3        # BUDGET_S BATCH CLIP_REPEATS LR
    python3 scripts/device_train.py 200 128 2 3e-4 --init happyhorse/assets/default_model --seed 1 \
        --warmup 100 --rate 8.9                             # or: fine-tune the shipped model further
    python3 scripts/device_train.py 480 64 1 5e-5 --distill 4   # or: DMD-2 of the shipped model to 4 steps
    cp -r ~/.cache/happyhorse/runs/codec_sharp .gpu/codec_run    # here: a codec run to go on from (15 MB)
    python3 scripts/device_train.py 540 32 1 3e-4 --codec configs/video_codec_sharp.toml \
        --codec-init .gpu/codec_run      # or: the learned video codec, BATCH clips a step; $OUT/codec_run
                                         # comes back as a codec run (train-codec --init, `video_codec = RUN/codec`)
    python scripts/device_train.py --assemble /work/.device/N RUN   # here: RUN/model from the shards

Measured on one H200 (2026-11-26): 8.7 steps/s at batch 128 with 2 samples per clip and 14 loader
workers, 3 577 steps in 474 s. That run used `enable_gqa` attention, which cuDNN pairs wrongly
(see happyhorse/model/transformer.py), and its model was discarded.
"""

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
T0 = time.time()


def log(*parts) -> None:
    print(f"[{time.time() - T0:5.0f}s]", *parts, flush=True)


def assemble(shards: Path, run: Path) -> None:
    """RUN/model (a model directory) from the EMA shards and config.json a device run sent back."""
    from happyhorse.train import TrainConfig
    from happyhorse.train.trainer import build_run_components

    run.mkdir(parents=True, exist_ok=True)
    for f in shards.iterdir():
        shutil.copy(f, run / f.name)
    saved = json.loads((run / "config.json").read_text())
    if "student_steps" in saved:  # a distillation run
        return assemble_student(run, saved)
    cfg = TrainConfig.from_dict(saved)
    parts = build_run_components(cfg)
    parts.transformer.load_state_dict(load_shards(run))
    parts.save_pretrained(run / "model")
    log(f"wrote {run / 'model'}")
    # the weights must do here what they did there: the loss on training batches, on this CPU in
    # float32, beside the device's last logged loss (an attention backend that paired heads
    # differently there gave 0.40 here against 0.065 there)
    import torch

    from happyhorse.train.data import StepBatches
    from happyhorse.train.trainer import prepare_step, step_loss, world_of

    model = parts.transformer.float().eval()
    check = TrainConfig.from_dict({**cfg.to_dict(), "batch_size": 16, "clip_repeats": 1, "precision": "float32"})
    losses = []
    for step in range(cfg.max_steps, cfg.max_steps + 4):  # steps the run never saw
        batch = next(iter(StepBatches(world_of(check), 16, check.seed, step, step + 1)))
        with torch.no_grad():
            losses.append(float(step_loss(model, prepare_step(check, parts, batch, "cpu"), check)[0]))
    here = sum(losses) / len(losses)
    there = [r for r in (json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()) if "loss" in r][-5:]
    there = sum(r["loss"] for r in there) / len(there)
    log(f"loss on 64 fresh clips here {here:.4f}; last logged on the device {there:.4f}")
    if here > 1.5 * there:
        raise SystemExit(f"the assembled model does not reproduce the device's loss ({here:.4f} vs {there:.4f})")


def rebuild_minilm(bundle: Path, target: Path = Path("/tmp/minilm")) -> set[int]:
    """MiniLM's weights with a full embedding table (zero rows where no caption token lives); returns
    the token ids that have their real rows."""
    import torch
    from safetensors.torch import load_file, save_file

    target.mkdir(exist_ok=True)
    for f in (bundle / "minilm_files").iterdir():
        shutil.copy(f, target / f.name)
    weights = load_file(str(bundle / "minilm_pruned.safetensors"))
    kept = weights.pop("__kept_ids__")
    rows = weights.pop("__kept_rows__")
    key = bytes(weights.pop("__emb_key__").tolist()).decode()
    table = torch.zeros(*weights.pop("__emb_shape__").tolist())
    table[kept] = rows.float()
    full = {k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}
    full[key] = table
    save_file(full, str(target / "model.safetensors"))
    return set(kept.tolist())


def check_tokens(kept: set[int]) -> dict:
    """Count prompts with a token outside the kept rows (they would read a zero embedding)."""
    from happyhorse.codecs import text

    misses = {"tokens": 0, "prompts": 0}
    encode = text.MiniLMTextEncoder._encode_one

    def checked(self, prompts):
        tokenizer, _ = self._load()
        for prompt in prompts:
            bad = [i for i in tokenizer.encode(prompt).ids if i not in kept]  # a `tokenizers.Tokenizer`
            if bad:
                misses["tokens"] += len(bad)
                misses["prompts"] += 1
                if misses["prompts"] <= 3:
                    log("UNKNOWN TOKENS in", repr(prompt), [tokenizer.id_to_token(i) for i in bad])
        return encode(self, prompts)

    text.MiniLMTextEncoder._encode_one = checked
    return misses


def export(run: Path, out: Path, tag: str) -> None:
    """The run's EMA weights (float32) in shards of at most ~12 MiB (the device returns files up to
    16 MiB), its config and log, to `out`."""
    from safetensors.torch import load_file, save_file

    ema = run / "checkpoint" / "ema.safetensors"
    if not ema.exists():
        return
    state = load_file(str(ema))
    sizes = {k: v.numel() * v.element_size() for k, v in state.items()}
    count = max(3, -(-sum(sizes.values()) // (12 * 2**20)))
    shards = [{} for _ in range(count)]
    for k in sorted(state, key=lambda k: -sizes[k]):  # largest first, each into the lightest shard
        min(shards, key=lambda d: sum(sizes[n] for n in d))[k] = state[k].contiguous()
    for i, shard in enumerate(shards):
        save_file(shard, str(out / f"ema_{i}.safetensors.tmp"))
        os.replace(out / f"ema_{i}.safetensors.tmp", out / f"ema_{i}.safetensors")
    for name in ("config.json", "log.jsonl", "loss.png"):
        if (run / name).exists():
            shutil.copy(run / name, out / name)
    step = json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    (out / "exported.txt").write_text(f"{tag} step {step} at {time.time() - T0:.0f}s\n")
    log("exported", tag, "step", step)


def export_while_training(run: Path, out: Path, stop: threading.Event, exporter=None) -> None:
    """Call `exporter` (default: `export`) on each new checkpoint of `run` until `stop` is set."""
    exporter = exporter or export
    seen = None
    while not stop.wait(30):
        try:
            mtime = (run / "checkpoint" / "state.json").stat().st_mtime
            if mtime != seen:
                time.sleep(2)  # let the checkpoint's files land
                exporter(run, out, "partial")
                seen = mtime
        except OSError as exc:  # no checkpoint yet, or one being replaced: next round
            log("export:", exc)


def distill_on_device(args, out: Path) -> None:
    """DMD-2 of the shipped default model for the rest of the budget, exporting the EMA student."""
    from happyhorse.distill import DistillConfig, distill

    cfg = DistillConfig(
        student_steps=args.distill,
        batch_size=args.batch,
        lr=args.lr,
        fake_lr=args.lr,
        fake_updates=args.fake_updates,
        max_steps=10**6,
        seed=args.seed,
        log_every=10,
        checkpoint_every=100,
        num_workers=max(1, (os.cpu_count() or 4) - 2),
    )
    remaining = args.budget - (time.time() - T0) - 40
    run = Path("/tmp/run")
    log(f"distill: {remaining:.0f}s")
    stop = threading.Event()
    threading.Thread(target=export_while_training, args=(run, out, stop), daemon=True).start()
    summary = distill(cfg, run, minutes=remaining / 60, log=lambda *a: None)
    stop.set()
    export(run, out, "final")
    log("summary", json.dumps(summary)[:600])


def export_codec(run: Path, out: Path, tag: str) -> None:
    """The codec run's codec/ (what a training config's `video_codec` names), checkpoint/ (to resume or
    --init from here), config and log, under out/ (each file well under the 16 MiB the device returns)."""
    if not (run / "codec" / "config.json").exists():
        return
    staging = out / "codec_run.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    for name in ("codec", "checkpoint"):
        shutil.copytree(run / name, staging / name)
    for name in ("config.json", "log.jsonl"):
        if (run / name).exists():
            shutil.copy(run / name, staging / name)
    shutil.rmtree(out / "codec_run", ignore_errors=True)
    os.replace(staging, out / "codec_run")
    step = json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    (out / "exported.txt").write_text(f"{tag} codec step {step} at {time.time() - T0:.0f}s\n")
    log("exported", tag, "codec step", step)


def codec_on_device(args, out: Path) -> None:
    """A learned video codec for the rest of the budget: the step rate first (30 steps), then a cosine
    over the steps that fit, clips rendered by all but two cores; OUT/codec_run/ is the run."""
    from happyhorse.train.codec import load_codec_config, train_codec

    workers = max(1, (os.cpu_count() or 4) - 2)
    base = {"clips_per_step": args.batch, "lr": args.lr, "num_workers": workers, "seed": args.seed}
    base["precision"] = "auto"  # bfloat16 on the GPU, whatever the config pins for its CPU figures
    init = str(ROOT / args.codec_init) if args.codec_init else None
    start = json.loads((Path(init) / "checkpoint" / "state.json").read_text())["step"] if init else 0
    rate = args.rate
    if rate is None:
        bench = Path("/tmp/codec_bench")
        shutil.rmtree(bench, ignore_errors=True)
        quick = {**base, "max_steps": start + 40, "log_every": 10, "checkpoint_every": 10**6}
        train_codec(load_codec_config(ROOT / args.codec, quick), bench, init_from=init, log=lambda *a: None)
        records = [json.loads(x) for x in (bench / "log.jsonl").read_text().splitlines()]
        times = [r["elapsed_s"] for r in records if "loss" in r]
        rate = 10 / (times[-1] - times[-2])  # the last 10 steps: workers up, caches warm
        log(f"bench: {rate:.2f} codec steps/s at {args.batch} clips a step")
    remaining = args.budget - (time.time() - T0) - 40
    run = Path("/tmp/codec_run")
    shutil.rmtree(run, ignore_errors=True)
    steps = start + int(rate * remaining * 0.95)
    cfg = load_codec_config(ROOT / args.codec, {**base, "max_steps": steps, "checkpoint_every": 250})
    log(f"codec run: steps {start} to {steps} in {remaining:.0f}s")
    stop = threading.Event()
    threading.Thread(target=export_while_training, args=(run, out, stop, export_codec), daemon=True).start()
    summary = train_codec(cfg, run, minutes=remaining / 60, init_from=init, log=lambda *a: None)
    stop.set()
    export_codec(run, out, "final")
    log("summary", json.dumps(summary)[:600])


def load_shards(run: Path) -> dict:
    """The EMA state dict from all of a run's ema_*.safetensors shards (export writes as many as it needs)."""
    from safetensors.torch import load_file

    state = {}
    for shard in sorted(run.glob("ema_*.safetensors")):
        state.update(load_file(str(shard)))
    return state


def assemble_student(run: Path, cfg: dict) -> None:
    """RUN/model from a device distillation: the teacher's codecs, the student's weights and its
    few-step sampling (the distillation loss says nothing comparable to check here)."""
    from happyhorse.components import Components
    from happyhorse.distill import student_sampling

    parts = Components.from_pretrained(cfg["teacher"])
    parts.transformer.load_state_dict(load_shards(run))
    parts.sampling = student_sampling(parts.sampling, cfg["student_steps"])
    parts.guide_transformer = None
    parts.save_pretrained(run / "model")
    last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    log(f"wrote {run / 'model'} ({cfg['student_steps']} renoise steps, no guidance); last record {last}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("budget", type=float, help="seconds of wall time for the whole command")
    parser.add_argument("batch", type=int, nargs="?", default=128)
    parser.add_argument("repeats", type=int, nargs="?", default=2, help="clip_repeats")
    parser.add_argument("lr", type=float, nargs="?", default=1e-3)
    parser.add_argument("--init", help="fine-tune: a model directory in the repo (e.g. the shipped default)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (another one: clips the first run never saw)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: a tenth, at most 500)")
    parser.add_argument("--rate", type=float, default=None, help="steps/s already measured: skip the bench")
    parser.add_argument(
        "--distill", type=int, default=None, metavar="K", help="instead: DMD-2 of the shipped model to K steps"
    )
    parser.add_argument("--recipe", default="configs/default.toml", help="the training config, in the repo")
    parser.add_argument(
        "--workers", type=int, default=None, help="training's loader workers (default: all cores but two)"
    )
    parser.add_argument("--codec", metavar="CONFIG", help="instead: train a learned video codec (train-codec config)")
    parser.add_argument("--codec-init", metavar="RUN", help="with --codec: a carried codec run to go on from")
    parser.add_argument("--fake-updates", type=int, default=5, help="with --distill: fake updates per student update")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT / ".gpu" / "site"), str(ROOT)]
    out = Path(os.environ.get("OUT", "/tmp/out"))
    out.mkdir(parents=True, exist_ok=True)
    import torch

    log("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA")
    torch.backends.cuda.matmul.allow_tf32 = True
    if args.codec is not None:  # no text encoder: the codec sees frames only
        codec_on_device(args, out)
        return
    misses = check_tokens(rebuild_minilm(ROOT / ".gpu"))
    if args.distill is not None:
        distill_on_device(args, out)
        log("prompts with unknown tokens", misses)
        return
    from happyhorse.train import load_config, train

    recipe = str(ROOT / args.recipe)
    scratch = Path("/tmp")
    base = {
        "batch_size": args.batch,
        "clip_repeats": args.repeats,
        "lr": args.lr,
        "num_workers": args.workers if args.workers is not None else max(1, (os.cpu_count() or 4) - 2),
        "sample_every": 0,
        "log_every": 20,
        "seed": args.seed,
        "init_from": str(ROOT / args.init) if args.init else None,
    }
    # 1. the step rate at this batch, after the loader's workers are up
    rate = args.rate
    if rate is None:
        bench = scratch / "bench"
        shutil.rmtree(bench, ignore_errors=True)  # a warm machine keeps /tmp between calls
        train(load_config(recipe, {**base, "checkpoint_every": 10**6}), bench, max_steps=80)
        records = [json.loads(x) for x in (bench / "log.jsonl").read_text().splitlines()]
        rate = sum(r["steps_per_s"] for r in records[-2:]) / 2
        log(f"bench: {rate:.2f} steps/s at batch {args.batch} x{args.repeats}; last {records[-1]}")
    # 2. the run: warm-up and cosine over the steps that fit the rest of the budget
    remaining = args.budget - (time.time() - T0) - 40
    steps = int(rate * remaining * 0.95)
    run = scratch / "run"
    shutil.rmtree(run, ignore_errors=True)
    warmup = args.warmup if args.warmup is not None else min(500, steps // 10)
    overrides = {"max_steps": steps, "warmup_steps": warmup, "checkpoint_every": 500}
    cfg = load_config(recipe, {**base, **overrides, "ema_decay": 0.999})
    log(f"run: {steps} steps planned in {remaining:.0f}s")
    stop = threading.Event()
    threading.Thread(target=export_while_training, args=(run, out, stop), daemon=True).start()
    summary = train(cfg, run, minutes=remaining / 60)
    stop.set()
    log(f"reached step {summary['step']} of {steps} planned")
    export(run, out, "final")
    log("summary", json.dumps(summary)[:600])
    log("prompts with unknown tokens", misses)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--assemble":
        sys.path.insert(0, str(ROOT))
        assemble(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
