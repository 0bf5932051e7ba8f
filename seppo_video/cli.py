"""``seppo-video``: one command, one subcommand per job.

Each subcommand parses its own flags here and hands over to the module that
does the work; heavy imports happen only inside the chosen subcommand, so
``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
examples:
  seppo-video train                                   # tiny SePPO demo on CPU
  seppo-video train --config configs/tiny.yaml train.max_steps=20 seppo.method=sft
  seppo-video train --config configs/tiny.yaml --resume latest
  seppo-video calibrate-beta --config configs/tiny.yaml    # a measured scale for seppo.beta
  seppo-video sample --model runs/tiny/export --prompt "ice melting, time-lapse" --out samples/
  seppo-video eval generate --model runs/tiny/export --prompts data/chronomagic_bench_sample.csv --out bench/
  seppo-video view --runs runs/tiny
"""


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train with SePPO or a baseline (sft, dpo, spin, ditto)",
        description="Train a text-to-video model from winning samples. Without --config, runs the tiny demo "
        "(builds a random-init model and synthetic clips, trains SePPO on CPU, exports, samples).",
    )
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: the built-in tiny demo, same as configs/tiny.yaml)")
    p.add_argument("--resume", default=None, metavar="latest|PATH", help="continue from the newest or a given checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_steps=10")
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from seppo_video.config import load_config
    from seppo_video.train import train

    config = load_config(args.config, args.overrides)
    run = train(config, resume=args.resume)
    if config.data.kind == "world" and run.accelerator.is_main_process:
        from seppo_video.study.before_after import report_before_after

        report_before_after(config)  # held-out reward of the base model and of the trained policy
    return 0


def _add_make_world_base(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-world-base",
        help="pretrain the synthetic world's base model (model.pretrained: world)",
        description="A random-init tiny ModelScope or Wan model (the config's model.kind) with the world's words "
        "as tokens, trained with SFT on a mixture of good and defective world clips (the config's settings), "
        "written as a diffusers pipeline folder with the recipe in world_base.json. The default --out is the "
        "copy the package ships for that kind.",
    )
    p.add_argument("--config", type=Path, required=True,
                   help="training config, e.g. configs/world_base.yaml or configs/world_base_wan.yaml")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the package's copy for the kind)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads; the weights depend on it (default 2)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_steps=100")
    p.set_defaults(handler=_run_make_world_base)


def _run_make_world_base(args: argparse.Namespace) -> int:
    from seppo_video.study.base import build_world_base

    if args.threads < 1:
        print("seppo-video make-world-base: --threads must be >= 1", file=sys.stderr)
        return 2
    out = build_world_base(args.config, args.out, threads=args.threads, overrides=args.overrides)
    print(f"wrote {out}")
    return 0


def _add_calibrate_beta(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate-beta",
        help="measure the scale of d_w - s*d_ref and recommend seppo.beta",
        description="From theta_0, one optimizer step at the configured learning rate per batch, then "
        "|d_w - s*d_ref| on the next batch's pairs; prints that measurement and the seppo.beta that puts the "
        "median pair at |inside| = --target after one step (docs/training_health.md).",
    )
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: the built-in tiny demo)")
    p.add_argument("--batches", type=int, default=4, help="steps measured, each followed by a held-out batch")
    p.add_argument("--target", type=float, default=1.0,
                   help="median |inside| wanted after one step (default 1: 27%% of the gradient left)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. seppo.method=dpo")
    p.set_defaults(handler=_run_calibrate_beta)


def _run_calibrate_beta(args: argparse.Namespace) -> int:
    from seppo_video.calibrate import calibrate_beta
    from seppo_video.config import load_config

    if args.batches < 1 or not args.target > 0:
        print("seppo-video calibrate-beta: --batches must be >= 1 and --target positive", file=sys.stderr)
        return 2
    config = load_config(args.config, args.overrides)
    print(calibrate_beta(config, batches=args.batches, target=args.target).report())
    return 0


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="sample videos from a base model or an export",
        description="Write mp4 (and gif) samples. --model is an export folder, a diffusers pipeline folder, "
        "an AnimateDiff folder (sd/ + motion_adapter/), or tiny:animatediff|modelscope|sd.",
    )
    p.add_argument("--model", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    group.add_argument("--prompts-file", type=Path, help="a text file with one prompt per line")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=25, help="denoising steps")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--gif", action="store_true", help="also write a gif next to each mp4")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.set_defaults(handler=_run_sample)


def _run_sample(args: argparse.Namespace) -> int:
    from seppo_video.sample import SampleSettings, sample_to_folder

    if args.prompts_file:
        prompts = [line.strip() for line in args.prompts_file.read_text().splitlines() if line.strip()]
    else:
        prompts = args.prompt
    settings = SampleSettings(args.frames, args.height, args.width, args.steps, args.guidance, args.fps)
    sample_to_folder(args.model, prompts, args.seeds, settings, args.out, gif=args.gif, device=args.device)
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint's policy weights in diffusers format",
        description="Write a MotionAdapter folder, a LoRA (load_lora_weights) or a full UNet from a training "
        "checkpoint, with a model card.",
    )
    p.add_argument("--run", type=Path, required=True, help="the run folder (its config.yaml is read)")
    p.add_argument("--checkpoint", default="latest", metavar="latest|PATH")
    p.add_argument("--out", type=Path, default=None, help="default: <run>/export")
    p.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from seppo_video.train import export_checkpoint

    path = export_checkpoint(args.run, args.checkpoint, args.out)
    print(f"exported to {path}")
    return 0


