"""The reference pool ("semi-policy"): earlier versions of the policy to compare against.

A snapshot holds only the *trainable* tensors (motion modules, LoRA weights,
or the whole UNet for full fine-tuning), off the accelerator: on the CPU
(optionally in half precision) or on disk as safetensors. The frozen weights
are shared with the policy module itself, so the pool's memory is the
trainable size times the number of snapshots, never a full model per entry.

Selection is a pure function of ``(seed, step, pool contents)``: every rank
of a distributed run holds the same pool and draws the same index without
communicating.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from seppo_video.config import parse_strategy

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Snapshot:
    step: int  # optimizer updates the policy had taken (0 for theta_0)
    tensors: dict[str, torch.Tensor] | None = None  # in memory (CPU)
    path: Path | None = None  # or on disk

    def load(self) -> dict[str, torch.Tensor]:
        if self.tensors is not None:
            return self.tensors
        assert self.path is not None
        return load_file(str(self.path))


class ReferencePool:
    """``theta_0`` plus a bounded list of later snapshots of the trainable tensors."""

    def __init__(
        self,
        max_size: int,
        storage: str = "cpu",
        dtype: str = "float32",
        directory: str | Path | None = None,
        seed: int = 0,
    ):
        if max_size < 2:
            raise ValueError("max_size must be at least 2 (theta_0 and one snapshot)")
        if storage not in ("cpu", "disk"):
            raise ValueError(f"storage must be 'cpu' or 'disk', got {storage!r}")
        if storage == "disk" and directory is None:
            raise ValueError("storage='disk' needs a directory")
        self.max_size = max_size
        self.storage = storage
        self.dtype = _DTYPES[dtype]
        self.directory = Path(directory) if directory is not None else None
        self.seed = seed
        self.snapshots: list[Snapshot] = []

    def __len__(self) -> int:
        return len(self.snapshots)

    @property
    def steps(self) -> list[int]:
        return [snapshot.step for snapshot in self.snapshots]

    # ------------------------------------------------------------ filling
    def add(self, step: int, trainable: dict[str, torch.Tensor]) -> None:
        """Snapshot ``trainable`` (copied off the accelerator). Drops the oldest
        non-initial snapshot when full, so theta_0 always stays.

        The first snapshot (theta_0) keeps the training dtype whatever ``dtype`` says: rounded,
        it would not be the model the policy starts from, so at step 1 ``d_w`` and ``d_ref``
        would not be 0, the AAF sign would be noise and DPO / DITTO would lose their reference.
        """
        exact = not self.snapshots
        tensors = {
            name: tensor.detach().to("cpu", dtype=tensor.dtype if exact else self._stored_dtype(tensor),
                                     copy=True).contiguous()
            for name, tensor in trainable.items()
        }
        snapshot = Snapshot(step=step)
        if self.storage == "disk":
            assert self.directory is not None
            self.directory.mkdir(parents=True, exist_ok=True)
            snapshot.path = self.directory / f"snapshot-{step:08d}.safetensors"
            save_file(tensors, str(snapshot.path))
        else:
            snapshot.tensors = tensors
        self.snapshots.append(snapshot)
        if len(self.snapshots) > self.max_size:
            dropped = self.snapshots.pop(1)
            if dropped.path is not None:
                dropped.path.unlink(missing_ok=True)

    def _stored_dtype(self, tensor: torch.Tensor) -> torch.dtype:
        return self.dtype if tensor.is_floating_point() else tensor.dtype

    # ------------------------------------------------------------ choosing
    def select(self, strategy: str, step: int) -> int:
        """Index of the reference for optimizer step ``step`` (identical on every rank)."""
        if not self.snapshots:
            raise RuntimeError("the reference pool is empty: add theta_0 first")
        name, fixed = parse_strategy(strategy)
        if name == "initial":
            return 0
        if name == "latest":
            return len(self.snapshots) - 1
        if name == "fixed":
            assert fixed is not None
            if not -len(self.snapshots) <= fixed < len(self.snapshots):
                raise IndexError(f"fixed:{fixed} is outside the pool of {len(self.snapshots)} snapshots")
            return fixed % len(self.snapshots)
        # uniform: a private RNG keyed by (seed, step) keeps ranks in agreement and resumes exact.
        return random.Random(f"{self.seed}:{step}").randrange(len(self.snapshots))

    def get(self, index: int) -> dict[str, torch.Tensor]:
        return self.snapshots[index].load()

    # ------------------------------------------------------------ accounting
    def nbytes(self) -> int:
        """Bytes of stored tensors, in memory or on disk."""
        total = 0
        for snapshot in self.snapshots:
            tensors = snapshot.load()
            total += sum(t.numel() * t.element_size() for t in tensors.values())
        return total

    # ------------------------------------------------------------ checkpointing
    def save(self, directory: str | Path) -> None:
        """Write every snapshot as safetensors plus ``pool.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = []
        for snapshot in self.snapshots:
            name = f"snapshot-{snapshot.step:08d}.safetensors"
            if snapshot.path is not None:
                shutil.copyfile(snapshot.path, directory / name)
            else:
                save_file(snapshot.tensors, str(directory / name))
            files.append({"step": snapshot.step, "file": name})
        (directory / "pool.json").write_text(json.dumps({"snapshots": files}, indent=2))

    def load(self, directory: str | Path) -> None:
        """Replace the pool's contents with those saved by :meth:`save`."""
        directory = Path(directory)
        listing = json.loads((directory / "pool.json").read_text())["snapshots"]
        for snapshot in self.snapshots:
            if snapshot.path is not None:
                snapshot.path.unlink(missing_ok=True)
        self.snapshots = []
        for entry in listing:
            if self.storage == "disk":
                assert self.directory is not None
                self.directory.mkdir(parents=True, exist_ok=True)
                path = self.directory / entry["file"]
                shutil.copyfile(directory / entry["file"], path)
                self.snapshots.append(Snapshot(step=entry["step"], path=path))
            else:
                tensors = load_file(str(directory / entry["file"]))
                self.snapshots.append(Snapshot(step=entry["step"], tensors=tensors))
