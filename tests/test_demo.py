"""The README demo (configs/tiny.yaml): the shipped world base, SePPO from winners, and the before -> after report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from seppo_video.config import load_config
from seppo_video.data.world import GOOD_REWARD, prompt_of, reward, split_prompts
from seppo_video.models.tiny import WORLD_BASE_DIR
from seppo_video.study.base import world_base_info


def test_the_shipped_world_base_is_what_its_recipe_says(repo_root):
    """The committed weights match the sha256 recorded at build time, and the recorded recipe is the
    shipped configs/world_base.yaml (so `seppo-video make-world-base --config configs/world_base.yaml`
    is the command that rebuilds them)."""
    import yaml

    from seppo_video.atomic import file_sha256
    from seppo_video.study.base import UNET_WEIGHTS

    info = world_base_info(WORLD_BASE_DIR)
    assert file_sha256(WORLD_BASE_DIR / UNET_WEIGHTS) == info["unet_sha256"]
    assert info["config"] == yaml.safe_load((repo_root / "configs" / "world_base.yaml").read_text())
    assert info["overrides"] == []
    # the demo and the study read the world's split from the base's recipe; the demo must agree with it
    demo = load_config(repo_root / "configs" / "tiny.yaml")
    recipe = load_config(repo_root / "configs" / "world_base.yaml")
    assert (demo.data.num_frames, demo.data.resolution) == (recipe.data.num_frames, recipe.data.resolution)
    for key in ("split_seed", "validation_prompts", "held_out_prompts"):
        assert getattr(demo.data.world, key) == getattr(recipe.data.world, key), key


@pytest.mark.slow
def test_readme_demo_reports_held_out_reward_before_and_after(repo_root, tmp_path):
    out = tmp_path / "tiny"
    result = subprocess.run(
        [sys.executable, "-m", "seppo_video", "train", "--config", str(repo_root / "configs" / "tiny.yaml"),
         f"output_dir={out}", "train.max_steps=4", "train.checkpoint_every=2", "train.log_with=none"],
        check=True, cwd=repo_root, capture_output=True, text=True, timeout=900,
    )
    assert "held-out world prompts" in result.stdout and "good-clip share: before" in result.stdout
    report = json.loads((out / "eval" / "report.json").read_text())
    config = load_config(repo_root / "configs" / "tiny.yaml")
    world = config.data.world
    held_out = split_prompts(world.validation_prompts, world.held_out_prompts, world.split_seed).held_out
    assert report["held_out"] == [p.text for p in held_out]
    rows = {(row["run"], row["metric"]): row for row in report["rows"]}
    before, after = np.asarray(report["rewards"]["before"]), np.asarray(report["rewards"]["after"])
    assert rows[("before", "reward")]["mean"] == pytest.approx(before.mean())
    assert rows[("after - before", "reward")]["mean"] == pytest.approx((after - before).mean())
    assert rows[("before", "good_share")]["mean"] == pytest.approx((before >= GOOD_REWARD).mean())

    # The base's rewards, recomputed from diffusers' own pipeline sampling the same prompts and seeds.
    from diffusers import TextToVideoSDPipeline

    pipe = TextToVideoSDPipeline.from_pretrained(WORLD_BASE_DIR)
    samples = report["sampling"]["samples_per_prompt"]
    for i in (0, len(held_out) - 1):
        prompt = held_out[i]
        latents = pipe([prompt.text] * samples, num_frames=config.data.num_frames, height=config.data.resolution,
                       width=config.data.resolution, num_inference_steps=report["sampling"]["num_inference_steps"],
                       guidance_scale=1.0, output_type="latent",
                       generator=[torch.Generator().manual_seed(1000 * i + k) for k in range(samples)]).frames
        expected = [reward(clip, prompt_of(prompt.text)) for clip in latents]
        np.testing.assert_allclose(before[i], expected, atol=1e-4)

    for folder in ("base_samples", "samples"):  # what the viewer shows side by side
        index = json.loads((out / folder / "index.json").read_text())
        assert {v["prompt"] for v in index["videos"]} == {p.text for p in held_out}
        assert all((out / folder / v["mp4"]).is_file() and (out / folder / v["gif"]).is_file() for v in index["videos"])
