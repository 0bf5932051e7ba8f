"""What every metric provides, and the one video it is given at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from seppo_video.evaluation.errors import EvalError


@dataclass
class VideoItem:
    """One generated video with its prompt, and its reference clip on demand."""

    videoid: str
    prompt: str
    frames: np.ndarray  # uint8 [F, H, W, 3]
    load_reference: Callable[[], np.ndarray | None] = lambda: None
    _reference: Any = field(default=None, init=False, repr=False)

    def reference(self) -> np.ndarray:
        """The reference clip (decoded once), or an error naming the missing file."""
        if self._reference is None:
            self._reference = self.load_reference()
        if self._reference is None:
            raise EvalError(f"no reference video for videoid {self.videoid!r}")
        return self._reference


class VideoMetric(Protocol):
    """A metric with a per-video score; the run's value is the merged mean."""

    name: str
    needs_reference: bool

    def fingerprint(self) -> dict[str, Any]:
        """What the records depend on (weights, settings); resumed records must match it."""

    def score(self, item: VideoItem) -> dict[str, float]:
        """A record with at least ``"score"`` (other keys are diagnostics, e.g. CHScore's parts)."""


@dataclass
class DistanceResult:
    value: float
    details: dict[str, Any] = field(default_factory=dict)


class DistributionMetric(Protocol):
    """A metric comparing feature distributions of generated and reference videos.

    The distance itself is computed when reporting, from the stored features
    (:func:`~seppo_video.evaluation.metrics.registry.set_distance`).
    """

    name: str

    def fingerprint(self) -> dict[str, Any]: ...

    def features(self, frames: np.ndarray) -> np.ndarray:
        """``[k, D]`` features of one video (``k`` = 1 per clip, or one row per frame for FID)."""
