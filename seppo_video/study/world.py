"""A time-lapse world whose quality can be measured without a learned reward.

A clip is a latent tensor ``[C, F, H, W]``: one coloured disc (a channel) at
a named position whose radius grows or shrinks linearly over the frames.
The prompt names the three attributes: "red growing left: a disc,
time-lapse". Bad clips break the time-lapse in one way each: they flicker,
jump, stall, run backwards, or show the wrong colour.

The reward scores a clip against its prompt from that definition alone:
the disc's area per frame (on the prompted channel) must move in the
prompted direction, by the full amount, monotonically and smoothly, on the
prompted channel, at the prompted position. Each term is in [0, 1] and the
reward is their mean, so a perfect clip scores about 1.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

COLOURS = ("red", "green", "blue", "yellow")  # one latent channel each
POSITIONS = {"left": (0.5, 0.3), "right": (0.5, 0.7), "top": (0.3, 0.5), "bottom": (0.7, 0.5), "centre": (0.5, 0.5)}
DIRECTIONS = ("growing", "shrinking")
DEFECTS = ("flicker", "jump", "stall", "backwards", "wrong_colour")
AMPLITUDE = 3.0  # disc intensity in latent units: the clips then have roughly unit spread
REWARD_TERMS = ("progress", "monotonic", "smooth", "colour", "position")


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


def split_prompts(num_held_out: int, seed: int) -> tuple[list[Prompt], list[Prompt]]:
    """(train, held-out): a seeded random split; every attribute value stays in training."""
    prompts = all_prompts()
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed)).tolist()
    held = [prompts[i] for i in order[:num_held_out]]
    train = [prompts[i] for i in order[num_held_out:]]
    for values, attr in ((COLOURS, "colour"), (POSITIONS, "position"), (DIRECTIONS, "direction")):
        missing = set(values) - {getattr(p, attr) for p in train}
        if missing:
            raise ValueError(f"held-out split leaves no training prompt with {attr} {sorted(missing)}; hold out fewer")
    return train, held


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
