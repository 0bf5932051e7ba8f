"""Annotation files: CSV, JSON (a list of objects) or JSONL, in the ChronoMagic style.

ChronoMagic (the MagicTime training set) ships ``videoid,name,is_transmit``
CSVs; other sets name their columns ``path``/``video`` and ``caption``/``text``.
All of them become the same ``VideoRecord`` so the dataset code has one input
shape. Unknown columns are ignored (the benchmark prompt files carry
``sub_category``/``main_category`` too).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seppo_video.data.skips import DataError

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif"})
VIDEO_COLUMNS = ("videoid", "path", "video")
UNDECODABLE = "surrogateescape"  # see read_rows
CAPTION_COLUMNS = ("name", "caption", "text")


@dataclass(frozen=True)
class VideoRecord:
    """One annotated clip; ``loser`` is the rejected clip of a Diffusion-DPO pair."""

    id: str
    prompt: str
    path: Path
    is_transmit: bool | None = None
    loser: Path | None = None


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a CSV, JSON (list of objects) or JSONL file, as dicts.

    Bytes that are not UTF-8 are kept as surrogates (``surrogateescape``), so
    one badly encoded caption skips its record instead of the whole file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig", errors=UNDECODABLE) as handle:
            return list(csv.DictReader(handle))
    text = path.read_text(encoding="utf-8", errors=UNDECODABLE)
    if suffix == ".jsonl":
        return [_json_object(path, line, n) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise DataError(f"{path}: a JSON annotation file must hold a list of objects")
        return rows
    raise DataError(f"{path}: unsupported annotation format {suffix!r} (use .csv, .json or .jsonl)")


def _json_object(path: Path, line: str, number: int) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{path} line {number}: not valid JSON ({err})") from None
    if not isinstance(row, dict):
        raise DataError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
    return row


def pick_column(path: Path, columns: set[str], choices: tuple[str, ...], what: str) -> str:
    """The first of ``choices`` present in ``columns``, or an error naming the file and the options."""
    for name in choices:
        if name in columns:
            return name
    found = ", ".join(sorted(columns)) or "none"
    wanted = ", ".join(repr(c) for c in choices)
    raise DataError(f"{path}: no {what} column (expected one of {wanted}; found: {found})")


def read_video_annotations(path: str | Path, video_dir: str | Path | None = None) -> list[VideoRecord]:
    """Records of a video annotation file; ids and relative paths resolve against ``video_dir``.

    ``video_dir`` defaults to the annotation file's folder. A ``videoid`` names
    ``<video_dir>/<videoid>.mp4``; a value with a video suffix is a path. The
    optional ``loser`` column follows the same rule.
    """
    path = Path(path)
    rows = read_rows(path)
    columns = {key for row in rows for key in row}
    video_col = pick_column(path, columns, VIDEO_COLUMNS, "video id/path")
    caption_col = pick_column(path, columns, CAPTION_COLUMNS, "caption")
    base = Path(video_dir).expanduser() if video_dir is not None else path.parent
    records = []
    for number, row in enumerate(rows, 1):
        value = str(row.get(video_col) or "").strip()
        loser = str(row.get("loser") or "").strip()
        records.append(
            VideoRecord(
                id=_video_id(value),
                prompt=str(row.get(caption_col) or "").strip(),
                path=_video_path(value, base),
                is_transmit=_flag(row.get("is_transmit"), path, number),
                loser=_video_path(loser, base) if loser else None,
            )
        )
    return records


def _has_video_suffix(value: str) -> bool:
    return Path(value).suffix.lower() in VIDEO_SUFFIXES


def _video_id(value: str) -> str:
    return Path(value).stem if _has_video_suffix(value) else value


def _video_path(value: str, base: Path) -> Path:
    if not _has_video_suffix(value):
        return base / f"{value}.mp4"
    given = Path(value).expanduser()
    return given if given.is_absolute() else base / given


def _flag(value: Any, path: Path, number: int) -> bool | None:
    """``is_transmit``: 0/1 (or booleans); empty means "not given"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip().lower()
    if text in ("0", "false", "0.0"):
        return False
    if text in ("1", "true", "1.0"):
        return True
    raise DataError(f"{path} record {number}: is_transmit must be 0 or 1, got {value!r}")
