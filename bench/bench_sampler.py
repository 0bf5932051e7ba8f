"""Reference-sampler throughput: our latent sampler over the diffusers pipeline, as ratios from one run.

    python bench/bench_sampler.py [--kind animatediff|modelscope] [--model tiny|mid] [--frames 8] [--latent 16]

Three ways to the same reference latents (same prompt embeddings, seeds, DDIM steps and
guidance), alternated round by round:

- ours: ``seppo_video.seppo.sampler.sample_latents``, as the trainer calls it;
- pipeline: the diffusers pipeline with ``output_type="latent"``;
- decoded: the pipeline's decoded video re-encoded by the VAE (what a naive implementation does).

Latents per second of ours over each [targets >= 1.0 and >= 1.5]. Ours and the pipeline's
latents are compared once (the largest difference goes into the JSON).
"""

from __future__ import annotations

import argparse
from typing import Any

import benchlib
import torch
from einops import rearrange

from seppo_video.seppo.sampler import sample_latents


def measure(args: argparse.Namespace) -> tuple[list[benchlib.Ratio], dict[str, Any]]:
    adapter = benchlib.load_model(args, args.model, args.kind)
    pipe = adapter.build_pipeline()
    pipe.set_progress_bar_config(disable=True)
    seeds = list(range(args.batch))
    embeds = adapter.encode_prompt([f"a flower blooming, time-lapse {i}" for i in seeds])
    negative = adapter.encode_prompt([""]).expand(args.batch, -1, -1)
    settings = {"num_inference_steps": args.steps, "guidance_scale": args.guidance}
    pixels = args.latent * pipe.vae_scale_factor

    def ours() -> torch.Tensor:
        return sample_latents(
            adapter,
            embeds,
            negative,
            seeds=seeds,
            num_frames=args.frames,
            latent_size=(args.latent, args.latent),
            **settings,
        )

    def pipeline(output_type: str) -> torch.Tensor:
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        return pipe(
            prompt_embeds=embeds,
            negative_prompt_embeds=negative,
            num_frames=args.frames,
            height=pixels,
            width=pixels,
            generator=generators,
            output_type=output_type,
            **settings,
        ).frames

    def decoded() -> torch.Tensor:
        video = pipeline("pt")  # [B, F, C, H, W] in [0, 1]
        return adapter.encode_video(rearrange(video, "b f c h w -> b c f h w") * 2 - 1)

    difference = (ours() - pipeline("latent")).abs().max().item()
    times = benchlib.alternate(
        {"ours": ours, "pipeline": lambda: pipeline("latent"), "decoded": decoded}, args.repeats, args.device
    )
    label = f"{args.model} {args.kind}"
    ratios = [
        benchlib.Ratio(
            f"sampler latents/s, ours / pipeline latent ({label})",
            benchlib.paired_ratio(times["pipeline"], times["ours"]),
            ">= 1.0",
        ),
        benchlib.Ratio(
            f"sampler latents/s, ours / pipeline decode + VAE encode ({label})",
            benchlib.paired_ratio(times["decoded"], times["ours"]),
            ">= 1.5",
        ),
    ]
    details = {
        "median_s": benchlib.medians(times),
        "latents_per_s": {name: args.batch / s for name, s in benchlib.medians(times).items()},
        "max_abs_diff_ours_vs_pipeline": difference,
        "shape": {"batch": args.batch, "frames": args.frames, "latent": args.latent, "steps": args.steps},
    }
    return ratios, details


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = benchlib.parser(__doc__)
    parser.add_argument("--model", default="tiny", choices=["tiny", "mid"])
    parser.add_argument("--kind", default="animatediff", choices=["animatediff", "modelscope"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--latent", type=int, default=16, help="latent height and width")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="DDIM steps (seppo.ref_sample_steps)")
    parser.add_argument("--guidance", type=float, default=7.5)
    args = benchlib.parse(parser, argv)
    if args.smoke:
        args.frames, args.latent, args.steps, args.repeats = 2, 8, 2, 1
    ratios, details = measure(args)
    return benchlib.report(f"sampler_{args.model}_{args.kind}", args, ratios, details)


if __name__ == "__main__":
    main()
