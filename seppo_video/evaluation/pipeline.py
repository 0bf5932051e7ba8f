"""``run``: generate, score and report every model of an eval config in one go."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from seppo_video.evaluation.config import EvalConfig
from seppo_video.evaluation.generate import generate_videos
from seppo_video.evaluation.metrics.registry import check_reference_features, parse_metric_names
from seppo_video.evaluation.prompts import read_prompts
from seppo_video.evaluation.report import (
    ModelScores,
    compare_runs,
    summarize_run,
    write_comparison,
    write_report,
)
from seppo_video.evaluation.score import score_videos
from seppo_video.evaluation.tiny_extractors import resolve_tiny


def run_pipeline(
    config: EvalConfig, metrics: list[str] | None = None, overwrite: bool = False, config_path: str | None = None
) -> dict[str, Path]:
    """Everything under ``config.out``: ``videos/``, ``scores/``, and the report files.

    The report (``report.json``, ``leaderboard.csv``, ``report.md``) goes in
    ``config.out`` itself, so ``out: runs/<run>/eval`` puts it where the run
    viewer looks. The first model is the baseline: each further model gets a
    paired comparison against it in ``compare-<model>-vs-<baseline>/``.
    Returns the report's paths.
    """
    out = Path(config.out)
    prompts = read_prompts(config.prompts, config.max_prompts)
    gen = config.generation
    resolve_tiny(config, [p.videoid for p in prompts], gen.num_frames, gen.height)
    settings = gen.settings()
    requested = parse_metric_names(metrics or config.metrics)
    check_reference_features(config)
    runs, scores = [], []
    for entry in config.models:
        generate_videos(entry.model, prompts, config.seeds, settings, out / "videos", entry.name, gen.device)
        result = score_videos(out / "videos" / entry.name, prompts, out / "scores", config, requested, overwrite,
                              config.prompts)
        scores.append(ModelScores(result.folder))
        run = summarize_run(scores[-1], config.stats)
        runs.append({**run, "backbone": entry.backbone or run["backbone"]})
    context = {"config": asdict(config), "config_path": config_path, "stats": asdict(config.stats)}
    paths = write_report(runs, out, context)
    for other in scores[1:]:
        comparison = compare_runs(other, scores[0], config.stats)
        write_comparison(comparison, out / f"compare-{other.name}-vs-{scores[0].name}")
    return paths
