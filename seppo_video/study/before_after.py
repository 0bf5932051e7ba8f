"""Did training on the world improve the model? Held-out reward before -> after, with intervals.

``seppo-video train`` calls ``report_before_after`` at the end of a run on ``data.kind: world``
(the README's demo): the base model and the trained policy sample the world's held-out prompts
from the same initial noise; the reward and the good-clip share of both, and their paired
difference, get crossed-bootstrap intervals over prompts and sampling seeds (one training run,
so training-seed variation is not in them: the study measures that). Sample videos of both go to
``base_samples/`` and ``samples/``, the figures to ``eval/report.json`` (the viewer shows both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seppo_video.atomic import atomic_write_json
from seppo_video.checkpoint import find_checkpoint
from seppo_video.config import Config
from seppo_video.data.world import split_prompts
from seppo_video.evaluation.stats import Summary, paired_difference, summarize
from seppo_video.models.adapters import latent_shape
from seppo_video.sample import BASE_SAMPLES
from seppo_video.study.evaluate import WorldEvaluator, WorldSampling, good_share, write_clip_videos
from seppo_video.train import policy_weights

VIDEO_SEEDS = 2  # sample videos written per held-out prompt and model


def report_before_after(config: Config, sampling: WorldSampling | None = None, n_boot: int = 2000) -> dict[str, Any]:
    """Score the base model and the run's final policy on the held-out prompts; print and save the figures."""
    sampling = sampling or WorldSampling()
    out = Path(config.output_dir)
    world = config.data.world
    held_out = split_prompts(world.validation_prompts, world.held_out_prompts, world.split_seed).held_out
    _, frames, size, _ = latent_shape(config.model, config.data.num_frames, config.data.resolution)
    evaluator = WorldEvaluator(config.model, held_out, sampling, frames, size)
    before = evaluator.clips()
    names = list(evaluator.base_state)
    evaluator.load(policy_weights(config, find_checkpoint(out, "latest"), names))
    after = evaluator.clips()
    rewards = {"before": evaluator.rewards(before), "after": evaluator.rewards(after)}
    for name, clips, model in ((BASE_SAMPLES, before, "base"), ("samples", after, "policy")):
        write_clip_videos(clips, held_out, sampling.samples_per_prompt, VIDEO_SEEDS, out / name, model=model)
    report = _summaries(rewards, n_boot)
    rows = [{"run": run, "metric": metric, **{k: s[k] for k in ("mean", "ci_low", "ci_high")}}
            for (run, metric), s in report.items()]
    atomic_write_json(out / "eval" / "report.json", {
        "what": "world held-out prompts: base model (before) vs trained policy (after); 95% crossed-bootstrap "
                "intervals over prompts and sampling seeds of one training run",
        "held_out": [p.text for p in held_out], "sampling": vars(sampling), "rows": rows,
        "rewards": {k: v.tolist() for k, v in rewards.items()},
    })
    print(describe(report, len(held_out), sampling.samples_per_prompt))
    return {"rows": rows}


def _summaries(rewards: dict[str, np.ndarray], n_boot: int) -> dict[tuple[str, str], dict[str, Any]]:
    shares = {k: good_share(v) for k, v in rewards.items()}
    results: dict[tuple[str, str], Summary] = {}
    for metric, values in (("reward", rewards), ("good_share", shares)):
        results[("before", metric)] = summarize(values["before"], n_boot=n_boot)
        results[("after", metric)] = summarize(values["after"], n_boot=n_boot)
        results[("after - before", metric)] = paired_difference(values["after"], values["before"], n_boot=n_boot)
    return {key: summary.to_dict() for key, summary in results.items()}


def describe(report: dict[tuple[str, str], dict[str, Any]], prompts: int, samples: int) -> str:
    """Two lines a person reads at the end of the demo."""
    def fmt(key: tuple[str, str], signed: bool = False) -> str:
        s = report[key]
        sign = "+" if signed else ""
        return f"{s['mean']:{sign}.3f} [{s['ci_low']:{sign}.3f}, {s['ci_high']:{sign}.3f}]"

    lines = [f"held-out world prompts ({prompts} prompts x {samples} samples, 95% interval):"]
    for metric, label in (("reward", "reward"), ("good_share", "good-clip share")):
        diff = report[("after - before", metric)]
        verdict = "resolved" if diff["ci_low"] > 0 or diff["ci_high"] < 0 else "not resolved"
        lines.append(f"  {label}: before {fmt(('before', metric))} -> after {fmt(('after', metric))}; "
                     f"difference {fmt(('after - before', metric), signed=True)} ({verdict})")
    return "\n".join(lines)
