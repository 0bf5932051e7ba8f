"""Reference-pool memory: a pool of 7 over a pool of 1, and over a naive design, as ratios from one run.

    python bench/bench_memory.py [--model mid|tiny] [--kind K] [--trainables motion lora] [--steps 2] [--frames 8]
                                 [--pool-dtype float32|bfloat16]

(``--model tiny --kind wan|cogvideox --trainables lora``: the tiny video transformers;
``--pool-dtype bfloat16``: the snapshots as the shipped real configs keep them.)

Each variant runs a few SePPO updates (the trainer's ``setup`` and ``micro_step``, a new reference
every step) in a fresh process, since peak RSS is per process:

- pool1 / pool7: ours, 1 or 7 snapshots of the trainable tensors in the pool (host memory);
- disk7: ours, 7 snapshots with ``seppo.pool_device=disk``;
- naive: a deep-copied UNet as the reference and 7 full-UNet checkpoints in memory.

Measured for motion-module and LoRA training: live tensor bytes after the updates (on the
training device: on a GPU the pool lives in host memory and does not count, on a CPU it all
does) and peak memory during them (peak allocated on a GPU, the process's peak RSS on a CPU).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import benchlib
import torch
from bench_step import fill_pool, replaced

from seppo_video import train
from seppo_video.checkpoint import TrainerState

VARIANTS = ("pool1", "pool7", "disk7", "naive")
POOL = 7  # the paper's pool size
_MARK = "RESULT "


class NaiveReference:
    """What a straightforward implementation keeps: a second UNet, and each pool entry as a full checkpoint."""

    def __init__(self, run):
        unet = run.accelerator.unwrap_model(run.unet)
        self.module = copy.deepcopy(unet).requires_grad_(False)
        self.checkpoints = {}
        for snapshot in run.pool.snapshots:
            full = {**unet.state_dict(), **snapshot.tensors}
            self.checkpoints[snapshot.step] = {name: tensor.detach().clone() for name, tensor in full.items()}
            snapshot.tensors = {}  # the pool now only tells which step to use; its tensors live in the checkpoints
        self.loaded: int | None = None

    def __call__(self, run, index: int) -> torch.nn.Module:
        step = run.pool.snapshots[index].step
        if step != self.loaded:
            self.module.load_state_dict(self.checkpoints[step])
            self.loaded = step
        return self.module


def variant(args: argparse.Namespace) -> dict[str, int]:
    """One variant's live tensor bytes and peak memory (run in its own process)."""
    storage = "disk" if args.variant == "disk7" else "cpu"
    overrides = [f"model.trainable={args.trainable}", "seppo.ref_strategy=uniform", f"seppo.pool_device={storage}",
                 f"seppo.pool_dtype={args.pool_dtype}"]
    run = benchlib.make_run(args, [*benchlib.model_overrides(args.model, args.kind), *overrides])
    fill_pool(run, 1 if args.variant == "pool1" else POOL)
    naive = NaiveReference(run) if args.variant == "naive" else train.reference_module
    batch = benchlib.synthetic_batch(run, args.frames, args.latent, args.batch)
    state, peak = TrainerState(), benchlib.PeakMemory(run.accelerator.device)
    peak.reset()
    with replaced("reference_module", naive):
        for _ in range(args.steps):
            train.micro_step(run, batch, state)
            state.step += 1
    return {
        "tensor_bytes": benchlib.live_tensor_bytes(run.accelerator.device.type),
        "peak_bytes": peak.peak_bytes(),
        "trainable_bytes": sum(p.numel() * p.element_size() for _, p in run.adapter.named_trainable_parameters()),
        "unet_bytes": sum(p.numel() * p.element_size() for p in run.adapter.unet.parameters()),
    }


def in_child(args: argparse.Namespace, name: str, trainable: str) -> dict[str, int]:
    """``variant`` in a fresh interpreter running this script."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--variant", name, "--trainable", trainable]
    for key in ("device", "dtype", "attention", "threads", "model", "kind", "steps", "frames", "latent", "batch",
                "pool_dtype"):
        argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    done = subprocess.run(argv, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} ({trainable}) failed:\n{done.stderr[-3000:]}")
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith(_MARK))
    return json.loads(line[len(_MARK) :])


def measure(args: argparse.Namespace) -> tuple[list[benchlib.Ratio], dict[str, Any]]:
    ratios, details = [], {}
    for trainable in args.trainables:
        found = {name: in_child(args, name, trainable) for name in VARIANTS}
        details[trainable] = found
        label = f"{args.model} {args.kind} {trainable}" + ("" if args.pool_dtype == "float32" else f", {args.pool_dtype} pool")
        for key, what in (("tensor_bytes", "tensor bytes"), ("peak_bytes", "peak RSS/alloc")):
            ratios += [
                benchlib.Ratio(
                    f"pool 7 / pool 1, {what} ({label})", found["pool7"][key] / found["pool1"][key], "<= 1.05"
                ),
                benchlib.Ratio(
                    f"pool 7 on disk / pool 1, {what} ({label})", found["disk7"][key] / found["pool1"][key], "<= 1.05"
                ),
                benchlib.Ratio(
                    f"naive / ours (pool 7), {what} ({label})",
                    found["naive"][key] / found["pool7"][key],
                    None,
                    "deep-copied UNet + 7 full checkpoints",
                ),
            ]
    return ratios, details


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = benchlib.parser(__doc__)
    parser.add_argument("--model", default="mid", choices=["tiny", "mid"])
    parser.add_argument("--kind", default="animatediff", choices=benchlib.KINDS)
    parser.add_argument("--trainables", nargs="+", default=["motion", "lora"], choices=["motion", "lora"])
    parser.add_argument("--steps", type=int, default=2, help="SePPO updates per variant")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--latent", type=int, default=8, help="latent height and width")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--pool-dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="seppo.pool_dtype of the snapshots (the shipped real configs: bfloat16)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # set in the child processes
    parser.add_argument("--trainable", default="motion", help=argparse.SUPPRESS)
    args = benchlib.parse(parser, argv)
    if args.variant:
        print(_MARK + json.dumps(variant(args)))
        return None
    if args.smoke:
        args.model, args.steps, args.frames, args.latent = "tiny", 1, 2, 8
        args.trainables = args.trainables[:1]
    ratios, details = measure(args)
    name = benchlib.result_name("memory", args.model, args.kind)
    return benchlib.report(name + ("" if args.pool_dtype == "float32" else f"_{args.pool_dtype}_pool"), args, ratios,
                           details)


if __name__ == "__main__":
    main()
