"""CoTracker2 for CHScore through the official predictor of a local co-tracker checkout (an alternative).

By default ``cotracker2.pth`` loads into :mod:`.cotracker2` (written here).
This adapter instead runs the official ``CoTrackerPredictor``
(facebookresearch/co-tracker at its CoTracker2 release, or the copy under the
benchmark's ``CHScore/``), imported from the user's ``PYTHONPATH`` and called
exactly as the benchmark calls it, e.g. to cross-check the two. Set
``weights.cotracker.factory`` to
``seppo_video.evaluation.networks.cotracker:official_predictor`` and
``weights.cotracker.path`` to ``cotracker2.pth``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from seppo_video.evaluation.backends import BackendSpec
from seppo_video.evaluation.errors import EvalError

WHAT = "weights.cotracker (CoTracker2)"


class OfficialCoTracker:
    """The :class:`~seppo_video.evaluation.backends.PointTracker` interface over ``CoTrackerPredictor``."""

    def __init__(self, predictor: torch.nn.Module, device: torch.device):
        self.predictor, self.device = predictor, device

    @torch.no_grad()
    def track(self, video: torch.Tensor, grid_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        # The benchmark's call: only grid_size, so the predictor queries its own grid on frame 0 and adds no
        # support grid; its visibilities come back already thresholded (> 0.9).
        tracks, visible = self.predictor(video.to(self.device), grid_size=grid_size)
        return tracks, visible.bool()


def official_predictor(spec: BackendSpec) -> OfficialCoTracker:
    """``CoTrackerPredictor(checkpoint=spec.path)`` from an importable co-tracker checkout."""
    if not spec.path or not Path(spec.path).is_file():
        raise EvalError(f"{WHAT}: checkpoint not found: {spec.path!r} (the released cotracker2.pth)")
    try:
        from cotracker.predictor import CoTrackerPredictor
    except ImportError as err:
        raise EvalError(
            f"{WHAT}: cannot import cotracker.predictor ({err}); put a CoTracker2 checkout of "
            "facebookresearch/co-tracker (or ChronoMagic-Bench's CHScore/ folder) on PYTHONPATH"
        ) from err
    # The factory gets only the spec, so the tracker picks its device as the benchmark's script does.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return OfficialCoTracker(CoTrackerPredictor(checkpoint=str(spec.path)).eval().to(device), device)
