"""``seppo-video eval`` (same as ``python eval/chronomagic_bench.py``): ChronoMagic-Bench end to end.

Subcommands: ``generate`` (videos in the benchmark layout), ``score``
(per-video records, resumable), ``report`` (merged figures with intervals:
JSON, leaderboard CSV, markdown), ``compare`` (paired difference of two runs)
``run`` (all of it from one eval config) and ``doctor`` (checks every file a config names).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from seppo_video.config import ConfigError
from seppo_video.evaluation.errors import EvalError

logger = logging.getLogger("seppo_video.evaluation")

EXAMPLES = """\
examples:
  seppo-video eval run --config configs/eval_tiny.yaml
  seppo-video eval doctor --config configs/eval_chronomagic.yaml   # every configured file, in seconds
  seppo-video eval generate --model runs/tiny/export --name seppo --prompts data/chronomagic_bench_sample.csv \\
      --out bench/videos --seeds 0 1 2 --steps 25 --frames 16 --size 512
  seppo-video eval score --videos bench/videos/seppo --prompts data/chronomagic_bench_sample.csv \\
      --out bench/scores --config configs/eval_chronomagic.yaml --reference-videos /data/chronomagic/videos
  seppo-video eval score ... --metrics chscore        # fails clearly if CoTracker2 is not configured
  seppo-video eval report --scores bench/scores/animatediff bench/scores/seppo --out bench/report
  seppo-video eval compare --a bench/scores/seppo --b bench/scores/animatediff --out bench/report
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="eval config YAML (weights, reference, stats)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. weights.umt.path=/ckpt/umt.pt (repeatable)")


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="sample one video per prompt and seed into <out>/<name>/<set>/<videoid>.mp4")
    p.add_argument("--model", required=True, help="export folder, diffusers folder, AnimateDiff folder or tiny:<kind>")
    p.add_argument("--name", default=None, help="model folder name (default: from --model)")
    p.add_argument("--prompts", type=Path, required=True, help="benchmark prompt CSV")
    p.add_argument("--out", type=Path, required=True, help="video root")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one sample set per seed")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=None, help="height and width")
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--max-prompts", type=int, default=None, help="only the first N prompts (smoke runs)")
    p.set_defaults(run=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from seppo_video.evaluation.generate import generate_videos
    from seppo_video.evaluation.prompts import read_prompts
    from seppo_video.sample import SampleSettings

    height, width = (args.size, args.size) if args.size else (args.height, args.width)
    settings = SampleSettings(args.frames, height, width, args.steps, args.guidance, args.fps)
    prompts = read_prompts(args.prompts, args.max_prompts)
    result = generate_videos(args.model, prompts, args.seeds, settings, args.out, args.name, args.device)
    print(f"{result.folder}: {result.written} written, {result.skipped} already there")
    return 0


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="per-video records of every metric for one model's videos (resumable)")
    p.add_argument("--videos", type=Path, required=True, help="<video root>/<model>: numbered set folders or videos")
    p.add_argument("--prompts", type=Path, required=True, help="benchmark prompt CSV")
    p.add_argument("--out", type=Path, required=True, help="scores root (records go to <out>/<model>)")
    _add_common(p)
    _add_metric_options(p)
    p.add_argument("--reference-videos", type=Path, default=None, help="folder of real clips <videoid>.mp4")
    p.add_argument("--reference-umt-features", type=Path, default=None,
                   help="the benchmark's UMT reference features (UMT/gt_feature/gt1*_feats.pt)")
    p.add_argument("--device", default=None)
    p.add_argument("--max-prompts", type=int, default=None)
    p.set_defaults(run=_run_score)


def _add_metric_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", nargs="+", default=None, metavar="NAME",
                   help="only these (comma or space separated); a requested metric that cannot run is an error")
    p.add_argument("--gpt4o-client", default=None, metavar="MODULE:CALLABLE",
                   help="enable GPT4o-MTScore with this client (a remote, paid call; off by default)")
    p.add_argument("--overwrite", action="store_true", help="recompute records instead of resuming")


def _metric_config(args: argparse.Namespace, extra: list[str]) -> Any:
    from seppo_video.evaluation.config import load_eval_config

    overrides = list(args.overrides) + extra
    if args.gpt4o_client:
        overrides += ["gpt4o.enabled=true", f"gpt4o.client={args.gpt4o_client}"]
    return load_eval_config(args.config, overrides)


