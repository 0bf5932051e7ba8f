"""ChronoMagic-Bench prompt files: ``videoid,name,sub_category,main_category``."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from seppo_video.evaluation.errors import EvalError

REQUIRED_COLUMNS = ("videoid", "name", "sub_category", "main_category")


@dataclass(frozen=True)
class BenchPrompt:
    """One benchmark prompt; ``videoid`` names its video file in every set."""

    videoid: str
    prompt: str
    sub_category: str
    main_category: str | None  # empty in a few rows of the official files


def read_prompts(path: str | Path, limit: int | None = None) -> list[BenchPrompt]:
    """Read a prompt CSV, checking what later steps rely on.

    ``videoid`` becomes a file name and the key joining generated, reference
    and scored videos, so it must be non-empty, unique and free of path
    separators; an empty ``main_category`` is kept as ``None``.
    """
    path = Path(path)
    if not path.exists():
        raise EvalError(f"prompt file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise EvalError(f"{path}: missing column(s) {', '.join(missing)} (need {','.join(REQUIRED_COLUMNS)})")
        prompts = [_row_to_prompt(row, path, line) for line, row in enumerate(reader, start=2)]
    _check_unique(prompts, path)
    if not prompts:
        raise EvalError(f"{path}: no prompts")
    return prompts[:limit] if limit is not None else prompts


def _row_to_prompt(row: dict[str, str], path: Path, line: int) -> BenchPrompt:
    videoid = (row["videoid"] or "").strip()
    prompt = (row["name"] or "").strip()
    if not videoid or "/" in videoid or "\\" in videoid or videoid.startswith("."):
        raise EvalError(f"{path}:{line}: videoid {videoid!r} cannot be used as a file name")
    if not prompt:
        raise EvalError(f"{path}:{line}: empty prompt (column 'name') for videoid {videoid!r}")
    main = (row["main_category"] or "").strip() or None
    return BenchPrompt(videoid, prompt, (row["sub_category"] or "").strip(), main)


def _check_unique(prompts: list[BenchPrompt], path: Path) -> None:
    seen: set[str] = set()
    for item in prompts:
        if item.videoid in seen:
            raise EvalError(f"{path}: videoid {item.videoid!r} appears twice")
        seen.add(item.videoid)
