"""From records to figures: per-run summaries, paired comparisons, and the report files.

``report.json`` holds everything (config, model ids, seeds, package
versions, every summary); ``leaderboard.csv`` has the benchmark leaderboard's
columns; ``report.md`` is the readable table with intervals, the spread of
UMT-FVD's subsets, skipped metrics, and the published leaderboard rows for
context.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from seppo_video.atomic import atomic_write_json, atomic_write_text
from seppo_video.evaluation.config import StatsConfig
from seppo_video.evaluation.errors import EvalError
from seppo_video.evaluation.metrics.chronomagic import load_umt_reference_features
from seppo_video.evaluation.metrics.registry import METRICS, set_distance
from seppo_video.evaluation.records import FeatureStore, RecordStore
from seppo_video.evaluation.score import META_FILE
from seppo_video.evaluation.stats import (
    Estimator,
    FeatureSet,
    bootstrap_distribution,
    paired_bootstrap_distribution,
    paired_difference,
    summarize,
)

LEADERBOARD_COLUMNS = ("Model", "Backbone", "UMT-FVD", "UMTScore", "MTScore", "CHScore", "GPT4o-MTScore")
BENCHMARK_METRICS = ("umt_fvd", "umtscore", "mtscore", "chscore", "gpt4o_mtscore")
OTHER_METRICS = tuple(n for n in METRICS if n not in BENCHMARK_METRICS)

# ChronoMagic-Bench's current leaderboard files: UMT-FVD, UMTScore, MTScore, CHScore, GPT4o-MTScore.
PUBLISHED = {
    "ChronoMagic-Bench (1,649 prompts)": {
        "AnimateDiff-V3": (197.89, 2.944, 0.467, 70.85, 2.62),
        "ModelScopeT2V": (194.77, 2.909, 0.401, 61.07, 2.86),
        "MagicTime": (257.56, 1.916, 0.478, 81.82, 3.13),
        "VideoCrafter2": (178.45, 2.753, 0.433, 80.10, 2.68),
        "CogVideoX-2B": (159.31, 3.225, 0.404, 43.15, 2.92),
    },
    "ChronoMagic-Bench-150": {
        "AnimateDiff-V3": (239.31, 2.837, 0.470, 70.36, 2.62),
        "ModelScopeT2V": (230.74, 2.783, 0.409, 61.01, 3.01),
        "MagicTime": (294.72, 1.763, 0.479, 77.98, 3.05),
        "VideoCrafter2": (214.06, 2.763, 0.437, 75.90, 2.87),
        "CogVideoX-2B": (195.52, 3.240, 0.472, 38.64, 3.09),
    },
}
PUBLISHED_DIGITS = (2, 3, 3, 2, 2)
PRE_CHANGE_CHSCORE = {"AnimateDiff-V3": 11.09, "ModelScopeT2V": 10.64}


class ModelScores:
    """The records and features ``score`` wrote for one model."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        meta_path = self.folder / META_FILE
        if not meta_path.exists():
            raise EvalError(f"{self.folder}: no {META_FILE}; run `seppo-video eval score` into it first")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.videoids: list[str] = self.meta["videoids"]
        self.sets: list[str] = self.meta["sets"]

    @property
    def name(self) -> str:
        return str(self.meta["model_name"])

    def matrix(self, metric: str, videoids: Sequence[str] | None = None, sets: Sequence[str] | None = None) -> np.ndarray:
        """Per-video scores ``[prompts, sets]``, NaN where a video has no record."""
        videoids, sets = videoids or self.videoids, sets or self.sets
        values = np.full((len(videoids), len(sets)), np.nan)
        for j, set_name in enumerate(sets):
            records = RecordStore.read(self.folder / "sets" / set_name / f"{metric}.json")
            for i, videoid in enumerate(videoids):
                if videoid in records:
                    values[i, j] = records[videoid]["score"]
        return values

    def feature_sets(
        self, metric: str, videoids: Sequence[str] | None = None, sets: Sequence[str] | None = None
    ) -> list[FeatureSet]:
        """Per set, per prompt: that video's features (``None`` where missing)."""
        videoids, sets = videoids or self.videoids, sets or self.sets
        return [
            [FeatureStore.read(self.folder / "sets" / s / "features" / metric, v) for v in videoids] for s in sets
        ]

    def reference_features(self, metric: str) -> list[np.ndarray]:
        """The reference side: the shipped UMT features file, or the reference clips' features."""
        reference = self.meta["reference"]
        if metric == "umt_fvd" and reference.get("umt_features"):
            return [row.reshape(1, -1) for row in load_umt_reference_features(reference["umt_features"])]
        folder = Path(reference["features"]) / metric
        found = [FeatureStore.read(folder, v) for v in self.videoids]
        return [f for f in found if f is not None]


