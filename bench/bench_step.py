"""SePPO step overhead, and the share of the step spent sampling references, as ratios from one run.

    python bench/bench_step.py [--model tiny|mid] [--kind K] [--trainable T] [--frames 8] [--latent 16] [--batch 2]

(``--kind wan|cogvideox`` with ``--trainable lora|full``: the tiny video transformers; ``--frames`` counts
latent frames.)

Three variants alternate round by round on the trainer's own objects (``setup``, ``micro_step``):

- full: one SePPO update as the trainer runs it; its reference sampling is timed on the side;
- ahead: the same update with the reference samples already made (what an ahead-of-time
  sample cache would give: ``second_samples`` becomes a lookup);
- floor: the unavoidable work alone: policy forward + backward on winners and reference samples
  (one 2B batch, as the trainer does) and the reference forward without grad on both.

``ahead / floor`` is the update's overhead excluding reference sampling [target <= 1.10]: noise
draws, loss, the accelerate wrappers, the finite-loss check, gradient clipping, the optimizer step
and swapping the chosen reference's tensors in. The reference changes every round, as in training.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import benchlib
import torch

from seppo_video import train
from seppo_video.checkpoint import TrainerState
from seppo_video.seppo.loss import per_sample_error
from seppo_video.seppo.noise import noise_pairs
from seppo_video.seppo.reference import SwappedModule


@contextlib.contextmanager
def replaced(name: str, replacement: Callable[..., Any]) -> Iterator[None]:
    """``seppo_video.train.<name>`` swapped for ``replacement`` (the trainer looks it up at call time)."""
    original = getattr(train, name)
    setattr(train, name, replacement)
    try:
        yield
    finally:
        setattr(train, name, original)


def fill_pool(run, snapshots: int) -> None:
    """theta_0 and ``snapshots - 1`` later versions (perturbed copies: only their size matters)."""
    state = run.adapter.trainable_state()
    for step in range(snapshots):
        run.pool.add(step, {name: tensor + 1e-3 * step for name, tensor in state.items()})


class Stepper:
    """The three variants on one run and one batch; ``state.step`` advances so the reference changes."""

    def __init__(self, run, batch: dict[str, Any], x_ref: torch.Tensor | None = None):
        """``x_ref``: the ready reference samples (default: sampled once here, by the trainer)."""
        self.run, self.batch, self.state = run, batch, TrainerState()
        self.sampling: list[float] = []
        if x_ref is None:
            reference = train.reference_module(run, 0)
            x_ref = train.second_samples(run, batch, batch["prompt_embeds"], reference, self.state, batch["latents"])
        self.x_ref = x_ref
        generator = torch.Generator().manual_seed(0)
        self.pairs = noise_pairs(run.noise, batch["latents"], self.x_ref, generator)
        self.noisy, self.t2, self.target2 = self.pairs.noisy, self.pairs.timesteps, self.pairs.target
        self.embeds2 = torch.cat([batch["prompt_embeds"], batch["prompt_embeds"]])
        # The floor's own reference, swapped in once: swapping per step is overhead, not floor.
        self.reference = SwappedModule(run.accelerator.unwrap_model(run.unet), run.pool.get(0))

    def _update(self) -> None:
        train.micro_step(self.run, self.batch, self.state)
        self.state.step += 1

    def full(self) -> None:
        original = train.second_samples

        def timed(*args, **kwargs):
            start = benchlib.now(self.run.accelerator.device)
            samples = original(*args, **kwargs)
            self.sampling.append(benchlib.now(self.run.accelerator.device) - start)
            return samples

        with replaced("second_samples", timed):
            self._update()

    def ahead(self) -> None:
        with replaced("second_samples", lambda *args, **kwargs: self.x_ref):
            self._update()

    def floor(self) -> None:
        run, unet = self.run, self.run.accelerator.unwrap_model(self.run.unet)
        device = run.accelerator.device
        with torch.autocast(
            device.type, dtype=run.autocast_dtype or torch.float32, enabled=run.autocast_dtype is not None
        ):
            prediction = run.adapter.predict(self.noisy, self.t2, self.embeds2, unet=unet)
        per_sample_error(prediction, self.target2).mean().backward()
        train.reference_errors(
            run.adapter, self.reference, self.pairs, self.embeds2, run.autocast_dtype, run.config.seppo.ref_batch_chunk
        )
        unet.zero_grad(set_to_none=True)


def measure(args: argparse.Namespace) -> tuple[list[benchlib.Ratio], dict[str, Any]]:
    run = benchlib.make_run(
        args,
        [
            *benchlib.model_overrides(args.model, args.kind),
            f"model.trainable={args.trainable}",
            "seppo.ref_strategy=uniform",
        ],
    )
    fill_pool(run, args.pool)
    stepper = Stepper(run, benchlib.synthetic_batch(run, args.frames, args.latent, args.batch))
    times = benchlib.alternate(
        {"full": stepper.full, "ahead": stepper.ahead, "floor": stepper.floor}, args.repeats, run.accelerator.device
    )
    sampling = stepper.sampling[-args.repeats :]  # the warm-up round's sample is not timed above either
    without_sampling = [full - s for full, s in zip(times["full"], sampling, strict=True)]
    label = f"{args.model} {args.kind} {args.trainable}"
    ratios = [
        benchlib.Ratio(
            f"step overhead, update w/o ref sampling / unavoidable ({label})",
            benchlib.paired_ratio(times["ahead"], times["floor"]),
            "<= 1.10",
            "policy fwd+bwd on winner+ref batch, ref fwd no-grad on both",
        ),
        benchlib.Ratio(
            f"step overhead, full step - timed sampling / unavoidable ({label})",
            benchlib.paired_ratio(without_sampling, times["floor"]),
            None,
            "cross-check of the above",
        ),
        benchlib.Ratio(
            f"ref sampling share of the step, no sample cache ({label})",
            benchlib.paired_ratio(sampling, times["full"]),
            None,
            f"{run.config.seppo.ref_sample_steps} {run.adapter.sampler_class_name} steps with CFG",
        ),
        benchlib.Ratio(
            f"step speed-up with ahead-of-time ref samples ({label})",
            benchlib.paired_ratio(times["full"], times["ahead"]),
            None,
            "sampling share with such a cache: 0 (moved off the step)",
        ),
    ]
    details = {
        "median_s": benchlib.medians({**times, "sampling": sampling}),
        "shape": {"batch": args.batch, "frames": args.frames, "latent": args.latent, "pool": args.pool},
        "trainable_params": sum(p.numel() for _, p in run.adapter.named_trainable_parameters()),
        "unet_params": sum(p.numel() for p in run.adapter.unet.parameters()),
    }
    return ratios, details


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = benchlib.parser(__doc__)
    parser.add_argument("--model", default="tiny", choices=["tiny", "mid"])
    parser.add_argument("--kind", default="animatediff", choices=benchlib.KINDS)
    parser.add_argument("--trainable", default="motion", choices=["motion", "lora", "full"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--latent", type=int, default=16, help="latent height and width")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--pool", type=int, default=7, help="snapshots in the reference pool")
    args = benchlib.parse(parser, argv)
    if args.smoke:
        args.frames, args.latent, args.repeats = 2, 8, 2
    ratios, details = measure(args)
    return benchlib.report(benchlib.result_name("step", args.model, args.kind), args, ratios, details)


if __name__ == "__main__":
    main()
