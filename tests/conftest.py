"""Shared fixtures. Tiny models are built once per machine into a test cache
(``SEPPO_VIDEO_CACHE``), through the same ``make-tiny`` code the CLI uses."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("SEPPO_VIDEO_CACHE", str(Path(tempfile.gettempdir()) / "seppo_video_test_cache"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_paths():
    """The tiny model folders of each backbone kind (built on first use)."""
    from seppo_video.models.tiny import ensure_tiny

    return {kind: ensure_tiny(kind) for kind in ("animatediff", "modelscope", "sd")}


@pytest.fixture(scope="session")
def real_shape_model():
    """``ensure_real_shape`` that first removes the other cached real-shape models.

    All of them together take about 50 GB and CI's disk may not hold that beside the runs'
    checkpoints, so the tests keep one at a time (AnimateDiff keeps the SD-1.5 it links to).
    """
    from seppo_video.models.real import ensure_real_shape, real_shape_path

    def ensure(kind: str, variant: str | None = None) -> Path:
        target = real_shape_path(kind, variant)
        keep = {target.name, "sd-sd15"} if kind == "animatediff" else {target.name}
        if target.parent.exists():
            for entry in target.parent.iterdir():
                if entry.name in keep:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        return ensure_real_shape(kind, variant)

    return ensure
