"""Errors the evaluation reports to the user as one clear line (exit status 2)."""

from __future__ import annotations


class EvalError(RuntimeError):
    """A problem with the evaluation's inputs (files, config, layout)."""


class MetricUnavailable(EvalError):
    """A metric was requested but cannot run (missing weights or reference videos)."""
