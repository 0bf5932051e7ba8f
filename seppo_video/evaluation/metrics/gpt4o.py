"""GPT4o-MTScore: a remote multimodal model rates how much the scene changes (1–5).

A remote, paid call: it runs only when enabled explicitly with a client
callable the user supplies, ``client(frames, names, rubric) -> str``, where
``frames`` are the 8 official ``uint8 [H, W, 3]`` RGB frames, ``names`` the
file names the official script sends before each image
(``<videoid>_frame<index>.png``) and ``rubric`` the instruction text (the
official one from the checkout, see :mod:`seppo_video.evaluation.official`).
The official script sends the frames as PNG (lossless) images. Nothing here
talks to a network itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from seppo_video.evaluation.metrics.base import VideoItem
from seppo_video.evaluation.official import OfficialText
from seppo_video.evaluation.video import gpt4o_indices, short_edge_downscale

GPT4O_FRAMES = 8
GPT4O_SHORT_EDGE = 256
SCORE_FIELD = '"Score":'

Client = Callable[[list[np.ndarray], list[str], str], Any]


def gpt4o_frames(frames: np.ndarray, videoid: str) -> tuple[list[np.ndarray], list[str]]:
    """The official 8 frames (downscaled so the short edge is at most 256) and their file names."""
    indices = gpt4o_indices(len(frames), GPT4O_FRAMES)
    picked = [short_edge_downscale(frames[i], GPT4O_SHORT_EDGE) for i in indices]
    return picked, [f"{videoid}_frame{i}.png" for i in indices]


def parse_rating(answer: str) -> float:
    """The rating in the reply's final line, read as the official merge step reads it (NaN when it cannot).

    The official step splits off the last line, drops ``"Score":`` and the
    braces, and keeps the entry only when what is left is an integer; other
    replies are left out of the average, so they are NaN here (missing).
    """
    _, newline, last = str(answer).rpartition("\n")
    if not newline:
        return float("nan")
    value = last.replace(SCORE_FIELD, "").replace("{", "").replace("}", "").strip()
    try:
        return float(int(value))
    except ValueError:
        return float("nan")


class GPT4oMTScore:
    name = "gpt4o_mtscore"
    needs_reference = False

    def __init__(self, client: Client, client_name: str, rubric: OfficialText):
        self.client, self.client_name, self.rubric = client, client_name, rubric

    def fingerprint(self) -> dict[str, Any]:
        return {"client": self.client_name, "rubric": self.rubric.value, "rubric_source": self.rubric.source,
                "leaderboard_comparable": self.rubric.official}

    def score(self, item: VideoItem) -> dict[str, float]:
        frames, names = gpt4o_frames(item.frames, item.videoid)
        return {"score": parse_rating(self.client(frames, names, str(self.rubric.value)))}
