"""Scaling: SePPO update time and memory against frames and resolution, for the tiny, mid-size and real-shape models.

    python bench/bench_scaling.py [--models tiny mid real] [--repeats 3] [--real-trainable lora|motion]

(run_all runs one process per model, so one model's freed memory does not blur the other's peaks)

One line per size. For each model, every size gets one memory pass (peak memory during one
update, and the activations autograd saves for backward: the part that grows with the clip),
then the sizes' updates alternate round by round for timing. The update is the trainer's
``micro_step`` with reference samples ready (``bench_step``'s "ahead" variant): sampling the
reference costs ``ref_sample_steps`` x 2 (CFG) forwards of the same shape, so it scales alike.
Times and activations are given relative to the model's smallest size.

Sizes: tiny and mid take 8 / 16 / 24 frames at their base latent, then 8 frames at twice it. ``real``
(AnimateDiff v1-5-2 at its published shape: SD-1.5's 860 M-parameter UNet and the 453 M-parameter motion
adapter, random weights; built on first use, ~1 min and 5.8 GB of disk) takes 4 / 8 / 16 frames at an 8x8
latent (64 px), then 4 frames at 16x16, to fit a CPU. It trains LoRA by default: training the motion
modules needs their gradients and AdamW state on top of the 5.3 GB of weights (about 11 GB before
activations); ``--real-trainable motion`` measures that where memory allows.
"""

from __future__ import annotations

import argparse
from typing import Any

import benchlib
import torch
from bench_step import Stepper, fill_pool

# latent sizes per model: the base and twice it (x4 for the pixel side with the tiny VAE, x8 with the others)
LATENTS = {"tiny": (16, 32), "mid": (8, 16), "real": (8, 16)}
FRAMES = {"tiny": (8, 16, 24), "mid": (8, 16, 24), "real": (4, 8, 16)}


def sizes(model: str, smoke: bool) -> list[tuple[int, int]]:
    """(frames, latent) pairs: the frame counts at the base latent size, then the larger latent."""
    if smoke:
        return [(2, 8), (4, 8)]
    (base, large), frames = LATENTS[model], FRAMES[model]
    return [*((count, base) for count in frames), (frames[0], large)]


def measure_model(args: argparse.Namespace, model: str) -> list[dict[str, Any]]:
    overrides = [*benchlib.model_overrides(model), "seppo.ref_strategy=uniform"]
    if model == "real":
        overrides.append(f"model.trainable={args.real_trainable}")
    run = benchlib.make_run(args, overrides)
    fill_pool(run, 2)
    weights = list(run.accelerator.unwrap_model(run.unet).parameters())
    peak = benchlib.PeakMemory(run.accelerator.device)
    steppers, lines = {}, []
    for frames, latent in sizes(model, args.smoke):  # increasing sizes: memory freed by one is reused by the next
        batch = benchlib.synthetic_batch(run, frames, latent, args.batch)
        stepper = Stepper(run, batch, x_ref=torch.randn_like(batch["latents"]))  # content does not change cost
        peak.reset()
        with benchlib.saved_for_backward(weights) as saved:
            stepper.ahead()
        steppers[(frames, latent)] = stepper
        lines.append(
            {
                "model": model,
                "trainable": run.config.model.trainable,
                "frames": frames,
                "latent": latent,
                "peak_mib": peak.peak_bytes() / benchlib.MiB,
                "activations_mib": saved[0] / benchlib.MiB,
            }
        )
    times = benchlib.alternate({size: s.ahead for size, s in steppers.items()}, args.repeats, run.accelerator.device)
    base = next(iter(times))
    for line, size in zip(lines, times, strict=True):
        line["step_s"] = benchlib.medians(times)[size]
        line["time_x"] = benchlib.paired_ratio(times[size], times[base])
        line["activations_x"] = line["activations_mib"] / lines[0]["activations_mib"]
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = benchlib.parser(__doc__)
    parser.add_argument("--models", nargs="+", default=["tiny", "mid"], choices=["tiny", "mid", "real"])
    parser.add_argument("--real-trainable", default="lora", choices=["lora", "motion"],
                        help="what the real-shape model trains (default lora: see above)")
    parser.add_argument("--batch", type=int, default=2)
    args = benchlib.parse(parser, argv)
    if args.smoke:
        args.models, args.repeats = ["tiny"], 1
    lines = [line for model in args.models for line in measure_model(args, model)]
    print(
        f"{'model':<6} {'frames':>6} {'latent':>6} {'step s':>8} {'time x':>7} {'act MiB':>9} {'act x':>6} {'peak MiB':>9}"
    )
    for line in lines:
        print(
            f"{line['model']:<6} {line['frames']:>6} {line['latent']:>6} {line['step_s']:8.3f} {line['time_x']:7.2f} "
            f"{line['activations_mib']:9.1f} {line['activations_x']:6.2f} {line['peak_mib']:9.0f}"
        )
    ratios = [
        benchlib.Ratio(
            f"scaling {line['model']} F={line['frames']} latent={line['latent']}: update time / base",
            line["time_x"],
            None,
            f"activations x{line['activations_x']:.2f}, peak {line['peak_mib']:.0f} MiB",
        )
        for line in lines
    ]
    return benchlib.report(f"scaling_{'_'.join(args.models)}", args, ratios, {"lines": lines})


if __name__ == "__main__":
    main()
