"""A time-lapse world whose quality can be measured without a learned reward (``data.kind: world``).

A clip is a latent tensor ``[C, F, H, W]``: one coloured disc (a channel) at
a named position whose radius grows or shrinks linearly over the frames.
The prompt names the three attributes: "red growing left: a disc,
time-lapse". Bad clips break the time-lapse in one way each: they flicker,
jump, stall, run backwards, or show the wrong colour.

The reward scores a clip against its prompt from that definition alone:
the disc's area per frame (on the prompted channel) must move in the
prompted direction, by the full amount, monotonically and smoothly, on the
prompted channel, at the prompted position. Each term is in [0, 1] and the
reward is their mean, so a perfect clip scores about 1; a clip is *good* at
``GOOD_REWARD`` or more (every good clip the world draws is, and almost no defective one).

The world lives in latent space (no VAE): ``WorldDataset`` serves its clips as latents, and
``to_rgb`` paints them (one colour per channel) for videos a person can look at.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from seppo_video.config import ConfigError, WorldDataConfig

COLOURS = ("red", "green", "blue", "yellow")  # one latent channel each
POSITIONS = {"left": (0.5, 0.3), "right": (0.5, 0.7), "top": (0.3, 0.5), "bottom": (0.7, 0.5), "centre": (0.5, 0.5)}
DIRECTIONS = ("growing", "shrinking")
DEFECTS = ("flicker", "jump", "stall", "backwards", "wrong_colour")
AMPLITUDE = 3.0  # disc intensity in latent units: the clips then have roughly unit spread
REWARD_TERMS = ("progress", "monotonic", "smooth", "colour", "position")
GOOD_REWARD = 0.8  # good clips score 0.89-0.98, defective ones 0.36-0.77 (tests/test_world.py)
# The prompts' words, whole tokens of the world model's tokenizer (as common words are in CLIP's).
WORDS = (*COLOURS, *DIRECTIONS, *POSITIONS, "a", "disc", "time", "lapse")
RGB = {"red": (1.0, 0.15, 0.1), "green": (0.1, 0.85, 0.2), "blue": (0.15, 0.35, 1.0), "yellow": (1.0, 0.9, 0.1)}


@dataclass(frozen=True)
class Prompt:
    colour: str
    position: str
    direction: str

    @property
    def text(self) -> str:
        # Attributes first: the causal text encoder then lets them shape every later token state.
        return f"{self.colour} {self.direction} {self.position}: a disc, time-lapse"

    @property
    def channel(self) -> int:
        return COLOURS.index(self.colour)

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "growing" else -1.0


def all_prompts() -> list[Prompt]:
    return [Prompt(c, p, d) for c, p, d in itertools.product(COLOURS, POSITIONS, DIRECTIONS)]


@dataclass(frozen=True)
class PromptSplit:
    train: list[Prompt]
    validation: list[Prompt]  # for choosing hyperparameters
    held_out: list[Prompt]  # scored once, at the end


def split_prompts(validation: int, held_out: int, seed: int) -> PromptSplit:
    """A seeded random split of the prompts; every attribute value stays in training."""
    prompts = all_prompts()
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed)).tolist()
    held = [prompts[i] for i in order[:held_out]]
    valid = [prompts[i] for i in order[held_out:held_out + validation]]
    train = [prompts[i] for i in order[held_out + validation:]]
    for values, attr in ((COLOURS, "colour"), (POSITIONS, "position"), (DIRECTIONS, "direction")):
        missing = set(values) - {getattr(p, attr) for p in train}
        if missing:
            raise ValueError(f"the split leaves no training prompt with {attr} {sorted(missing)}; "
                             "hold out fewer prompts")
    return PromptSplit(train, valid, held)


@dataclass(frozen=True)
class WorldShape:
    channels: int = 4
    frames: int = 8
    size: int = 8  # latent height = width

    def grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        axis = (torch.arange(self.size, dtype=torch.float32) + 0.5) / self.size
        return torch.meshgrid(axis, axis, indexing="ij")


def radii(shape: WorldShape, start: float, end: float) -> torch.Tensor:
    """Disc radius per frame, in units of the image side, linear in time."""
    return torch.linspace(start, end, shape.frames)


def render(shape: WorldShape, channel: int, position: str, radius: torch.Tensor, amplitude: torch.Tensor) -> torch.Tensor:
    """A clip ``[C, F, H, W]`` with a soft-edged disc of per-frame ``radius`` and ``amplitude``."""
    ys, xs = shape.grid()
    cy, cx = POSITIONS[position]
    distance = torch.sqrt((ys - cy) ** 2 + (xs - cx) ** 2)  # [H, W]
    edge = 0.5 / shape.size  # half a latent pixel
    disc = torch.sigmoid((radius[:, None, None] - distance) / edge)  # [F, H, W]
    clip = torch.zeros(shape.channels, shape.frames, shape.size, shape.size)
    clip[channel] = amplitude[:, None, None] * disc
    return clip


def good_clip(shape: WorldShape, prompt: Prompt, generator: torch.Generator) -> torch.Tensor:
    """A correct time-lapse for ``prompt``: smooth, monotone, full-range change."""
    small = 0.05 + 0.05 * torch.rand((), generator=generator).item()
    large = 0.30 + 0.08 * torch.rand((), generator=generator).item()
    radius = radii(shape, small, large) if prompt.sign > 0 else radii(shape, large, small)
    clip = render(shape, prompt.channel, prompt.position, radius, torch.full((shape.frames,), AMPLITUDE))
    return clip + 0.05 * torch.randn(clip.shape, generator=generator)


def bad_clip(shape: WorldShape, prompt: Prompt, defect: str, generator: torch.Generator) -> torch.Tensor:
    """A clip for ``prompt`` with one ``defect`` (see ``DEFECTS``)."""
    if defect == "backwards":
        return good_clip(shape, prompt, generator).flip(1)
    if defect == "wrong_colour":
        wrong = COLOURS[(prompt.channel + 1 + int(torch.randint(3, (1,), generator=generator))) % len(COLOURS)]
        return good_clip(shape, Prompt(wrong, prompt.position, prompt.direction), generator)
    clip = good_clip(shape, prompt, generator)
    channel = clip[prompt.channel]
    if defect == "flicker":  # the disc blinks: every other frame dims strongly
        dim = 0.15 + 0.2 * torch.rand(shape.frames, generator=generator)
        channel[1::2] *= dim[1::2, None, None]
    elif defect == "jump":  # frames out of order
        channel.copy_(channel[torch.randperm(shape.frames, generator=generator)])
    elif defect == "stall":  # no progress: one frame held throughout
        channel.copy_(channel[shape.frames // 2].expand_as(channel))
    else:
        raise ValueError(f"unknown defect {defect!r} (allowed: {', '.join(DEFECTS)})")
    return clip


# ---------------------------------------------------------------- the reward


def disc_area(clip: torch.Tensor, channel: int) -> torch.Tensor:
    """Per-frame disc area on ``channel`` as a fraction of the image (``clip [C, F, H, W]`` -> ``[F]``)."""
    return (clip[channel].clamp(0, AMPLITUDE) / AMPLITUDE).mean(dim=(-2, -1))


def reward_terms(clip: torch.Tensor, prompt: Prompt) -> dict[str, float]:
    """Each reward term of one clip, in [0, 1] (1 = as the prompt asks)."""
    area = disc_area(clip, prompt.channel).double()
    steps = area.diff() * prompt.sign  # positive when the disc changes the way it should
    full_change = math.pi * (0.34**2 - 0.075**2)  # a typical good clip's area change
    positive = clip.clamp(min=0).double()
    mass = positive[prompt.channel].sum(dim=0)  # [H, W], summed over frames
    ys, xs = WorldShape(clip.shape[0], clip.shape[1], clip.shape[2]).grid()
    total = mass.sum().clamp(min=1e-8)
    cy, cx = float((mass * ys).sum() / total), float((mass * xs).sum() / total)
    ty, tx = POSITIONS[prompt.position]
    return {
        "progress": float((steps.sum() / full_change).clamp(0, 1)),
        "monotonic": float((steps > 0).double().mean()),
        # Frame-to-frame jitter beyond the straight line from first to last frame.
        "smooth": float(torch.exp(-steps.diff().abs().mean() / (full_change / (len(area) - 1)))),
        "colour": float(positive[prompt.channel].sum() / positive.sum().clamp(min=1e-8)),
        "position": math.exp(-((cy - ty) ** 2 + (cx - tx) ** 2) / (2 * 0.1**2)),
    }


def reward(clip: torch.Tensor, prompt: Prompt) -> float:
    terms = reward_terms(clip, prompt)
    return sum(terms.values()) / len(terms)


def is_good(clip: torch.Tensor, prompt: Prompt) -> bool:
    return reward(clip, prompt) >= GOOD_REWARD


# ---------------------------------------------------------------- data


def world_items(prompts: list[Prompt], shape: WorldShape, per_prompt: int, seed: int,
                bad_fraction: float) -> list[tuple[Prompt, torch.Tensor, torch.Tensor]]:
    """Per item: (prompt, shown clip, defective twin). The shown clip is the defective twin with
    probability ``bad_fraction`` (pretraining mixtures), else a good clip; defects take turns."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for index in range(len(prompts) * per_prompt):
        prompt = prompts[index % len(prompts)]
        defect = DEFECTS[index % len(DEFECTS)]
        good, bad = good_clip(shape, prompt, generator), bad_clip(shape, prompt, defect, generator)
        shown = bad if torch.rand((), generator=generator).item() < bad_fraction else good
        items.append((prompt, shown, bad))
    return items


