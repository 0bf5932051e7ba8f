"""The synthetic world (seppo_video/data/world.py): its reward, prompts, split, dataset and pictures,
and the world model's whole-word tokenizer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seppo_video.config import ConfigError, DataConfig, ModelConfig, WorldDataConfig
from seppo_video.data import build_dataset, collate
from seppo_video.data.world import (
    AMPLITUDE,
    COLOURS,
    DEFECTS,
    DIRECTIONS,
    GOOD_REWARD,
    POSITIONS,
    RGB,
    WORDS,
    Prompt,
    WorldDataset,
    WorldShape,
    all_prompts,
    bad_clip,
    good_clip,
    prompt_of,
    reward,
    reward_terms,
    split_prompts,
    to_rgb,
)
from seppo_video.models.tiny import build_tokenizer

# ---------------------------------------------------------------- the reward


def _hand_clip(pixels_per_frame: list[int], channel: int = 0) -> torch.Tensor:
    """Frame f lights the first ``pixels_per_frame[f]`` pixels (row-major) of ``channel`` at full amplitude."""
    clip = torch.zeros(4, len(pixels_per_frame), 8, 8)
    for frame, count in enumerate(pixels_per_frame):
        clip[channel, frame].view(-1)[:count] = AMPLITUDE
    return clip


def test_reward_terms_on_hand_made_clips():
    growing = Prompt("red", "centre", "growing")
    full = math.pi * (0.34**2 - 0.075**2)  # the reward's full change, as a fraction of the 64 pixels
    counts = [round(64 * (0.02 + full * f / 7)) for f in range(8)]  # linear, monotone, a full change
    terms = reward_terms(_hand_clip(counts), growing)
    assert terms["monotonic"] == 1.0
    assert terms["progress"] == pytest.approx(min(1.0, (counts[-1] - counts[0]) / 64 / full))
    assert terms["colour"] == 1.0
    # Mass in the first rows: centroid at (mean row + 0.5) / 8 of the lit pixels, summed over frames.
    rows = np.concatenate([np.arange(c) // 8 for c in counts])
    cols = np.concatenate([np.arange(c) % 8 for c in counts])
    cy, cx = (rows.mean() + 0.5) / 8, (cols.mean() + 0.5) / 8
    assert terms["position"] == pytest.approx(math.exp(-((cy - 0.5) ** 2 + (cx - 0.5) ** 2) / (2 * 0.1**2)))

    backwards = reward_terms(_hand_clip(counts[::-1]), growing)
    assert backwards["progress"] == 0.0 and backwards["monotonic"] == 0.0
    other_channel = reward_terms(_hand_clip(counts, channel=2), growing)
    assert other_channel["colour"] == 0.0
    shrinking = Prompt("red", "centre", "shrinking")
    assert reward_terms(_hand_clip(counts[::-1]), shrinking)["monotonic"] == 1.0


def test_good_clips_outscore_every_defect():
    shape, generator = WorldShape(), torch.Generator().manual_seed(0)
    prompts = all_prompts()
    good = np.mean([reward(good_clip(shape, p, generator), p) for p in prompts])
    assert good > 0.85
    for defect in DEFECTS:
        bad = np.mean([reward(bad_clip(shape, p, defect, generator), p) for p in prompts])
        assert bad < good - 0.2, defect
    noise = np.mean([reward(torch.randn(4, 8, 8, 8, generator=generator), p) for p in prompts])
    assert noise < 0.4


def test_good_reward_separates_good_clips_from_defective_ones():
    shape, generator = WorldShape(), torch.Generator().manual_seed(1)
    prompts = all_prompts()
    good = [reward(good_clip(shape, p, generator), p) for p in prompts for _ in range(5)]
    assert min(good) >= GOOD_REWARD
    for defect in DEFECTS:
        bad = [reward(bad_clip(shape, p, defect, generator), p) for p in prompts for _ in range(5)]
        assert max(bad) < GOOD_REWARD, defect


def test_three_way_split_is_disjoint_and_keeps_every_attribute_in_training():
    split = split_prompts(validation=8, held_out=8, seed=0)
    assert (len(split.train), len(split.validation), len(split.held_out)) == (24, 8, 8)
    train, valid, held = set(split.train), set(split.validation), set(split.held_out)
    assert not (train & valid or train & held or valid & held)
    assert train | valid | held == set(all_prompts())
    for values, attr in ((COLOURS, "colour"), (POSITIONS, "position"), (DIRECTIONS, "direction")):
        assert {getattr(p, attr) for p in split.train} == set(values)
    assert split_prompts(8, 8, seed=0) == split  # a function of the seed
    assert split_prompts(8, 8, seed=1).held_out != split.held_out
    with pytest.raises(ValueError, match="hold out fewer"):
        split_prompts(validation=20, held_out=18, seed=0)


def test_prompt_of_inverts_the_prompt_text():
    for prompt in all_prompts():
        assert prompt_of(prompt.text) == prompt
    with pytest.raises(ValueError, match="not a prompt of the world"):
        prompt_of("a purple disc")


# ---------------------------------------------------------------- the tokenizer


def test_world_words_are_single_tokens_whatever_their_order(tmp_path):
    forward = build_tokenizer(tmp_path / "a", words=WORDS)
    backward = build_tokenizer(tmp_path / "b", words=WORDS[::-1])
    for word in WORDS:
        assert forward.tokenize(word) == [word + "</w>"], word
    for prompt in all_prompts()[:6]:
        assert forward.tokenize(prompt.text) == backward.tokenize(prompt.text)
        tokens = forward.tokenize(prompt.text)
        # "red growing left: a disc, time-lapse": colour, direction, position are tokens 0, 1, 2
        assert tokens[:3] == [f"{prompt.colour}</w>", f"{prompt.direction}</w>", f"{prompt.position}</w>"]
    # A word that is not listed falls back to characters; the listed suffix 'ing' merges, as in real BPE.
    assert forward.tokenize("sing") == ["s", "ing</w>"]
    assert build_tokenizer(tmp_path / "c").tokenize("red") == ["r", "e", "d</w>"]
    with pytest.raises(ValueError, match="lower-case ASCII letters"):
        build_tokenizer(tmp_path / "d", words=["Red"])


def test_world_words_are_single_pieces_of_the_t5_tokenizer(tmp_path):
    from seppo_video.models.tiny import build_t5_tokenizer

    tokenizer = build_t5_tokenizer(tmp_path / "t5", words=WORDS)
    prompt = all_prompts()[0]
    tokens = tokenizer.tokenize(prompt.text)
    assert tokens[:3] == [f"\u2581{prompt.colour}", f"\u2581{prompt.direction}", f"\u2581{prompt.position}"]
    assert tokens[-1] == "lapse"  # after the hyphen: the piece without the word-start marker
    assert tokenizer.tokenize("reds") == ["\u2581red", "s"]  # an unlisted word falls back to characters
    assert build_t5_tokenizer(tmp_path / "chars").tokenize("red") == ["\u2581r", "e", "d"]


def test_the_world_base_exists_for_modelscope_and_wan_only():
    from seppo_video.config import ModelConfig
    from seppo_video.models.adapters import resolve_paths
    from seppo_video.models.tiny import WORLD_BASE_DIRS

    assert resolve_paths(ModelConfig(kind="wan", pretrained="world")).pipeline == WORLD_BASE_DIRS["wan"]
    with pytest.raises(ConfigError, match=r"shipped for model.kind in \['modelscope', 'wan'\]"):
        resolve_paths(ModelConfig(kind="ltx", pretrained="world"))


# ---------------------------------------------------------------- data


def test_world_dataset_serves_training_prompts_with_defective_twins():
    config = WorldDataConfig(clips_per_prompt=2)
    split = split_prompts(config.validation_prompts, config.held_out_prompts, config.split_seed)
    dataset = WorldDataset(config, WorldShape(), pairs=True)
    assert len(dataset) == 2 * len(split.train)
    texts = {p.text for p in split.train}
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["prompt"] in texts
        prompt = prompt_of(item["prompt"])
        assert reward(item["latents"], prompt) >= GOOD_REWARD > reward(item["loser_latents"], prompt)
    batch = collate([dataset[0], dataset[1]])
    assert batch["latents"].shape == (2, 4, 8, 8, 8) and batch["loser_latents"].shape == (2, 4, 8, 8, 8)
    with pytest.raises(ConfigError, match="data.world.bad_fraction"):
        WorldDataset(WorldDataConfig(bad_fraction=0.3), WorldShape(), pairs=True)


def test_bad_fraction_mixes_in_defective_clips():
    mixed = WorldDataset(WorldDataConfig(clips_per_prompt=10, bad_fraction=0.3), WorldShape(), pairs=False)
    good = np.mean([reward(item["latents"], prompt_of(item["prompt"])) >= GOOD_REWARD
                    for item in (mixed[i] for i in range(len(mixed)))])
    assert 0.6 < good < 0.8  # 240 draws around 70% good


def test_build_dataset_gives_world_latents_in_the_models_latent_shape():
    data = DataConfig(kind="world", num_frames=8, resolution=32)
    dataset = build_dataset(data, ModelConfig(kind="modelscope"), pairs=False)
    assert dataset[0]["latents"].shape == (4, 8, 8, 8)  # the tiny VAE compresses 4x in space
    wan = build_dataset(DataConfig(kind="world", num_frames=9, resolution=32), ModelConfig(kind="wan"), pairs=False)
    assert wan[0]["latents"].shape == (4, 3, 8, 8)  # and Wan's 4x in time: 1 + (9 - 1) / 4 latent frames
    with pytest.raises(ConfigError, match="data.latent_cache"):
        build_dataset(DataConfig(kind="world", latent_cache="x"), ModelConfig(kind="modelscope"), pairs=False)


# ---------------------------------------------------------------- pictures


def test_to_rgb_paints_each_channel_in_its_colour():
    clip = torch.zeros(4, 2, 8, 8)
    clip[0, 0, 1, 2] = AMPLITUDE  # red at full intensity
    clip[3, 1, 5, 5] = AMPLITUDE / 2  # yellow at half
    clip[2, 1, 0, 0] = -AMPLITUDE  # negative latents paint nothing
    frames = to_rgb(clip, scale=4)
    assert frames.shape == (2, 32, 32, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[0, 4:8, 8:12], np.round(np.array(RGB["red"]) * 255).astype(np.uint8)
                                  * np.ones((4, 4, 1), dtype=np.uint8))
    np.testing.assert_array_equal(frames[1, 21, 21], np.round(np.array(RGB["yellow"]) * 255 / 2).astype(np.uint8))
    assert frames[1, 0, 0].sum() == 0 and frames[0].sum() == 16 * np.round(np.array(RGB["red"]) * 255).sum()
