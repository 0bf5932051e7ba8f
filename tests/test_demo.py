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
from seppo_video.models.tiny import WORLD_BASE_DIRS
from seppo_video.study.base import world_base_info


@pytest.mark.parametrize(("kind", "config"), [("modelscope", "world_base.yaml"), ("wan", "world_base_wan.yaml")])
def test_the_shipped_world_bases_are_what_their_recipes_say(repo_root, kind, config):
    """The committed weights match the sha256 recorded at build time, and the recorded recipe is the
    shipped config (so `seppo-video make-world-base --config configs/<config>` is the command that
    rebuilds them); both bases see the same world and prompt split, so their studies compare."""
    import yaml

    from seppo_video.atomic import file_sha256

    folder = WORLD_BASE_DIRS[kind]
    info = world_base_info(folder)
    assert file_sha256(folder / info["weights"]) == info["weights_sha256"]
    assert info["config"] == yaml.safe_load((repo_root / "configs" / config).read_text())
    assert info["overrides"] == [] and info["config"]["model"]["kind"] == kind
    assert info["config"]["data"]["world"] == world_base_info(WORLD_BASE_DIRS["modelscope"])["config"]["data"]["world"]


def test_the_demo_sees_the_world_its_base_was_trained_on(repo_root):
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

    pipe = TextToVideoSDPipeline.from_pretrained(WORLD_BASE_DIRS["modelscope"])
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


def test_the_wan_world_base_is_scored_on_what_wan_pipeline_samples():
    """The study's evaluator on the shipped Wan base gives the rewards of WanPipeline's own latents
    (flow-matching Euler at the base's shift, same prompts and per-sample seeds)."""
    from diffusers import WanPipeline

    from seppo_video.config import ModelConfig
    from seppo_video.study.base import world_base_config
    from seppo_video.study.evaluate import WorldEvaluator, WorldSampling

    recipe = world_base_config(WORLD_BASE_DIRS["wan"])
    world = recipe.data.world
    prompts = split_prompts(world.validation_prompts, world.held_out_prompts, world.split_seed).held_out[:2]
    sampling = WorldSampling(samples_per_prompt=2, num_inference_steps=4)
    frames = 1 + (recipe.data.num_frames - 1) // 4
    evaluator = WorldEvaluator(ModelConfig(kind="wan", pretrained="world", trainable="full"), prompts, sampling,
                               frames=frames, size=recipe.data.resolution // 4)
    ours = evaluator.rewards()
    pipe = WanPipeline.from_pretrained(WORLD_BASE_DIRS["wan"])
    for i, prompt in enumerate(prompts):
        latents = pipe([prompt.text] * 2, num_frames=recipe.data.num_frames, height=recipe.data.resolution,
                       width=recipe.data.resolution, num_inference_steps=4, guidance_scale=1.0, output_type="latent",
                       generator=[torch.Generator().manual_seed(1000 * i + k) for k in range(2)]).frames
        np.testing.assert_allclose(ours[i], [reward(clip, prompt) for clip in latents], atol=1e-4)