class WorldDataset(Dataset):
    """The world's training prompts as latent items: ``latents`` (the winner), ``prompt``, and with
    ``pairs`` ``loser_latents`` (its defective twin, for the Diffusion-DPO baseline)."""

    def __init__(self, config: WorldDataConfig, shape: WorldShape, pairs: bool):
        if pairs and config.bad_fraction > 0:
            raise ConfigError("data.world.bad_fraction: pairs (seppo.method='dpo') need good winners; set it to 0")
        prompts = split_prompts(config.validation_prompts, config.held_out_prompts, config.split_seed).train
        self.items = world_items(prompts, shape, config.clips_per_prompt, config.clip_seed, config.bad_fraction)
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        prompt, shown, bad = self.items[index]
        item = {"id": f"world{index:05d}", "prompt": prompt.text, "latents": shown}
        if self.pairs:
            item["loser_latents"] = bad
        return item


def prompt_of(text: str) -> Prompt:
    """The world prompt whose text is ``text``."""
    for prompt in all_prompts():
        if prompt.text == text:
            return prompt
    raise ValueError(f"{text!r} is not a prompt of the world (e.g. {all_prompts()[0].text!r})")


# ---------------------------------------------------------------- pictures


def to_rgb(clip: torch.Tensor, scale: int = 8) -> np.ndarray:
    """A clip painted for people: ``uint8 [F, H * scale, W * scale, 3]``, each channel's disc in its
    colour (intensity = the latent over ``AMPLITUDE``, clipped to [0, 1]) on black."""
    weights = clip[: len(COLOURS)].clamp(0, AMPLITUDE).float() / AMPLITUDE  # [C, F, H, W]
    colours = torch.tensor([RGB[c] for c in COLOURS])  # [C, 3]
    frames = torch.einsum("cfhw,ck->fhwk", weights, colours).clamp(0, 1)
    frames = frames.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    return (frames * 255).round().to(torch.uint8).numpy()
