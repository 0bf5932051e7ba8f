"""Where videos live: the benchmark's folder layout.

Open models: ``<root>/<model>/{1,2,3}/<videoid>.mp4`` (one folder per sample
set, i.e. per seed). Closed models: ``<root>/<model>/<videoid>.mp4`` (one
sample each), scored as a single set named ``single``.
"""

from __future__ import annotations

from pathlib import Path

from seppo_video.evaluation.errors import EvalError

VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".avi", ".mov", ".mkv")
SINGLE_SET = "single"


def video_path(root: str | Path, model_name: str, set_index: int, videoid: str) -> Path:
    """The file a generated video of set ``set_index`` (1-based) is written to."""
    return Path(root) / model_name / str(set_index) / f"{videoid}.mp4"


def set_dirs(model_dir: str | Path) -> dict[str, Path]:
    """The sample sets of a model folder, by name (``"1"``, ``"2"``, ... or ``"single"``)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise EvalError(f"video folder not found: {model_dir}")
    numbered = sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if numbered:
        return {p.name: p for p in numbered}
    if any(p.suffix.lower() in VIDEO_SUFFIXES for p in model_dir.iterdir()):
        return {SINGLE_SET: model_dir}
    raise EvalError(f"{model_dir}: no videos (expected <set>/<videoid>.mp4 or <videoid>.mp4)")


def find_video(folder: str | Path, videoid: str) -> Path | None:
    """The video file named ``videoid`` in ``folder`` (any known suffix), if any."""
    for suffix in VIDEO_SUFFIXES:
        candidate = Path(folder) / f"{videoid}{suffix}"
        if candidate.exists():
            return candidate
    return None
