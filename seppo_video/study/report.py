"""Tables and plots of the alignment study, with bootstrap confidence intervals.

Rewards are matrices ``[held-out prompts, seeds]``; intervals resample both
axes (``seppo_video.evaluation.stats``), and SePPO is compared with each
baseline on the same (prompt, seed) cells, which removes the variation the
two share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seppo_video.evaluation.stats import paired_difference, summarize

REFERENCE_METHOD = "seppo"


def reward_matrix(runs: dict[str, Any], position: int) -> np.ndarray:
    """Rewards at checkpoint ``position`` (-1: the last) of every seed: ``[prompts, seeds]``."""
    return np.asarray([runs[seed]["rewards"][position] for seed in sorted(runs, key=int)]).T


def summarise_study(scores: dict[str, Any], confidence: float, n_boot: int) -> dict[str, Any]:
    """Final rewards, paired differences with SePPO, and per-checkpoint curves."""
    runs = scores["runs"]
    stats = {"confidence": confidence, "n_boot": n_boot}
    base = np.asarray(scores["base"])[:, None]
    final = {name: summarize(reward_matrix(r, -1), **_boot(stats)) for name, r in runs.items()}
    reference = reward_matrix(runs[REFERENCE_METHOD], -1)
    paired = {
        name: paired_difference(reference, reward_matrix(r, -1), **_boot(stats))
        for name, r in runs.items() if name != REFERENCE_METHOD
    }
    curves = {}
    for name, by_seed in runs.items():
        steps = next(iter(by_seed.values()))["steps"]
        points = [summarize(base, **_boot(stats))] + [
            summarize(reward_matrix(by_seed, i), **_boot(stats)) for i in range(len(steps))
        ]
        curves[name] = {"steps": [0, *steps], "mean": [p.mean for p in points],
                        "ci_low": [p.ci_low for p in points], "ci_high": [p.ci_high for p in points]}
    return {
        "base": summarize(base, **_boot(stats)).to_dict(),
        "final": {k: v.to_dict() for k, v in final.items()},
        "seppo_minus": {k: v.to_dict() for k, v in paired.items()},
        "curves": curves,
        "collapse_alarms": {name: _alarm_count(by_seed) for name, by_seed in runs.items()},
        "flip_rate": {name: _flip_curve(by_seed) for name, by_seed in runs.items() if _has_flips(by_seed)},
        "precision": {name: _precision_curve(by_seed) for name, by_seed in runs.items()
                      if next(iter(by_seed.values()))["precision"]},
    }


def _boot(stats: dict[str, Any]) -> dict[str, Any]:
    return {"confidence": stats["confidence"], "n_boot": stats["n_boot"]}


def _alarm_count(by_seed: dict[str, Any]) -> dict[str, Any]:
    """How many seeds' runs fired the collapse alarm, and at which steps (scores from before the
    alarm existed have no ``collapse_step``: they count as not fired)."""
    steps = [run.get("collapse_step") for run in by_seed.values()]
    fired = [step for step in steps if step is not None]
    return {"fired": len(fired), "seeds": len(steps), "steps": fired}


def _has_flips(by_seed: dict[str, Any]) -> bool:
    return bool(next(iter(by_seed.values()))["flip_rate"])


def _flip_curve(by_seed: dict[str, Any]) -> dict[str, list[float]]:
    """Per step: the AAF flip rate averaged over seeds, and its range over seeds."""
    table = np.asarray([[rate for _, rate in run["flip_rate"]] for run in by_seed.values()])
    steps = [step for step, _ in next(iter(by_seed.values()))["flip_rate"]]
    return {"steps": steps, "mean": table.mean(0).tolist(), "low": table.min(0).tolist(), "high": table.max(0).tolist()}


def _precision_curve(by_seed: dict[str, Any]) -> dict[str, list[float]]:
    """Per checkpoint: AAF precision over the pool (mean over snapshots, then seeds), and vs theta_0."""
    runs = list(by_seed.values())
    over_pool = np.asarray([[np.mean([r["precision"] for r in rows]) for rows in run["precision"]] for run in runs])
    initial = np.asarray([[rows[0]["precision"] for rows in run["precision"]] for run in runs])
    anchor = np.asarray([[np.mean([r["mean_anchor"] for r in rows]) for rows in run["precision"]] for run in runs])
    return {"steps": runs[0]["steps"], "pool_mean": over_pool.mean(0).tolist(), "pool_low": over_pool.min(0).tolist(),
            "pool_high": over_pool.max(0).tolist(), "vs_initial": initial.mean(0).tolist(),
            "mean_anchor": anchor.mean(0).tolist()}


# ---------------------------------------------------------------- markdown


def _alarm_cell(alarms: dict[str, Any]) -> str:
    at = f" (steps {', '.join(map(str, alarms['steps']))})" if alarms["steps"] else ""
    return f"{alarms['fired']}/{alarms['seeds']}{at}"


def _ci(summary: dict[str, Any], signed: bool = False) -> str:
    fmt = "{:+.4f}" if signed else "{:.4f}"
    return f"{fmt.format(summary['mean'])} [{fmt.format(summary['ci_low'])}, {fmt.format(summary['ci_high'])}]"


def _verdict(diff: dict[str, Any]) -> str:
    if diff["ci_low"] > 0:
        return "SePPO better"
    if diff["ci_high"] < 0:
        return "SePPO worse"
    return "not resolved"


def markdown(summary: dict[str, Any], header: str) -> str:
    level = round(summary["base"]["confidence"] * 100)
    intro = (f"Held-out reward after alignment (mean over prompts and seeds, {level}% bootstrap CI over seeds "
             "and prompts); right: SePPO minus the method on the same (prompt, seed) cells.")
    lines = [header, "", intro, "",
             f"| method | reward [{level}% CI] | SePPO − method [{level}% CI] | verdict | collapse alarm (seeds) |",
             "|---|---|---|---|---|",
             f"| base model (before alignment) | {_ci(summary['base'])} | | | |"]
    order = sorted(summary["final"], key=lambda name: -summary["final"][name]["mean"])
    for name in order:
        diff = summary["seppo_minus"].get(name)
        cells = (_ci(diff, signed=True), _verdict(diff)) if diff else ("—", "reference")
        lines.append(f"| {name} | {_ci(summary['final'][name])} | {cells[0]} | {cells[1]} | "
                     f"{_alarm_cell(summary['collapse_alarms'][name])} |")
    for name, curve in summary["precision"].items():
        caption = (f"AAF sign precision for `{name}` (agreement of one (t, eps) draw with the sign of the mean "
                   "anchor, averaged over the pool's earlier snapshots, winners and seeds):")
        lines += ["", caption, "",
                  "| step | precision over pool | vs θ₀ | mean anchor |", "|---|---|---|---|"]
        lines += [f"| {s} | {p:.3f} | {i:.3f} | {a:+.2e} |" for s, p, i, a in
                  zip(curve["steps"], curve["pool_mean"], curve["vs_initial"], curve["mean_anchor"])]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- plots


def plot(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """reward_vs_step.png, flip_rate.png and sign_precision.png in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, curve in summary["curves"].items():
        (line,) = axis.plot(curve["steps"], curve["mean"], marker="o", label=name)
        axis.fill_between(curve["steps"], curve["ci_low"], curve["ci_high"], color=line.get_color(), alpha=0.15)
    _finish(axis, "alignment step", "held-out reward", "Reward vs step (mean, 95% CI over seeds and prompts)")
    written.append(_save(figure, out_dir / "reward_vs_step.png"))

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, curve in summary["flip_rate"].items():
        (line,) = axis.plot(curve["steps"], _smooth(curve["mean"]), label=name)
        axis.fill_between(curve["steps"], _smooth(curve["low"]), _smooth(curve["high"]), color=line.get_color(),
                          alpha=0.15)
    _finish(axis, "alignment step", "AAF flip rate", "Flip rate (mean over seeds, band: seed range; 5-step mean)")
    written.append(_save(figure, out_dir / "flip_rate.png"))

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, curve in summary["precision"].items():
        (line,) = axis.plot(curve["steps"], curve["pool_mean"], marker="o", label=f"{name}: over the pool")
        axis.fill_between(curve["steps"], curve["pool_low"], curve["pool_high"], color=line.get_color(), alpha=0.15)
        axis.plot(curve["steps"], curve["vs_initial"], marker="s", linestyle="--", label=f"{name}: vs θ₀")
    axis.axhline(0.5, color="grey", linewidth=0.8)
    _finish(axis, "alignment step", "sign precision", "AAF sign precision (0.5 = coin toss)")
    written.append(_save(figure, out_dir / "sign_precision.png"))
    return written


def _smooth(values: list[float], window: int = 5) -> np.ndarray:
    kernel = np.ones(window) / window
    padded = np.pad(np.asarray(values, dtype=float), (window // 2, window - 1 - window // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _finish(axis, xlabel: str, ylabel: str, title: str) -> None:
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


