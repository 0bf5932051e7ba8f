"""GPT4o-MTScore: a remote multimodal model rates how much the scene changes (1–5).

A remote, paid call: it runs only when enabled explicitly with a client
callable the user supplies, ``client(frames, rubric) -> float | str``,
where ``frames`` are 8 ``uint8 [H, W, 3]`` frames (first, last and evenly
spaced between, short edge 256). Nothing here talks to a network itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seppo_video.evaluation.errors import EvalError
from seppo_video.evaluation.metrics.base import VideoItem
from seppo_video.evaluation.video import evenly_spaced_indices, to_tensor

GPT4O_FRAMES = 8
GPT4O_SHORT_EDGE = 256
RUBRIC = """You are shown frames sampled in order from one video, first to last.
Rate how much the scene itself transforms over the video (metamorphic amplitude),
ignoring camera motion and image quality:
1 - nothing changes: the scene is static or only trivially moves.
2 - small changes: minor motion or slight change of appearance.
3 - moderate change: a visible process progresses but the scene stays mostly the same.
4 - large change: a clear transformation (e.g. growth, melting, construction, day to night).
5 - complete transformation: the end state is fundamentally different from the start.
Answer with a single integer from 1 to 5."""

Client = Callable[[list[np.ndarray], str], Any]


def gpt4o_frames(frames: np.ndarray) -> list[np.ndarray]:
    """8 frames (first, last, evenly spaced), resized so the short edge is 256."""
    picked = to_tensor(frames[evenly_spaced_indices(len(frames), GPT4O_FRAMES)])
    height, width = picked.shape[-2:]
    scale = GPT4O_SHORT_EDGE / min(height, width)
    size = (round(height * scale), round(width * scale))
    resized = F.interpolate(picked, size=size, mode="bilinear", align_corners=False, antialias=True)
    as_uint8 = (resized.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return list(as_uint8)


def parse_rating(answer: Any) -> float:
    """The 1–5 rating in a client's answer (a number, or text containing one)."""
    if isinstance(answer, (int, float)):
        value = float(answer)
    else:
        match = re.search(r"[1-5](?:\.\d+)?", str(answer))
        if match is None:
            raise EvalError(f"GPT4o-MTScore client answered {answer!r}: no rating 1-5 in it")
        value = float(match.group())
    if not 1.0 <= value <= 5.0:
        raise EvalError(f"GPT4o-MTScore client answered {value}, outside 1-5")
    return value


class GPT4oMTScore:
    name = "gpt4o_mtscore"
    needs_reference = False

    def __init__(self, client: Client, client_name: str):
        self.client, self.client_name = client, client_name

    def fingerprint(self) -> dict[str, Any]:
        return {"client": self.client_name, "rubric": RUBRIC}

    def score(self, item: VideoItem) -> dict[str, float]:
        return {"score": parse_rating(self.client(gpt4o_frames(item.frames), RUBRIC))}