# ---------------------------------------------------------------- summaries


def summarize_run(scores: ModelScores, stats: StatsConfig) -> dict[str, Any]:
    """Every scored metric of one run, with its interval and spread."""
    summaries = {}
    for name in [m for m in METRICS if m in scores.meta["metrics"]]:
        info = METRICS[name]
        head = {"title": info.title, "kind": info.kind, "higher_is_better": info.higher_is_better}
        body = _video_summary(scores, name, stats) if info.kind == "video" else _distribution_summary(scores, name, stats)
        summaries[name] = {**head, **body, **_comparability(scores.meta["metrics"][name].get("fingerprint", {}))}
    generation = scores.meta.get("generation", {})
    return {
        "model_name": scores.name,
        "model": generation.get("model", scores.meta["videos"]),
        "backbone": generation.get("backbone"),
        "seeds": generation.get("seeds", {}),
        "sets": scores.sets,
        "n_prompts": len(scores.videoids),
        "prompts_file": scores.meta.get("prompts_file"),
        "generation": generation.get("settings"),
        "metrics": summaries,
        "skipped": scores.meta.get("skipped", {}),
        "missing_videos": {k: v for k, v in scores.meta.get("missing_videos", {}).items() if v},
    }


def _comparability(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """``not_leaderboard_comparable`` for scores whose defining text did not come from the official checkout."""
    if fingerprint.get("leaderboard_comparable", True):
        return {}
    source = fingerprint.get("descriptions_source") or fingerprint.get("rubric_source")
    return {"not_leaderboard_comparable": f"its text came from {source}, not from the official checkout "
                                          "(chronomagic_repo)"}


def _video_summary(scores: ModelScores, name: str, stats: StatsConfig) -> dict[str, Any]:
    matrix = scores.matrix(name)
    if np.isnan(matrix).all():
        return {"mean": None, "note": "no video was scored"}
    return summarize(matrix, stats.confidence, stats.bootstrap, stats.seed).to_dict()


def _distance_estimator(name: str, reference: list[np.ndarray]) -> Estimator:
    def estimator(sets: list[list[np.ndarray]]) -> float:
        return float(np.mean([set_distance(name, videos, reference).value for videos in sets]))

    return estimator


def _enough_rows(sets: list[FeatureSet], reference: list[np.ndarray]) -> bool:
    rows = [sum(len(v) for v in videos if v is not None) for videos in sets]
    return min(rows) >= 2 and sum(len(r) for r in reference) >= 2


def _distribution_summary(scores: ModelScores, name: str, stats: StatsConfig) -> dict[str, Any]:
    sets, reference = scores.feature_sets(name), scores.reference_features(name)
    if not _enough_rows(sets, reference):
        return {"mean": None, "note": "needs features of at least 2 generated and 2 reference videos per set"}
    results = [set_distance(name, [v for v in videos if v is not None], reference) for videos in sets]
    values = np.array([r.value for r in results])
    estimator = _distance_estimator(name, reference)
    low, high, _ = bootstrap_distribution(estimator, sets, stats.distribution_bootstrap, stats.seed, stats.confidence)
    present = [[v is not None for v in videos] for videos in sets]
    return {
        "mean": float(values.mean()),
        "ci_low": low,
        "ci_high": high,
        "confidence": stats.confidence,
        "n_prompts": int(np.any(present, axis=0).sum()),
        "n_sets": len(sets),
        "n_videos": int(np.sum(present)),
        "n_reference": len(reference),
        "per_set": values.tolist(),
        "set_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "details": [r.details for r in results],
    }


# ---------------------------------------------------------------- paired comparison


def compare_runs(a: ModelScores, b: ModelScores, stats: StatsConfig) -> dict[str, Any]:
    """``a - b`` for every metric both runs have, on the prompts and sets both have."""
    videoids = [v for v in a.videoids if v in set(b.videoids)]
    sets = [s for s in a.sets if s in b.sets]
    if not videoids or not sets:
        raise EvalError(f"{a.name} and {b.name} share no prompts and sets; a paired comparison needs both")
    result: dict[str, Any] = {}
    for name in [m for m in METRICS if m in a.meta["metrics"] and m in b.meta["metrics"]]:
        info = METRICS[name]
        if info.kind == "video":
            diff = paired_difference(a.matrix(name, videoids, sets), b.matrix(name, videoids, sets),
                                     stats.confidence, stats.bootstrap, stats.seed)
            body: dict[str, Any] = diff.to_dict()
        else:
            body = _paired_distribution(a, b, name, videoids, sets, stats)
        result[name] = {"title": info.title, "higher_is_better": info.higher_is_better, **body}
    return {"a": a.name, "b": b.name, "n_prompts": len(videoids), "sets": sets, "metrics": result}


def _paired_distribution(
    a: ModelScores, b: ModelScores, name: str, videoids: list[str], sets: list[str], stats: StatsConfig
) -> dict[str, Any]:
    if a.meta["reference"] != b.meta["reference"]:
        return {"mean": None, "note": "the two runs were scored against different references"}
    reference = a.reference_features(name)
    sets_a, sets_b = a.feature_sets(name, videoids, sets), b.feature_sets(name, videoids, sets)
    if not (_enough_rows(sets_a, reference) and _enough_rows(sets_b, reference)):
        return {"mean": None, "note": "needs features of at least 2 videos per set on both sides"}
    estimator = _distance_estimator(name, reference)
    point = _estimate_present(estimator, sets_a) - _estimate_present(estimator, sets_b)
    low, high, _ = paired_bootstrap_distribution(
        estimator, sets_a, sets_b, stats.distribution_bootstrap, stats.seed, stats.confidence
    )
    return {"mean": point, "ci_low": low, "ci_high": high, "confidence": stats.confidence, "n_sets": len(sets)}


def _estimate_present(estimator: Estimator, sets: list[FeatureSet]) -> float:
    return estimator([[v for v in videos if v is not None] for videos in sets])


# ---------------------------------------------------------------- files


def package_versions() -> dict[str, str]:
    """Versions of the packages the figures depend on (for the record in report.json)."""
    versions = {}
    for package in ("seppo-video", "torch", "diffusers", "transformers", "torchmetrics", "numpy", "scipy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def write_report(runs: list[dict[str, Any]], out: str | Path, context: dict[str, Any]) -> dict[str, Path]:
    """Write ``report.json``, ``leaderboard.csv`` and ``report.md`` into ``out``."""
    out = Path(out)
    paths = {"json": out / "report.json", "csv": out / "leaderboard.csv", "markdown": out / "report.md"}
    document = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        **context,
        "runs": runs,
        "rows": flat_rows(runs),
    }
    atomic_write_json(paths["json"], document)
    atomic_write_text(paths["csv"], leaderboard_csv(runs))
    atomic_write_text(paths["markdown"], report_markdown(runs, context))
    return paths


def flat_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (run, metric) with a value: what the run viewer's evaluation table reads."""
    return [
        {"run": run["model_name"], "model": run["model"], "metric": entry["title"], "mean": entry["mean"],
         "ci_low": entry.get("ci_low"), "ci_high": entry.get("ci_high"), "n_prompts": entry.get("n_prompts"),
         "n_sets": entry.get("n_sets"), "higher_is_better": entry["higher_is_better"]}
        for run in runs
        for entry in run["metrics"].values()
        if entry.get("mean") is not None
    ]


def write_comparison(comparison: dict[str, Any], out: str | Path) -> dict[str, Path]:
    out = Path(out)
    paths = {"json": out / "compare.json", "markdown": out / "compare.md"}
    atomic_write_json(paths["json"], {"versions": package_versions(), **comparison})
    atomic_write_text(paths["markdown"], comparison_markdown(comparison))
    return paths


def _value(run: dict[str, Any], metric: str) -> float | None:
    entry = run["metrics"].get(metric)
    return None if entry is None else entry.get("mean")


def leaderboard_csv(runs: list[dict[str, Any]]) -> str:
    """The leaderboard's columns; a metric not computed is an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LEADERBOARD_COLUMNS)
    for run in runs:
        values = [_value(run, m) for m in BENCHMARK_METRICS]
        writer.writerow([run["model_name"], run.get("backbone") or "", *("" if v is None else f"{v:.4f}" for v in values)])
    return buffer.getvalue()


def fmt(value: float | None) -> str:
    """Three significant-ish digits: 197.9, 70.85, 2.944."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    magnitude = abs(value)
    return f"{value:.1f}" if magnitude >= 100 else f"{value:.2f}" if magnitude >= 10 else f"{value:.3f}"


def _cell(entry: dict[str, Any] | None, median: bool = False) -> str:
    if entry is None:
        return "skipped"
    if entry.get("mean") is None:
        return "n/a"
    text = f"{fmt(entry['mean'])} [{fmt(entry.get('ci_low'))}, {fmt(entry.get('ci_high'))}]"
    text += f"; median {fmt(entry.get('median'))}" if median else ""
    return text + (" †" if entry.get("not_leaderboard_comparable") else "")


def _arrow(metric: str) -> str:
    return "↑" if METRICS[metric].higher_is_better else "↓"


def report_markdown(runs: list[dict[str, Any]], context: dict[str, Any]) -> str:
    lines = ["# ChronoMagic-Bench evaluation", "", *_header(runs, context), ""]
    lines += ["## Benchmark metrics", ""]
    lines += _table(runs, ["Model", "Backbone"], BENCHMARK_METRICS, lambda r: [r["model_name"], r.get("backbone") or ""])
    others = [m for m in OTHER_METRICS if any(m in r["metrics"] for r in runs)]
    if others:
        lines += ["", "## SePPO paper metrics and preference scores", ""]
        lines += _table(runs, ["Model"], others, lambda r: [r["model_name"]])
    lines += ["", *_not_comparable(runs), *_spread(runs), *_skipped(runs), *_published()]
    return "\n".join(lines) + "\n"


MTSCORE_CAVEAT = (
    "- MTScore: the benchmark's own script loads no tensor of InternVideo2-stage2_1b-224p-f4.pt (its keys miss the "
    "bare vision encoder it is loaded into), so published MTScores come from randomly initialised weights and no "
    "MTScore computed from the released weights matches them (docs/evaluation.md)."
)


def _not_comparable(runs: list[dict[str, Any]]) -> list[str]:
    lines = [f"- † {run['model_name']} {entry['title']}: not leaderboard-comparable: {entry['not_leaderboard_comparable']}"
             for run in runs for entry in run["metrics"].values() if entry.get("not_leaderboard_comparable")]
    lines += [MTSCORE_CAVEAT] if any("mtscore" in run["metrics"] for run in runs) else []
    return [*lines, ""] if lines else []


def _header(runs: list[dict[str, Any]], context: dict[str, Any]) -> list[str]:
    stats = context.get("stats", {})
    confidence = round(100 * stats.get("confidence", 0.95))
    legend = (
        f"Cells: mean over videos, then over sample sets (seeds) [{confidence}% bootstrap interval over prompts "
        f"and seeds: {stats.get('bootstrap')} resamples for per-video metrics, {stats.get('distribution_bootstrap')} "
        f"for Fréchet distances, seed {stats.get('seed')}]. CHScore also shows the median: it is a reciprocal, "
        "and one near-static video can dominate its mean. Fréchet-distance intervals resample videos with "
        "replacement, which duplicates rows and biases distances upward: read them as spread, not as exact coverage."
    )
    lines = [legend, ""]
    for run in runs:
        seeds = ", ".join(f"set {k}: seed {s}" for k, s in run["seeds"].items()) or "unknown"
        lines.append(f"- **{run['model_name']}** (`{run['model']}`): {run['n_prompts']} prompts, "
                     f"{len(run['sets'])} set(s) ({seeds})")
    return lines


def _table(
    runs: list[dict[str, Any]], first: list[str], metrics: Sequence[str], lead: Callable[[dict[str, Any]], list[str]]
) -> list[str]:
    header = [*first, *(f"{METRICS[m].title} {_arrow(m)}" for m in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        cells = [_cell(run["metrics"].get(m), median=m == "chscore") for m in metrics]
        lines.append("| " + " | ".join([*lead(run), *cells]) + " |")
    return lines


def _spread(runs: list[dict[str, Any]]) -> list[str]:
    lines = ["## Spread", ""]
    for run in runs:
        for name, entry in run["metrics"].items():
            if entry.get("per_set") is None:
                continue
            per_set = ", ".join(f"{s}: {fmt(v)}" for s, v in zip(run["sets"], entry["per_set"]))
            lines.append(f"- {run['model_name']} {entry['title']}: per set {per_set}; between-set std "
                         f"{fmt(entry.get('set_std'))}; {entry.get('n_videos')} videos")
            if name == "umt_fvd":
                lines += _umt_fvd_spread(entry)
    return lines + [""]


def _umt_fvd_spread(entry: dict[str, Any]) -> list[str]:
    lines = []
    for index, details in enumerate(entry["details"], start=1):
        distinct, total = details["distinct_subsets"], sum(len(v) for v in details["per_size"].values())
        lines.append(
            f"  - set {index}: {distinct} distinct (generated, reference) subset pairs of {total} computed "
            f"(every subset size at or above the number of videos is the whole set); std over the distinct ones "
            f"{fmt(details['distinct_std'])}"
        )
    return lines


def _skipped(runs: list[dict[str, Any]]) -> list[str]:
    lines = [f"- {run['model_name']}: {METRICS[n].title}: {why}" for run in runs for n, why in run["skipped"].items()]
    missing = [f"- {run['model_name']}: set {s}: {len(ids)} video(s) missing" for run in runs
               for s, ids in run["missing_videos"].items()]
    return (["## Not computed", "", *lines, *missing, ""] if lines or missing else [])


def _published() -> list[str]:
    source = (
        "Source: the benchmark's current leaderboard files (ChronoMagic-Bench, PKU-YuanGroup, NeurIPS 2024 D&B). "
        "Figures from a different prompt set, resolution or frame count are not directly comparable with the runs above."
    )
    lines = ["## Published ChronoMagic-Bench leaderboard (for context)", "", source, ""]
    header = "| " + " | ".join(LEADERBOARD_COLUMNS[:1] + LEADERBOARD_COLUMNS[2:]) + " |"
    for title, rows in PUBLISHED.items():
        lines += [f"### {title}", "", header, "|---|---|---|---|---|---|"]
        for model, values in rows.items():
            cells = [f"{v:.{digits}f}" for v, digits in zip(values, PUBLISHED_DIGITS)]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
    old = ", ".join(f"{m} {v}" for m, v in PRE_CHANGE_CHSCORE.items())
    lines.append(f"CHScore values quoted elsewhere ({old}) predate the October 2024 formula change and are not "
                 "comparable; the table uses the current values. The other columns are unchanged.")
    return lines


def comparison_markdown(comparison: dict[str, Any]) -> str:
    intro = (
        f"Same {comparison['n_prompts']} prompts and sets {', '.join(comparison['sets'])}; intervals from a "
        "crossed bootstrap over prompts and seeds with both runs resampled together."
    )
    lines = [f"# Paired comparison: {comparison['a']} − {comparison['b']}", "", intro, "",
             "| Metric | difference [interval] | better |", "|---|---|---|"]
    for entry in comparison["metrics"].values():
        if entry.get("mean") is None:
            lines.append(f"| {entry['title']} | n/a ({entry.get('note')}) | |")
            continue
        low, high = entry["ci_low"], entry["ci_high"]
        decided = low > 0 or high < 0
        a_better = (entry["mean"] > 0) == entry["higher_is_better"]
        verdict = (comparison["a"] if a_better else comparison["b"]) if decided else "undecided (interval spans 0)"
        lines.append(f"| {entry['title']} | {fmt(entry['mean'])} [{fmt(low)}, {fmt(high)}] | {verdict} |")
    return "\n".join(lines) + "\n"
