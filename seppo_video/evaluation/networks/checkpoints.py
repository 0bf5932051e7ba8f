"""Reading released checkpoints as they are and loading them strictly, with errors that name the keys."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from seppo_video.evaluation.errors import EvalError

MAX_LISTED_KEYS = 8  # keys named in an error before "... and N more"


def is_torchscript(path: Path) -> bool:
    """TorchScript archives hold compiled code (``code/``); ``torch.save`` files hold only pickled data."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 2)[1:2] == ["code"] for name in archive.namelist())


def read_state_dict(path: str | Path, what: str, wrappers: tuple[str, ...] = ("model",)) -> dict[str, torch.Tensor]:
    """The tensors of a ``torch.save`` checkpoint, unwrapped from the first of ``wrappers`` it has."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{what}: checkpoint not found: {path}")
    try:
        # mmap: tensors are read when used, so checking a multi-GB checkpoint's keys takes seconds.
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as err:  # torch raises several types for files it cannot read
        raise EvalError(f"{what}: {path} is not a torch.save checkpoint ({err.__class__.__name__}: {err})") from err
    if not isinstance(loaded, Mapping):
        raise EvalError(f"{what}: {path} holds a {type(loaded).__name__}, not a state dict")
    for key in wrappers:
        if isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    tensors = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise EvalError(f"{what}: {path} has no tensors (top-level keys: {_listed(list(loaded))})")
    return tensors


def mismatches(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps ``state`` from loading strictly into tensors named and shaped as ``expected``."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (network: {tuple(v.shape)})" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    return ([f"missing key(s) {_listed(missing)}"] if missing else []) + (
        [f"unexpected key(s) {_listed(unexpected)}"] if unexpected else []) + (
        [f"wrong shape for {_listed(wrong)}"] if wrong else [])


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, path: str | Path) -> None:
    """``module.load_state_dict(state)`` requiring exactly its keys and shapes; errors name the offending keys."""
    problems = mismatches(module.state_dict(), state)
    if problems:
        raise EvalError(f"{what}: {path} does not match the network: {'; '.join(problems)}")
    module.load_state_dict(dict(state), strict=True)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    return shown + (f" ... and {len(keys) - MAX_LISTED_KEYS} more" if len(keys) > MAX_LISTED_KEYS else "")
