"""Counting bad input instead of crashing on it.

Real data sets hold a few broken files. A multi-day run must neither die at
step 9,000 on one of them nor silently train on a fraction of the data, so
every dataset reports each bad item once (one warning line: the file and the
reason), counts it by reason, and stops with ``DataError`` only when more
than ``max_bad_fraction`` of the records are bad.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from torch.utils.data import Dataset

logger = logging.getLogger("seppo_video.data")

# Reasons, spelled once so tests and summaries agree.
MISSING_FILE = "missing file"
EMPTY_FILE = "zero-length file"
CORRUPT_FILE = "corrupt or unreadable file"
TOO_SHORT = "too few frames"
EMPTY_CAPTION = "empty caption"
BAD_CAPTION = "caption is not valid UTF-8"
DUPLICATE_ID = "duplicate id"
FRAME_TOO_LARGE = "frame too large"
DECODE_FAILED = "decode failed"
NO_LOSER = "no loser"
BAD_LABEL = "invalid preference label"


class DataError(RuntimeError):
    """The data cannot be used as configured (too much of it is bad, or a required part is absent)."""


def caption_problem(caption: str) -> str | None:
    """Why a caption is unusable (empty; bytes that were not UTF-8, kept as surrogates on reading), or None."""
    if not caption:
        return EMPTY_CAPTION
    try:
        caption.encode("utf-8")
    except UnicodeEncodeError:
        return BAD_CAPTION
    return None


class SkipLog:
    """Skipped items of one dataset, counted by reason.

    ``total`` is the number of records the dataset started from; the bad
    fraction is measured against it.
    """

    def __init__(self, source: str, total: int, max_bad_fraction: float):
        self.source = source
        self.total = total
        self.max_bad_fraction = max_bad_fraction
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def __len__(self) -> int:
        return sum(self.counts.values())

    def skip(self, item: str, reason: str, detail: str = "") -> None:
        """Record one bad item and log it on one line (``check`` decides whether to stop)."""
        self.counts[reason] += 1
        self.examples.setdefault(reason, item)
        suffix = f" ({detail})" if detail else ""
        logger.warning("skipping %s: %s%s", item, reason, suffix)

    def check(self) -> None:
        """Raise ``DataError`` when the bad fraction exceeds the allowed one."""
        if self.total and len(self) / self.total > self.max_bad_fraction:
            raise DataError(
                f"{self.source}: {len(self)} of {self.total} records are unusable "
                f"(more than max_bad_fraction={self.max_bad_fraction:g}): {self._reasons()}"
            )

    def conclude(self, usable: int, nothing_left: str) -> None:
        """After probing every record: stop above the bad fraction or with nothing usable,
        otherwise log the one-line summary once."""
        self.check()
        if not usable:
            raise DataError(f"{nothing_left}: {self.summary()}")
        if self.counts:
            logger.warning(self.summary())

    def summary(self) -> str:
        """One line: how many records were skipped and why (with one example each)."""
        if not self.counts:
            return f"{self.source}: all {self.total} records usable"
        return f"{self.source}: skipped {len(self)} of {self.total} records: {self._reasons()}"

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable summary (for the run's summary.json)."""
        return {"source": self.source, "total": self.total, "skipped": len(self), "by_reason": dict(self.counts)}

    def _reasons(self) -> str:
        return "; ".join(
            f"{count} {reason} (e.g. {self.examples[reason]})" for reason, count in self.counts.most_common()
        )


class SkippingDataset(Dataset):
    """A map-style dataset whose ``__getitem__`` steps over items that fail to load.

    Subclasses implement ``try_load(index)``, which returns None after
    logging and counting a failure; the index is then never tried again and
    the next good one is returned, so one bad file cannot stop a DataLoader.
    """

    skips: SkipLog

    def __len__(self) -> int:
        raise NotImplementedError

    def try_load(self, index: int) -> dict[str, Any] | None:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        for offset in range(len(self)):
            item = self.try_load((index + offset) % len(self))
            if item is not None:
                return item
        raise DataError(f"no item could be loaded: {self.skips.summary()}")
