"""The networks behind the metrics, behind small typed interfaces.

Each metric talks to an interface (a ``Protocol`` below) and the
evaluation config says where its implementation is (``BackendSpec``):

- ``path``: the network's released checkpoint, for the networks this project
  implements (:mod:`.networks`: UMT); a TorchScript file
  (``torch.jit.load``) exporting the methods of the interface
  (``@torch.jit.export``); or a ``transformers`` folder for the CLIP family.
  The method contracts are documented on each protocol and in
  ``docs/evaluation.md``.
- ``factory``: ``"package.module:callable"``; the callable receives the
  ``BackendSpec`` and returns an object with the interface's methods (for
  networks that do not script, e.g. a CoTracker2 checkout).

Tests load tiny random-init stand-ins (:mod:`.tiny_extractors`) through
exactly this code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import yaml

from seppo_video.evaluation.errors import EvalError
from seppo_video.evaluation.networks.checkpoints import is_torchscript


@dataclass
class BackendSpec:
    """Where one network's weights are (all local; nothing is downloaded)."""

    path: str | None = None  # released checkpoint, TorchScript file or transformers folder; "tiny" = test stand-in
    factory: str | None = None  # "package.module:callable" returning the interface (receives this spec)
    tokenizer: str | None = None  # transformers tokenizer folder for the text side
    processor: str | None = None  # CLIP family: processor folder when not inside `path`
    call_kwargs: list[str] = field(default_factory=list)  # "key=value" passed to each TorchScript call
    sha256: str | None = None  # the file's expected SHA-256 (checked by `seppo-video eval doctor`)

    @property
    def configured(self) -> bool:
        return bool(self.path or self.factory)

    def keyword_arguments(self) -> dict[str, Any]:
        """``call_kwargs`` parsed with YAML (``return_features=true`` -> ``{"return_features": True}``)."""
        parsed = {}
        for item in self.call_kwargs:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise EvalError(f"call_kwargs item {item!r} must look like key=value")
            parsed[key.strip()] = yaml.safe_load(value)
        return parsed


# ---------------------------------------------------------------- interfaces


class VideoTextModel(Protocol):
    """UMT (UMTScore, UMT-FVD) and InternVideo2 (MTScore).

    ``video``: ``float [B, T, 3, 224, 224]``, ImageNet-normalised.
    ``input_ids`` / ``attention_mask``: ``long [B, L]`` from the spec's tokenizer.
    """

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, D]``: for UMT the vision projection of pooled features, averaged over time."""

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` text embeddings in the same space as ``encode_video``."""

    def match_logit(self, video: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B]``: the image-text-matching head's logit for class "match"."""


class PointTracker(Protocol):
    """CoTracker2 (CHScore), called as the benchmark calls its predictor.

    ``video``: ``float [1, T, 3, H, W]`` in ``[0, 255]``; ``grid_size``: the
    tracker's own ``grid_size × grid_size`` query grid on frame 0 (no support
    grid). Returns ``tracks [1, T, N, 2]`` (x, y in pixels) and ``visible
    [1, T, N]`` (bool, after the predictor's own visibility threshold).
    """

    def track(self, video: torch.Tensor, grid_size: int) -> tuple[torch.Tensor, torch.Tensor]: ...


class VideoFeatureExtractor(Protocol):
    """I3D (FVD): ``forward(video float [B, 3, T, 224, 224] in [-1, 1], **call_kwargs) -> [B, D]``."""

    def __call__(self, video: torch.Tensor) -> torch.Tensor: ...


class FrameFeatureExtractor(Protocol):
    """Inception (FID): ``forward(images uint8 [B, 3, H, W], **call_kwargs) -> [B, D]`` (resizes itself)."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class PerceptualDistance(Protocol):
    """LPIPS: ``forward(a, b)`` on ``float [B, 3, H, W]`` in ``[-1, 1]`` -> ``[B]`` distances."""

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor: ...


# ---------------------------------------------------------------- loading


Released = Callable[[Path, torch.device], Any]  # loads a network's released checkpoint file as it is


def load_backend(
    spec: BackendSpec, what: str, methods: Sequence[str], device: torch.device, released: Released | None = None
) -> Any:
    """Load the network ``spec`` points at and check it has ``methods``.

    ``path`` may be a TorchScript file or, for networks with a ``released``
    loader, the released checkpoint itself. ``what`` names the network in
    errors (e.g. ``"weights.cotracker (CoTracker2)"``).
    """
    if spec.factory:
        backend = import_callable(spec.factory, what)(spec)
    else:
        backend = _load_path(Path(str(spec.path)), what, device, released)
    missing = [m for m in methods if not callable(getattr(backend, m, None))]
    if missing:
        raise EvalError(
            f"{what}: the loaded network has no method(s) {', '.join(missing)}; "
            f"it must provide {', '.join(methods)} (see docs/evaluation.md)"
        )
    return backend


def _load_path(path: Path, what: str, device: torch.device, released: Released | None) -> Any:
    if not path.is_file():
        raise EvalError(f"{what}: file not found: {path}")
    if not is_torchscript(path):
        if released is None:
            raise EvalError(f"{what}: {path} is not a TorchScript file, and this project has no loader for this "
                            "network's released checkpoint (docs/evaluation.md, 'Checkpoints')")
        return released(path, device)
    try:
        module = torch.jit.load(str(path), map_location=device)
    except RuntimeError as err:
        raise EvalError(f"{what}: {path} is a broken TorchScript file ({err.__class__.__name__}: {err})") from err
    return module.eval()


def import_callable(reference: str, what: str) -> Any:
    """``"package.module:name"`` -> the object, with a clear error on a bad reference."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise EvalError(f"{what}: {reference!r} must look like 'package.module:callable'")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise EvalError(f"{what}: cannot import {reference!r}: {err}") from err
    if not callable(target):
        raise EvalError(f"{what}: {reference!r} is not callable")
    return target


class Tokenizer:
    """A local ``transformers`` tokenizer producing fixed-length ``long`` tensors."""

    def __init__(self, folder: str | None, max_length: int, what: str):
        from transformers import AutoTokenizer

        if not folder or not Path(folder).is_dir():
            raise EvalError(f"{what}: tokenizer folder not found: {folder!r} (set its 'tokenizer' key)")
        self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.max_length = max_length

    def __call__(self, texts: Sequence[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self._tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return batch["input_ids"].to(device), batch["attention_mask"].to(device)
