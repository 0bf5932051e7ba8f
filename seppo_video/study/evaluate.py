"""Scoring a model on the synthetic world: sample prompts with fixed seeds, reward each clip.

The same evaluator serves the study (every checkpoint of every run) and the demo's
before -> after report (``seppo-video train`` on ``data.kind: world``): the base model and the
trained policy sample the same prompts from the same initial noise, so their rewards are paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seppo_video.config import ModelConfig
from seppo_video.data.video import write_video
from seppo_video.data.world import GOOD_REWARD, Prompt, reward, to_rgb
from seppo_video.models.adapters import load_adapter
from seppo_video.sample import prompt_slug
from seppo_video.seppo.sampler import sample_latents

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class WorldSampling:
    """How clips are sampled for scoring (DDIM with the model's own schedule)."""

    samples_per_prompt: int = 8
    num_inference_steps: int = 20
    guidance_scale: float = 1.0  # the world models are trained without an empty prompt: no CFG


class WorldEvaluator:
    """Samples ``prompts`` with seeds fixed per (prompt, sample) and scores them with the world's reward.

    ``load`` swaps policy weights in (``None``: the base model again), so one loaded model scores
    every checkpoint of a run.
    """

    def __init__(self, model: ModelConfig, prompts: list[Prompt], sampling: WorldSampling, frames: int, size: int):
        self.adapter = load_adapter(model)
        self.adapter.to(DEVICE)
        self.adapter.unet.to(DEVICE)
        self.base_state = {k: v.clone() for k, v in self.adapter.trainable_state().items()}
        self.prompts, self.sampling, self.frames, self.size = prompts, sampling, frames, size
        repeats = sampling.samples_per_prompt
        with torch.no_grad():
            self.embeds = self.adapter.encode_prompt([p.text for p in prompts]).repeat_interleave(repeats, 0)
            self.negative = self.adapter.encode_prompt([""])
        self.seeds = [1000 * i + k for i in range(len(prompts)) for k in range(repeats)]

    def load(self, tensors: dict[str, torch.Tensor] | None) -> None:
        """Policy weights to score; ``None`` restores the base model."""
        self.adapter.unet.load_state_dict(tensors if tensors is not None else self.base_state, strict=False)

    def clips(self) -> torch.Tensor:
        """One clip per (prompt, sample): ``[prompts * samples, C, F, H, W]`` on the CPU."""
        return sample_latents(
            self.adapter, self.embeds, self.negative, seeds=self.seeds, num_frames=self.frames,
            latent_size=(self.size, self.size), num_inference_steps=self.sampling.num_inference_steps,
            guidance_scale=self.sampling.guidance_scale,
        ).float().cpu()

    def rewards(self, clips: torch.Tensor | None = None) -> np.ndarray:
        """Reward of every sample: ``[prompts, samples]`` (of ``clips``, or of fresh samples)."""
        clips = self.clips() if clips is None else clips
        repeats = self.sampling.samples_per_prompt
        values = [reward(clip, self.prompts[i // repeats]) for i, clip in enumerate(clips)]
        return np.asarray(values).reshape(len(self.prompts), repeats)


def good_share(rewards: np.ndarray) -> np.ndarray:
    """1 where a sample is a good clip (reward >= ``GOOD_REWARD``), else 0: same layout as ``rewards``."""
    return (np.asarray(rewards) >= GOOD_REWARD).astype(np.float64)


def write_clip_videos(clips: torch.Tensor, prompts: list[Prompt], samples_per_prompt: int, seeds: int,
                      out: Path, model: str, fps: int = 4) -> list[dict[str, Any]]:
    """The first ``seeds`` samples of each prompt as mp4 + gif (``to_rgb``) under ``out/<prompt>/``,
    listed in ``out/index.json`` in the layout ``seppo-video sample`` writes (the viewer reads it)."""
    from seppo_video.atomic import atomic_write_json

    records = []
    for index, clip in enumerate(clips):
        prompt, sample = prompts[index // samples_per_prompt], index % samples_per_prompt
        if sample >= seeds:
            continue
        relative = Path(prompt_slug(prompt.text)) / f"seed{sample}.mp4"
        frames = to_rgb(clip)
        write_video(frames, out / relative, fps)
        write_video(frames, out / relative.with_suffix(".gif"), fps)
        records.append({"prompt": prompt.text, "seed": sample, "mp4": str(relative),
                        "gif": str(relative.with_suffix(".gif"))})
    atomic_write_json(out / "index.json", {"model": model, "settings": {"rendered": "world latents (to_rgb)"},
                                          "videos": records})
    return records
