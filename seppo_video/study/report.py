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

from seppo_video.data.world import GOOD_REWARD
from seppo_video.evaluation.stats import paired_difference, summarize
from seppo_video.study.evaluate import good_share

REFERENCE_METHOD = "seppo"
POSITIVE_CONTROLS = ("sft", "dpo")  # methods that must beat the base model if the loop works at all
GOOD_REWARD_KEY = "good_share"  # the share of samples that are good clips (reward >= GOOD_REWARD)


def per_prompt(rewards: list[list[float]], good: bool = False) -> np.ndarray:
    """Rewards ``[prompts, samples]`` to one value per prompt: the mean reward, or the share of good clips."""
    values = np.asarray(rewards, dtype=np.float64)
    return good_share(values).mean(axis=1) if good else values.mean(axis=1)


def seed_matrix(by_seed: dict[str, Any], key: str, position: int | None = None, good: bool = False) -> np.ndarray:
    """``[prompts, seeds]``: each seed's per-prompt value of ``key`` (``position``: which checkpoint)."""
    seeds = sorted(by_seed, key=int)
    rows = [by_seed[s][key] if position is None else by_seed[s][key][position] for s in seeds]
    return np.stack([per_prompt(r, good) for r in rows], axis=1)


def summarise_study(scores: dict[str, Any], confidence: float, n_boot: int) -> dict[str, Any]:
    """Held-out results, paired differences (with SePPO and with the base), tuning tables, curves."""
    runs, boot = scores["runs"], {"confidence": confidence, "n_boot": n_boot}
    final: dict[str, Any] = {}
    for good in (False, True):
        metric = GOOD_REWARD_KEY if good else "reward"
        base = per_prompt(scores["base"]["held_out"], good)[:, None]
        matrices = {name: seed_matrix(by_seed, "held_out", good=good) for name, by_seed in runs.items()}
        for name, matrix in matrices.items():
            final.setdefault(name, {})[metric] = summarize(matrix, **boot).to_dict()
            final[name][f"{metric}_minus_base"] = paired_difference(
                matrix, np.repeat(base, matrix.shape[1], axis=1), **boot).to_dict()
            if name != REFERENCE_METHOD:
                final[name][f"seppo_minus_{metric}"] = paired_difference(
                    matrices[REFERENCE_METHOD], matrix, **boot).to_dict()
        final.setdefault("base", {})[metric] = summarize(base, **boot).to_dict()
    return {
        "final": final,
        "tuning": _tuning_tables(scores),
        "chosen": scores["chosen"],
        "curves": {name: _curves(by_seed, scores["base"]["validation"], boot) for name, by_seed in runs.items()},
        "collapse_alarms": {name: _alarm_count(by_seed) for name, by_seed in runs.items()},
        "flip_rate": {name: _flip_curve(by_seed) for name, by_seed in runs.items() if _has_flips(by_seed)},
        "precision": {name: _precision_curve(by_seed) for name, by_seed in runs.items()
                      if next(iter(by_seed.values()))["precision"]},
        "prompts": scores["prompts"],
    }


def _tuning_tables(scores: dict[str, Any]) -> dict[str, Any]:
    """Per tuned method: each grid point's mean validation reward and good-clip share, and the choice."""
    base = np.asarray(scores["base"]["validation_tuning"])
    tables = {"base": {"reward": float(base.mean()), GOOD_REWARD_KEY: float(good_share(base).mean())}}
    for name, rows in scores["tuning"].items():
        tables[name] = [{"point": row["point"], "reward": float(np.mean(row["validation"])),
                         GOOD_REWARD_KEY: float(good_share(np.asarray(row["validation"])).mean()),
                         "chosen": row["point"] == scores["chosen"][name]} for row in rows]
    return tables


def _curves(by_seed: dict[str, Any], base: list[list[float]], boot: dict[str, Any]) -> dict[str, Any]:
    """Validation reward and good-clip share per checkpoint (step 0: the base), mean and interval."""
    steps = next(iter(by_seed.values()))["steps"]
    curves: dict[str, Any] = {"steps": [0, *steps]}
    for good in (False, True):
        metric = GOOD_REWARD_KEY if good else "reward"
        points = [summarize(per_prompt(base, good)[:, None], **boot)] + [
            summarize(seed_matrix(by_seed, "validation", i, good), **boot) for i in range(len(steps))]
        curves[metric] = {"mean": [p.mean for p in points], "ci_low": [p.ci_low for p in points],
                          "ci_high": [p.ci_high for p in points]}
    return curves


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
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"{fmt.format(summary['mean'])} [{fmt.format(summary['ci_low'])}, {fmt.format(summary['ci_high'])}]"


def _resolved(diff: dict[str, Any], better: str = "better", worse: str = "worse") -> str:
    if diff["ci_low"] > 0:
        return better
    if diff["ci_high"] < 0:
        return worse
    return "not resolved"