def _run_score(args: argparse.Namespace) -> int:
    from seppo_video.evaluation.metrics.registry import parse_metric_names
    from seppo_video.evaluation.prompts import read_prompts
    from seppo_video.evaluation.score import score_videos
    from seppo_video.evaluation.tiny_extractors import resolve_tiny

    extra = [f"scoring.device={args.device}"] if args.device else []
    extra += [f"reference.videos={args.reference_videos}"] if args.reference_videos else []
    extra += [f"reference.umt_features={args.reference_umt_features}"] if args.reference_umt_features else []
    config = _metric_config(args, extra)
    prompts = read_prompts(args.prompts, args.max_prompts)
    resolve_tiny(config, [p.videoid for p in prompts])
    result = score_videos(args.videos, prompts, args.out, config, parse_metric_names(args.metrics),
                          args.overwrite, str(args.prompts))
    print(f"scores written to {result.folder}" + (f" (skipped: {', '.join(result.skipped)})" if result.skipped else ""))
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="merge scores: report.json, leaderboard.csv, report.md")
    p.add_argument("--scores", type=Path, nargs="+", required=True, help="one <scores root>/<model> folder per run")
    p.add_argument("--out", type=Path, required=True)
    _add_common(p)
    p.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from seppo_video.evaluation.config import load_eval_config
    from seppo_video.evaluation.report import ModelScores, summarize_run, write_report

    config = load_eval_config(args.config, args.overrides)
    runs = [summarize_run(ModelScores(folder), config.stats) for folder in args.scores]
    paths = write_report(runs, args.out, {"stats": asdict(config.stats), "scores": [str(s) for s in args.scores]})
    print(f"report written to {paths['markdown']}")
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="paired difference A - B on the same prompts and seeds, with intervals")
    p.add_argument("--a", type=Path, required=True, help="<scores root>/<model> of run A")
    p.add_argument("--b", type=Path, required=True, help="<scores root>/<model> of run B")
    p.add_argument("--out", type=Path, required=True)
    _add_common(p)
    p.set_defaults(run=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    from seppo_video.evaluation.config import load_eval_config
    from seppo_video.evaluation.report import (
        ModelScores,
        compare_runs,
        write_comparison,
    )

    config = load_eval_config(args.config, args.overrides)
    paths = write_comparison(compare_runs(ModelScores(args.a), ModelScores(args.b), config.stats), args.out)
    print(f"comparison written to {paths['markdown']}")
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="generate, score and report every model of an eval config")
    _add_common(p)
    _add_metric_options(p)
    p.set_defaults(run=_run_all)


def _run_all(args: argparse.Namespace) -> int:
    from seppo_video.evaluation.pipeline import run_pipeline

    if args.config is None:
        raise EvalError("run needs --config (e.g. configs/eval_tiny.yaml)")
    config = _metric_config(args, [])
    paths = run_pipeline(config, args.metrics, args.overwrite, str(args.config))
    print(f"report written to {paths['markdown']}")
    return 0


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check every file the eval config names (formats, keys, shapes, tokenizers)")
    _add_common(p)
    p.add_argument("--checksums", action="store_true",
                   help="also print each weights file's SHA-256 (to pin it in the config's sha256 fields)")
    p.set_defaults(run=_run_doctor)


def _run_doctor(args: argparse.Namespace) -> int:
    from seppo_video.evaluation.config import load_eval_config
    from seppo_video.evaluation.doctor import diagnose, format_findings

    findings = diagnose(load_eval_config(args.config, args.overrides), args.checksums)
    print(format_findings(findings))
    return 1 if any(f.status == "problem" for f in findings) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seppo-video eval",
        description="ChronoMagic-Bench for seppo-video models: UMT-FVD, UMTScore, MTScore, CHScore "
        "(+ GPT4o-MTScore on request), FID, FVD, LPIPS, SSIM, PSNR and per-frame preference scores. "
        "Every network loads from a local path in the eval config; none is downloaded.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_run, _add_generate, _add_score, _add_report, _add_compare, _add_doctor):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="seppo-video eval: %(message)s")
    try:
        return args.run(args)
    except (EvalError, ConfigError) as err:
        print(f"seppo-video eval {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
