"""Checkpoints that survive a kill at any instant, holding only what cannot be rebuilt.

``accelerate`` saves the optimizer, LR scheduler, EMA and every rank's RNG
states (and handles DeepSpeed / FSDP sharding); our save hook replaces its
full-model dump with the trainable tensors alone. We add the reference pool
and the trainer's counters (step, data position). Everything goes into a
hidden temporary folder that is renamed into place once complete, and the
``latest`` pointer is rewritten atomically afterwards: a run killed mid-save
resumes from the previous complete checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from seppo_video.atomic import atomic_write_text
from seppo_video.seppo.pool import ReferencePool

TRAINABLE_FILE = "trainable.safetensors"
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"step-(\d+)")


@dataclass
class TrainerState:
    """Counters that, with the seed, determine everything a resumed run does next."""

    step: int = 0  # optimizer updates done
    epoch: int = 0
    position: int = 0  # batches this rank consumed in the current epoch
    batches_seen: int = 0  # micro-batches consumed in total (keys the per-batch RNG)
    nonfinite_total: int = 0
    nonfinite_in_row: int = 0


def register_trainable_only_hooks(accelerator, trainable_names: set[str]) -> None:
    """Make ``accelerator.save_state`` / ``load_state`` store only the trainable tensors."""

    def save_hook(models, weights, output_dir):
        for model in models:
            state = accelerator.unwrap_model(model).state_dict()
            tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if k in trainable_names}
            if accelerator.is_main_process:
                save_file(tensors, os.path.join(output_dir, TRAINABLE_FILE))
        weights.clear()  # nothing else: the frozen weights are rebuilt from the base model

    def load_hook(models, input_dir):
        while models:
            model = accelerator.unwrap_model(models.pop())
            tensors = load_file(os.path.join(input_dir, TRAINABLE_FILE))
            missing = trainable_names - set(tensors)
            if missing:
                raise RuntimeError(f"checkpoint {input_dir} lacks trainable tensors, e.g. {sorted(missing)[:3]}")
            model.load_state_dict(tensors, strict=False)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def save_checkpoint(
    accelerator, run_dir: Path, state: TrainerState, pool: ReferencePool | None, keep: int
) -> Path:
    """Write ``run_dir/checkpoints/step-NNNNNN`` atomically, then prune to the newest ``keep``."""
    root = run_dir / "checkpoints"
    final = root / f"step-{state.step:06d}"
    tmp = root / f".{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        if pool is not None:
            pool.save(tmp / "pool")
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(root / "latest", final.name + "\n")
        for old in complete_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Finished checkpoints, oldest first (temporary folders are never listed)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.fullmatch(p.name) and (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(_NAME.fullmatch(p.name).group(1)))


def find_checkpoint(run_dir: Path, which: str) -> Path:
    """``latest`` (the pointer, or the newest complete folder) or an explicit path."""
    if which != "latest":
        path = Path(which)
        if not (path / STATE_FILE).exists():
            raise FileNotFoundError(f"{path} is not a complete seppo-video checkpoint (no {STATE_FILE})")
        return path
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if pointer.exists():
        candidate = pointer.parent / pointer.read_text().strip()
        if (candidate / STATE_FILE).exists():
            return candidate
    complete = complete_checkpoints(run_dir)
    if not complete:
        raise FileNotFoundError(f"--resume latest: no complete checkpoint under {Path(run_dir) / 'checkpoints'}")
    return complete[-1]


def load_checkpoint(accelerator, path: Path, pool: ReferencePool | None) -> TrainerState:
    """Restore accelerate's state, the pool and the trainer counters from ``path``."""
    accelerator.load_state(str(path))
    if pool is not None:
        pool.load(path / "pool")
    return TrainerState(**json.loads((path / STATE_FILE).read_text()))


def read_trainable(path: Path) -> dict[str, torch.Tensor]:
    """The trainable tensors stored in a checkpoint (for export without training)."""
    return load_file(str(Path(path) / TRAINABLE_FILE))
