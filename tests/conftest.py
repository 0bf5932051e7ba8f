"""Shared fixtures. Tiny models are built once per machine into a test cache
(``SEPPO_VIDEO_CACHE``), through the same ``make-tiny`` code the CLI uses."""

from __future__ import annotations

import os
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
