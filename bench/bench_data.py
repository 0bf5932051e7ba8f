"""Data throughput: decord over imageio, and training with the latent cache over decoding each step.

    python bench/bench_data.py [--model mid|tiny] [--clips 6] [--clip-frames 48] [--clip-size 256] [--frames 8]

- decoding: the same synthetic mp4 clips (the demo scenes, written at ``--clip-size``) read with
  each backend of ``seppo_video.data.video.read_frames``: ``--frames`` frames spread over each whole
  clip, as training samples them; decoded frames per second of decord over imageio;
- training: SePPO steps on the demo clips (the trainer's ``setup``, ``iterate_batches`` and
  ``micro_step``) from a latent cache built by ``build_latent_cache`` over the same steps decoding
  mp4s and VAE-encoding winners every step; steps per second, and the data part alone (batch +
  winner latents).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import benchlib

from seppo_video.checkpoint import TrainerState
from seppo_video.data import build_latent_cache, model_id_for
from seppo_video.data.demo import make_demo_data
from seppo_video.data.video import BACKEND, read_frames, uniform_indices
from seppo_video.train import iterate_batches, micro_step, winner_latents


def decoding(args: argparse.Namespace, root: Path) -> tuple[list[benchlib.Ratio], dict[str, Any]]:
    make_demo_data(root, num_clips=args.clips, num_frames=args.clip_frames, size=args.clip_size)
    clips = sorted((root / "videos").glob("*[0-9].mp4"))  # winners only
    indices = uniform_indices(args.clip_frames, args.frames)

    def read_all(backend: str) -> None:
        for clip in clips:
            read_frames(clip, indices, backend=backend)

    if BACKEND != "decord":
        return [], {"decoding": "decord is not installed: nothing to compare"}
    times = benchlib.alternate({b: lambda b=b: read_all(b) for b in ("decord", "imageio")}, args.repeats)
    frames = len(clips) * args.frames
    ratio = benchlib.Ratio(
        "decoded frames/s, decord / imageio",
        benchlib.paired_ratio(times["imageio"], times["decord"]),
        None,
        f"{args.frames} of {args.clip_frames} frames, {args.clip_size}px",
    )
    return [ratio], {"decode_frames_per_s": {b: frames / s for b, s in benchlib.medians(times).items()}}


class Steps:
    """SePPO steps on one run, its batches drawn by the trainer's own data order."""

    def __init__(self, run):
        self.run, self.state = run, TrainerState()
        self.batches = iterate_batches(run, self.state)
        run.pool.add(0, run.adapter.trainable_state())

    def step(self) -> None:
        micro_step(self.run, next(self.batches), self.state)
        self.state.step += 1

    def data(self) -> None:
        winner_latents(self.run, next(self.batches))


def training(args: argparse.Namespace, root: Path) -> tuple[list[benchlib.Ratio], dict[str, Any]]:
    overrides = [*benchlib.model_overrides(args.model), "data.kind=demo", f"data.num_frames={args.frames}"]
    decoding_run = benchlib.make_run(args, overrides)
    cache = build_latent_cache(
        decoding_run.dataset, decoding_run.adapter, root / "latents", model_id=model_id_for(decoding_run.config.model)
    )
    decode, cached = Steps(decoding_run), Steps(benchlib.make_run(args, [*overrides, f"data.latent_cache={cache}"]))
    times = benchlib.alternate(
        {
            "decode_step": decode.step,
            "cached_step": cached.step,
            "decode_data": decode.data,
            "cached_data": cached.data,
        },
        args.repeats,
        args.device,
    )
    ratios = [
        benchlib.Ratio(
            "training steps/s, latent cache / decoding each step",
            benchlib.paired_ratio(times["decode_step"], times["cached_step"]),
            None,
            f"{args.model} model, 64px clips; full SePPO step incl. ref sampling",
        ),
        benchlib.Ratio(
            "data time per step, decoding each step / latent cache",
            benchlib.paired_ratio(times["decode_data"], times["cached_data"]),
            None,
            "batch + winner latents only",
        ),
    ]
    return ratios, {"training_median_s": benchlib.medians(times)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = benchlib.parser(__doc__)
    parser.add_argument("--model", default="mid", choices=["tiny", "mid"], help="for the training steps")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--clip-frames", type=int, default=48)
    parser.add_argument("--clip-size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8, help="frames per training sample")
    args = benchlib.parse(parser, argv)
    if args.smoke:
        args.model, args.clips, args.clip_frames, args.clip_size, args.frames, args.repeats = "tiny", 2, 8, 32, 2, 1
    with tempfile.TemporaryDirectory(prefix="seppo-bench-data-") as tmp:
        decode_ratios, decode_details = decoding(args, Path(tmp) / "clips")
        train_ratios, train_details = training(args, Path(tmp))
    return benchlib.report("data", args, decode_ratios + train_ratios, {**decode_details, **train_details})


if __name__ == "__main__":
    main()
