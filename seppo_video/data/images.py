"""Pick-a-Pic style image preferences: the single-frame case of the video pipeline.

A record holds a caption, two images (``jpg_0``, ``jpg_1``: file paths or
encoded bytes, as in the Pick-a-Pic parquet files) and ``label_0``: 1 when
image 0 is preferred, 0 when image 1 is, 0.5 for a tie. SePPO (and SFT)
train on the preferred image only (``keep="winners"``); the Diffusion-DPO
baseline trains on winner and loser (``keep="pairs"``). Ties carry no
preference, so both drop them; they are counted in ``num_ties``, not as bad
input.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from seppo_video.data.annotations import pick_column, read_rows
from seppo_video.data.skips import (
    BAD_LABEL,
    CORRUPT_FILE,
    DECODE_FAILED,
    EMPTY_FILE,
    MISSING_FILE,
    DataError,
    SkipLog,
    SkippingDataset,
    caption_problem,
)
from seppo_video.data.video import to_model_pixels

ImageSource = Path | bytes
Keep = Literal["winners", "pairs"]
LABELS = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class ImagePair:
    """Two images for one caption; ``label_0`` is the preference for image 0."""

    id: str
    prompt: str
    images: tuple[ImageSource, ImageSource]
    label_0: float | None


def read_image_pairs(path: str | Path, image_dir: str | Path | None = None) -> list[ImagePair]:
    """Records of a Pick-a-Pic parquet or JSONL file; relative image paths resolve against ``image_dir``.

    ``image_dir`` defaults to the file's folder. A label that is not a number
    becomes None (the dataset skips it as an invalid label).
    """
    path = Path(path)
    rows = _parquet_rows(path) if path.suffix.lower() == ".parquet" else read_rows(path)
    columns = {key for row in rows for key in row}
    caption_col = pick_column(path, columns, ("caption", "text", "name"), "caption")
    for required in ("jpg_0", "jpg_1", "label_0"):
        pick_column(path, columns, (required,), required)
    id_col = next((c for c in ("ranking_id", "id") if c in columns), None)
    base = Path(image_dir).expanduser() if image_dir is not None else path.parent
    return [
        ImagePair(
            id=str(row[id_col]) if id_col and row.get(id_col) is not None else str(number),
            prompt=str(row.get(caption_col) or "").strip(),
            images=(_source(row.get("jpg_0"), base), _source(row.get("jpg_1"), base)),
            label_0=_label(row.get("label_0")),
        )
        for number, row in enumerate(rows)
    ]


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    names = set(pq.read_schema(path).names)
    wanted = {"caption", "text", "name", "jpg_0", "jpg_1", "label_0", "ranking_id", "id"} & names
    return pq.read_table(path, columns=sorted(wanted)).to_pylist()


def _source(value: Any, base: Path) -> ImageSource:
    """Bytes stay bytes; a string is a path; a Hugging Face image struct gives either."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    given = Path(str(value or "")).expanduser()
    return given if given.is_absolute() else base / given


def _label(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def load_image(source: ImageSource) -> np.ndarray:
    """An image file or encoded bytes as ``uint8 [H, W, 3]``."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        return np.array(image.convert("RGB"))  # a writable copy: torch warns on read-only arrays


@dataclass(frozen=True)
class _Entry:
    pair: ImagePair
    winner: ImageSource
    loser: ImageSource | None


class ImagePreferenceDataset(SkippingDataset):
    """Preferred images (and, for pairs, rejected ones) as ``pixels [3, 1, H, W]``.

    Same bad-input policy as ``VideoDataset``: construction checks each image
    cheaply (present, non-empty, an image header PIL recognises) and skips bad
    records with one warning line each; an image that still fails to decode
    in ``__getitem__`` is counted and replaced by the next good item.
    """

    num_frames = 1

    def __init__(
        self,
        pairs: Sequence[ImagePair],
        *,
        resolution: int,
        keep: Keep = "winners",
        max_bad_fraction: float = 0.2,
        source: str = "image data",
    ):
        if keep not in ("winners", "pairs"):
            raise ValueError(f"keep must be 'winners' or 'pairs', got {keep!r}")
        if not pairs:
            raise DataError(f"{source}: no records")
        self.resolution, self.keep, self.source = resolution, keep, source
        self.skips = SkipLog(source, len(pairs), max_bad_fraction)
        self.num_ties = sum(pair.label_0 == 0.5 for pair in pairs)
        self.entries = [e for e in map(self._entry, pairs) if e is not None]
        self._failed: set[int] = set()
        self.skips.conclude(len(self.entries), f"{source}: no usable pairs ({self.num_ties} ties dropped)")

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def pairs(self) -> bool:
        return self.keep == "pairs"

    @property
    def ids(self) -> list[str]:
        return [entry.pair.id for entry in self.entries]

    @property
    def prompts(self) -> list[str]:
        return [entry.pair.prompt for entry in self.entries]

    @property
    def sampling(self) -> dict[str, Any]:
        return {"kind": "image", "keep": self.keep}

    def try_load(self, index: int) -> dict[str, Any] | None:
        """Item ``index``, or None (logged and counted once) when an image fails to decode."""
        if index in self._failed:
            return None
        entry = self.entries[index]
        item: dict[str, Any] = {"id": entry.pair.id, "prompt": entry.pair.prompt}
        sources = {"pixels": entry.winner, "loser_pixels": entry.loser}
        for key, image in sources.items():
            if image is None:
                continue
            try:
                item[key] = self._pixels(image)
            except Exception as err:  # PIL raises several types for damaged data
                self._failed.add(index)
                self.skips.skip(self._name(entry.pair, image), DECODE_FAILED, f"{type(err).__name__}: {err}")
                self.skips.check()
                return None
        return item

    def _pixels(self, image: ImageSource) -> torch.Tensor:
        return to_model_pixels(load_image(image)[None], self.resolution)

    def _entry(self, pair: ImagePair) -> _Entry | None:
        if pair.label_0 == 0.5:
            return None
        if pair.label_0 not in LABELS:
            self.skips.skip(f"{self.source} record {pair.id}", BAD_LABEL, f"label_0={pair.label_0!r}")
            return None
        problem = caption_problem(pair.prompt)
        if problem:
            self.skips.skip(f"{self.source} record {pair.id}", problem)
            return None
        preferred = 0 if pair.label_0 == 1.0 else 1
        winner, loser = pair.images[preferred], pair.images[1 - preferred]
        if not self._usable(pair, winner) or (self.pairs and not self._usable(pair, loser)):
            return None
        return _Entry(pair, winner, loser if self.pairs else None)

    def _usable(self, pair: ImagePair, image: ImageSource) -> bool:
        """Cheap check: present, non-empty, and a header PIL recognises (no full decode)."""
        name = self._name(pair, image)
        if isinstance(image, Path) and not image.is_file():
            self.skips.skip(name, MISSING_FILE)
            return False
        if (len(image) if isinstance(image, bytes) else image.stat().st_size) == 0:
            self.skips.skip(name, EMPTY_FILE)
            return False
        try:
            Image.open(io.BytesIO(image) if isinstance(image, bytes) else image).close()
        except Exception as err:  # UnidentifiedImageError, OSError, ...
            self.skips.skip(name, CORRUPT_FILE, type(err).__name__)
            return False
        return True

    def _name(self, pair: ImagePair, image: ImageSource) -> str:
        if isinstance(image, Path):
            return str(image)
        return f"{self.source} record {pair.id} ({len(image)} bytes)"