# The real-shape variants of each kind (the first is the default); kept here so that checking
# --variant imports nothing heavy. seppo_video.models.real.VARIANTS is the same table.
REAL_VARIANTS = {"animatediff": ("v1-5-2", "v3"), "sd": ("sd15", "sd21-v"), "modelscope": ("ms-1.7b",),
                 "wan": ("t2v-1.3b",), "cogvideox": ("2b",), "ltx": ("0.9.0",)}


def _add_make_tiny(sub: argparse._SubParsersAction) -> None:
    variants = "; ".join(f"{kind}: {' | '.join(names)}" for kind, names in REAL_VARIANTS.items())
    p = sub.add_parser(
        "make-tiny",
        help="write a random-init model in a real diffusers layout (tiny, or the real published shapes)",
        description="AnimateDiff: OUT/sd (SD-1.5 pipeline) + OUT/motion_adapter; ModelScope: a "
        "TextToVideoSDPipeline folder; SD: a StableDiffusionPipeline folder; Wan, CogVideoX, LTX: a WanPipeline / "
        "CogVideoXPipeline / LTXPipeline folder. No download. "
        "--shape tiny (default): tiny widths, trains in seconds on a CPU. --shape real: the published "
        "architectures (widths, heads, motion modules, VAE, scheduler, prediction type) with random "
        "weights and a 2-layer text encoder; several GB on disk.",
    )
    p.add_argument("--kind", choices=["animatediff", "modelscope", "sd", "wan", "cogvideox", "ltx"], required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", choices=["tiny", "real"], default="tiny")
    p.add_argument("--variant", default=None,
                   help=f"with --shape real, which published model (default: the first) -- {variants}")
    p.set_defaults(handler=_run_make_tiny)


def _variant_error(args: argparse.Namespace) -> str | None:
    """Why ``--variant`` does not fit ``--kind`` / ``--shape`` (None: it fits)."""
    if args.shape == "real" and args.kind not in REAL_VARIANTS:
        return f"--shape real: no real-shape {args.kind} model (real shapes: {', '.join(REAL_VARIANTS)})"
    if args.variant is None:
        return None
    allowed = REAL_VARIANTS.get(args.kind, ())
    if args.shape != "real":
        return f"--variant applies to --shape real only (the {args.kind} variants: {', '.join(allowed)})"
    if args.variant not in allowed:
        return f"--variant {args.variant!r} is not a variant of --kind {args.kind} (choose from {', '.join(allowed)})"
    return None


def _run_make_tiny(args: argparse.Namespace) -> int:
    problem = _variant_error(args)
    if problem:
        print(f"seppo-video make-tiny: {problem}", file=sys.stderr)
        return 2
    if args.shape == "real":
        from seppo_video.models.real import make_real_shape

        print(f"wrote {make_real_shape(args.kind, args.out, args.variant, seed=args.seed)}")
        return 0
    from seppo_video.models.tiny import make_tiny

    print(f"wrote {make_tiny(args.kind, args.out, seed=args.seed)}")
    return 0


def _add_make_demo_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-demo-data",
        help="write a small synthetic time-lapse data set (mp4 + ChronoMagic-style CSV)",
        description="Synthetic time-lapse clips (growing shapes, day-to-night sweeps, melting) with captions "
        "in the ChronoMagic annotation format, plus Pick-a-Pic-style image pairs.",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--num-clips", type=int, default=12)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_run_make_demo_data)


def _run_make_demo_data(args: argparse.Namespace) -> int:
    from seppo_video.data.demo import make_demo_data

    out = make_demo_data(args.out, num_clips=args.num_clips, num_frames=args.frames, size=args.size, seed=args.seed)
    print(f"wrote demo data to {out}")
    return 0


def _add_cache_latents(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache-latents",
        help="encode the training videos once with the VAE (and prompts with the text encoder)",
        description="Writes safetensors shards and a manifest to --out (default: the config's data.latent_cache); "
        "training reads the cache when data.latent_cache points at it.",
    )
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(handler=_run_cache_latents)


def _run_cache_latents(args: argparse.Namespace) -> int:
    from seppo_video.config import load_config
    from seppo_video.data.latent_cache import cache_latents_from_config

    config = load_config(args.config, args.overrides)
    print(f"latent cache ready at {cache_latents_from_config(config, args.out)}")
    return 0


# Subcommands with their own full argument parsers: everything after the name goes to them.
DELEGATED = {
    "eval": ("seppo_video.evaluation.bench", "ChronoMagic-Bench: generate, score, report (= eval/chronomagic_bench.py)"),
    "view": ("seppo_video.viewer.app", "Gradio viewer over run folders (needs the 'viewer' extra)"),
}


def _add_delegated(sub: argparse._SubParsersAction) -> None:
    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)


def _delegate(module: str, argv: list[str]) -> int:
    import importlib

    return int(importlib.import_module(module).main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seppo-video",
        description="SePPO preference alignment for text-to-video diffusion (AnimateDiff, ModelScope, SD).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_train, _add_calibrate_beta, _add_sample, _add_export, _add_delegated, _add_make_tiny,
                _add_make_world_base, _add_make_demo_data, _add_cache_latents):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        return _delegate(DELEGATED[argv[0]][0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from seppo_video.checkpoint import CheckpointError
    from seppo_video.config import ConfigError
    from seppo_video.data import DataError

    try:
        return args.handler(args)
    except ConfigError as err:
        print(f"seppo-video {args.command}: config error: {err}", file=sys.stderr)
        return 2
    except DataError as err:
        print(f"seppo-video {args.command}: data error: {err}", file=sys.stderr)
        return 2
    except CheckpointError as err:  # a failed checkpoint write, or no trustworthy checkpoint to resume
        print(f"seppo-video {args.command}: checkpoint error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:  # a missing checkpoint, model folder or prompts file
        print(f"seppo-video {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
