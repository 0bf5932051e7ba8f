"""Per-video results on disk, so that scoring resumes where it stopped.

- :class:`RecordStore`: one JSON file per (metric, set) with a record per
  videoid, rewritten atomically after every video.
- :class:`FeatureStore`: one ``.npy`` per video for the distribution metrics.

Both remember a *fingerprint* (weights, settings) and refuse to mix records
computed with different ones: a resumed run with other weights would
otherwise silently average two different metrics.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from seppo_video.atomic import atomic_write_json
from seppo_video.evaluation.errors import EvalError

FINGERPRINT_FILE = "fingerprint.json"


def _normalised(fingerprint: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(fingerprint, sort_keys=True, default=str))


def _stale(where: Path, found: Any, expected: dict[str, Any]) -> EvalError:
    return EvalError(
        f"{where} holds results computed with different settings ({found} vs {expected}); "
        "score into another --out folder, or pass --overwrite to recompute them"
    )


class RecordStore:
    """Per-video records of one metric for one sample set (a JSON file)."""

    def __init__(self, path: Path, metric: str, fingerprint: dict[str, Any], overwrite: bool = False):
        self.path, self.metric, self.fingerprint = path, metric, _normalised(fingerprint)
        self.records: dict[str, dict[str, float]] = {}
        if path.exists() and not overwrite:
            data = json.loads(path.read_text())
            if data.get("fingerprint") != self.fingerprint:
                raise _stale(path, data.get("fingerprint"), self.fingerprint)
            self.records = data["records"]

    def __contains__(self, videoid: str) -> bool:
        return videoid in self.records

    def add(self, videoid: str, record: dict[str, float]) -> None:
        self.records[videoid] = record
        atomic_write_json(self.path, {"metric": self.metric, "fingerprint": self.fingerprint, "records": self.records})

    @staticmethod
    def read(path: Path) -> dict[str, dict[str, float]]:
        """The records of a store file (empty when it does not exist)."""
        return json.loads(path.read_text())["records"] if path.exists() else {}


class FeatureStore:
    """Per-video feature arrays of one distribution metric (``<videoid>.npy``)."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any], overwrite: bool = False):
        self.folder, self.fingerprint = folder, _normalised(fingerprint)
        marker = folder / FINGERPRINT_FILE
        if marker.exists() and overwrite:
            shutil.rmtree(folder)
        if marker.exists():
            found = json.loads(marker.read_text())
            if found != self.fingerprint:
                raise _stale(folder, found, self.fingerprint)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(marker, self.fingerprint)

    def __contains__(self, videoid: str) -> bool:
        return (self.folder / f"{videoid}.npy").exists()

    def add(self, videoid: str, features: np.ndarray) -> None:
        tmp = self.folder / f".{videoid}.tmp.npy"
        np.save(tmp, np.asarray(features, dtype=np.float32))
        os.replace(tmp, self.folder / f"{videoid}.npy")

    @staticmethod
    def read(folder: Path, videoid: str) -> np.ndarray | None:
        """One video's features, or ``None`` when it was not scored."""
        path = folder / f"{videoid}.npy"
        return np.load(path) if path.exists() else None