def _point(point: dict[str, Any]) -> str:
    return ", ".join(f"{key.split('.')[-1]}={value}" for key, value in point.items()) or "(defaults)"


def markdown(summary: dict[str, Any], header: str) -> str:
    final, level = summary["final"], round(summary["final"]["base"]["reward"]["confidence"] * 100)
    held = len(summary["prompts"]["held_out"])
    lines = [header, "", f"## Held-out prompts ({held}), final step", "",
             (f"Mean over prompts and seeds, {level}% crossed-bootstrap interval over prompts and training seeds; "
              f"differences are paired on the same (prompt, seed) cells. Good clip: reward >= {GOOD_REWARD}."), "",
             "| method | reward | good-clip share | − base (reward) | SePPO − method (reward) | collapse alarm |",
             "|---|---|---|---|---|---|",
             f"| base model | {_ci(final['base']['reward'])} | {_ci(final['base'][GOOD_REWARD_KEY])} | | | |"]
    methods = sorted((n for n in final if n != "base"), key=lambda n: -final[n]["reward"]["mean"])
    for name in methods:
        row = final[name]
        minus_base = row["reward_minus_base"]
        vs_seppo = row.get("seppo_minus_reward")
        seppo_cell = (f"{_ci(vs_seppo, signed=True)} ({_resolved(vs_seppo, 'SePPO better', 'SePPO worse')})"
                      if vs_seppo else "reference")
        lines.append(f"| {name} | {_ci(row['reward'])} | {_ci(row[GOOD_REWARD_KEY])} | "
                     f"{_ci(minus_base, signed=True)} ({_resolved(minus_base, 'above', 'below')}) | {seppo_cell} | "
                     f"{_alarm_cell(summary['collapse_alarms'][name])} |")
    controls = [name for name in POSITIVE_CONTROLS if name in final]
    if controls:
        lines += ["", "**Positive controls** (must rise above the base): " + "; ".join(
            f"{name} − base {_ci(final[name]['reward_minus_base'], signed=True)} "
            f"({_resolved(final[name]['reward_minus_base'], 'resolved above', 'resolved below')})"
            for name in controls) + "."]
    lines += _tuning_markdown(summary)
    for name, curve in summary["precision"].items():
        caption = (f"AAF sign precision for `{name}` (agreement of one (t, eps) draw with the sign of the mean "
                   "anchor, averaged over the pool's earlier snapshots, winners and seeds):")
        lines += ["", caption, "",
                  "| step | precision over pool | vs θ₀ | mean anchor |", "|---|---|---|---|"]
        lines += [f"| {s} | {p:.3f} | {i:.3f} | {a:+.2e} |" for s, p, i, a in
                  zip(curve["steps"], curve["pool_mean"], curve["vs_initial"], curve["mean_anchor"])]
    return "\n".join(lines) + "\n"


def _tuning_markdown(summary: dict[str, Any]) -> list[str]:
    tables = summary["tuning"]
    base = tables["base"]
    lines = ["", f"## Tuning on the validation prompts ({len(summary['prompts']['validation'])})", "",
             ("One run per grid point (training seed apart from the comparison's), scored at its final step; "
              f"the highest mean reward is chosen (**bold**). Base model: reward {base['reward']:.3f}, "
              f"good-clip share {base[GOOD_REWARD_KEY]:.2f}."), ""]
    for name, rows in tables.items():
        if name == "base":
            continue
        lines += [f"`{name}`:", "", "| settings | validation reward | good-clip share |", "|---|---|---|"]
        for row in rows:
            mark = "**" if row["chosen"] else ""
            lines.append(f"| {mark}{_point(row['point'])}{mark} | {row['reward']:.3f} | {row[GOOD_REWARD_KEY]:.2f} |")
        lines.append("")
    untuned = {n: p for n, p in summary["chosen"].items() if n not in tables}
    if untuned:
        lines.append("Ablations use the settings chosen for the method they ablate: " + "; ".join(
            f"{name}: {_point(point)}" for name, point in untuned.items()) + ".")
    return lines


# ---------------------------------------------------------------- plots


def plot(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """reward_vs_step.png, good_share_vs_step.png, flip_rate.png and sign_precision.png in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for metric, label, file in (("reward", "validation reward", "reward_vs_step.png"),
                                (GOOD_REWARD_KEY, "validation good-clip share", "good_share_vs_step.png")):
        figure, axis = plt.subplots(figsize=(7, 4.5))
        for name, curves in summary["curves"].items():
            curve = curves[metric]
            (line,) = axis.plot(curves["steps"], curve["mean"], marker="o", markersize=3, label=name)
            axis.fill_between(curves["steps"], curve["ci_low"], curve["ci_high"], color=line.get_color(), alpha=0.12)
        _finish(axis, "alignment step", label, f"{label.capitalize()} vs step (mean, 95% CI over seeds and prompts)")
        written.append(_save(figure, out_dir / file))

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


