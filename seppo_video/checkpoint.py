"""Checkpoints that survive a kill at any instant, holding only what cannot be rebuilt.

``accelerate`` saves the optimizer, LR scheduler and every rank's RNG states
(and handles DeepSpeed / FSDP sharding); our save hook replaces its
full-model dump with the trainable tensors alone. We add the EMA weights,
the reference pool and the trainer's counters (step, data position).
Everything goes into a hidden temporary folder that is renamed into place
once complete, and the ``latest`` pointer is rewritten atomically afterwards:
a run killed mid-save resumes from the previous complete checkpoint.

A ``manifest.json`` (size and sha256 of every file) is written last; resuming
verifies it, so a truncated or tampered checkpoint is passed over, with a
warning, for the one before it. Nothing here unpickles objects: tensors are
safetensors, counters JSON, and accelerate reads its optimizer, scheduler and
RNG files with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from seppo_video.atomic import atomic_write_text, file_sha256, fsync_tree, replace_directory
from seppo_video.seppo.pool import ReferencePool

TRAINABLE_FILE = "trainable.safetensors"
STATE_FILE = "trainer_state.json"
MANIFEST_FILE = "manifest.json"
EMA_WEIGHTS, EMA_STATE = "ema.safetensors", "ema.json"
_NAME = re.compile(r"step-(\d+)")
logger = logging.getLogger("seppo_video.checkpoint")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or cannot be trusted on reading."""


@dataclass
class TrainerState:
    """Counters that, with the seed, determine everything a resumed run does next."""

    step: int = 0  # optimizer updates done
    epoch: int = 0
    position: int = 0  # batches this rank consumed in the current epoch
    batches_seen: int = 0  # micro-batches consumed in total (keys the per-batch RNG)
    nonfinite_total: int = 0
    nonfinite_in_row: int = 0
    # The collapse alarm's inputs for the last few steps (seppo.health), so a resumed run watches
    # the same window; and the alarm once it fired (it fires once per run, resumes included).
    health_window: list[dict[str, float]] = field(default_factory=list)
    collapse_alarm: dict[str, float] | None = None


@dataclass(frozen=True)
class CheckpointSize:
    """Bytes one checkpoint takes, estimated from the trainable tensors before any is written."""

    trainable: int
    optimizer: int  # AdamW's two moments (one byte each for bitsandbytes' 8-bit AdamW)
    ema: int
    pool: int  # at full size: theta_0 in the training dtype, the other snapshots in the pool dtype

    @property
    def total(self) -> int:
        return self.trainable + self.optimizer + self.ema + self.pool


def estimate_checkpoint_size(trainable: list[torch.Tensor], pool: ReferencePool | None, ema: bool,
                             eight_bit_adam: bool) -> CheckpointSize:
    """What ``save_checkpoint`` will write for these trainable tensors, ``pool`` once it is full."""
    numel = sum(t.numel() for t in trainable)
    nbytes = sum(t.numel() * t.element_size() for t in trainable)
    pool_bytes = 0 if pool is None else nbytes + (pool.max_size - 1) * numel * pool.dtype.itemsize
    return CheckpointSize(trainable=nbytes, optimizer=2 * (numel if eight_bit_adam else nbytes),
                          ema=nbytes if ema else 0, pool=pool_bytes)


def warn_if_checkpoints_may_not_fit(run_dir: Path, size: CheckpointSize, keep: int) -> str | None:
    """Warn at start-up, not at the first checkpoint hours later, when the disk cannot hold ``keep``
    checkpoints plus the one being written (less what the run's checkpoints take already).
    Returns the warning, or None."""
    existing = sum(f.stat().st_size for c in complete_checkpoints(run_dir) for f in c.rglob("*") if f.is_file())
    needed = max(size.total, (keep + 1) * size.total - existing)
    folder = Path(run_dir).absolute()
    while not folder.exists():  # the run's folder may not exist yet: its disk is its nearest parent's
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if needed <= free:
        return None
    parts = ", ".join(f"{name} {_size(value)}" for name, value in
                      (("trainable", size.trainable), ("optimizer", size.optimizer), ("EMA", size.ema),
                       ("full pool", size.pool)) if value)
    message = (f"checkpoints may not fit on disk: each takes about {_size(size.total)} ({parts}); with "
               f"train.checkpoints_keep={keep}, {keep + 1} exist while one is written, {_size(needed)} more "
               f"than {run_dir} holds now, but its disk has {_size(free)} free. Free space, or lower "
               "train.checkpoints_keep or seppo.pool_size, or set seppo.pool_dtype=bfloat16")
    logger.warning(message)
    return message


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.3g} MB"


def all_ranks_agree(accelerator, flag: bool) -> bool:
    """True when ``flag`` holds on every process (also a barrier): ranks then take the same branch."""
    votes = torch.tensor([float(flag)], device=accelerator.device)
    return bool(accelerator.reduce(votes, reduction="sum").item() == accelerator.num_processes)


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
    accelerator, run_dir: Path, state: TrainerState, pool: ReferencePool | None, keep: int, ema=None
) -> Path:
    """Write ``run_dir/checkpoints/step-NNNNNN`` atomically, then prune to the newest ``keep``.

    A write that fails on any rank (disk full, read-only target) removes the
    temporary folder, leaves every earlier checkpoint and the ``latest``
    pointer as they were, and raises ``CheckpointError`` on every rank.
    """
    root = run_dir / "checkpoints"
    final = root / f"step-{state.step:06d}"
    tmp = root / f".{final.name}.tmp"
    main = accelerator.is_main_process

    def prepare() -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)

    def complete() -> None:
        if ema is not None:
            _save_ema(ema, tmp)
        if pool is not None:
            pool.save(tmp / "pool")
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
        _write_manifest(tmp)  # last: a folder with a manifest is complete
        fsync_tree(tmp)
        replace_directory(tmp, final)
        atomic_write_text(root / "latest", final.name + "\n")

    previous = (complete_checkpoints(run_dir) or [None])[-1]
    _write_step(accelerator, "creating the folder", tmp, previous, prepare if main else None)
    _write_step(accelerator, "saving the training state", tmp, previous, lambda: accelerator.save_state(str(tmp)))
    _write_step(accelerator, "saving the pool, EMA and counters", tmp, previous, complete if main else None)
    if main:  # rotation only once the new checkpoint is complete and pointed to, and never of that one
        for old in complete_checkpoints(run_dir)[:-keep]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".step-*"):  # temporary and set-aside folders left by runs killed mid-save
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _write_step(accelerator, what: str, tmp: Path, previous: Path | None, action: Callable[[], None] | None) -> None:
    """Run one part of a checkpoint write; if it failed on any rank, clean up and stop every rank."""
    error: Exception | None = None
    try:
        if action is not None:
            action()
    except Exception as err:  # OSError, safetensors' and torch.save's own I/O errors alike
        error = err
    if all_ranks_agree(accelerator, error is None):
        return
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
    raise CheckpointError(
        f"writing checkpoint {tmp.name.strip('.').removesuffix('.tmp')} failed while {what}: "
        f"{error if error is not None else 'on another process'}; {kept}. "
        f"Free disk space or fix the permissions of {tmp.parent}, then rerun with --resume latest"
    ) from error


def _write_manifest(folder: Path) -> None:
    files = {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path != folder / MANIFEST_FILE
    }
    (folder / MANIFEST_FILE).write_text(json.dumps({"files": files}, indent=1))


def verify_checkpoint(folder: Path) -> None:
    """Raise ``CheckpointError`` unless every file in the manifest is present with its size and sha256."""
    try:
        files = json.loads((folder / MANIFEST_FILE).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{folder}: unreadable {MANIFEST_FILE} ({err})") from None
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{folder}: {name} is missing")
        size = path.stat().st_size
        if size != expected["size"]:
            raise CheckpointError(f"{folder}: {name} has {size} bytes, the manifest says {expected['size']}")
        if file_sha256(path) != expected["sha256"]:
            raise CheckpointError(f"{folder}: {name} does not match its sha256 in the manifest")


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Finished checkpoints (those with a manifest), oldest first; temporary folders are never listed."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.fullmatch(p.name) and (p / MANIFEST_FILE).exists()]
    return sorted(found, key=lambda p: int(_NAME.fullmatch(p.name).group(1)))


def find_checkpoint(run_dir: Path, which: str) -> Path:
    """A verified checkpoint: ``latest`` (the pointer's, else the newest intact one) or an explicit path.

    Under ``latest`` a damaged checkpoint is skipped with a warning for the
    next older one; an explicit path that fails verification is an error.
    """
    if which != "latest":
        path = Path(which)
        if not (path / MANIFEST_FILE).exists():
            raise FileNotFoundError(f"{path} is not a complete seppo-video checkpoint (no {MANIFEST_FILE})")
        verify_checkpoint(path)
        return path
    complete = complete_checkpoints(run_dir)
    if not complete:
        raise FileNotFoundError(f"--resume latest: no complete checkpoint under {Path(run_dir) / 'checkpoints'}")
    pointer = Path(run_dir) / "checkpoints" / "latest"
    named = pointer.parent / pointer.read_text().strip() if pointer.exists() else None
    candidates = ([named] if named in complete else []) + [p for p in reversed(complete) if p != named]
    for candidate in candidates:
        try:
            verify_checkpoint(candidate)
            return candidate
        except CheckpointError as err:
            logger.warning("skipping damaged checkpoint: %s; trying an older one", err)
    raise CheckpointError(f"--resume latest: every checkpoint under {Path(run_dir) / 'checkpoints'} is damaged")


def load_checkpoint(accelerator, path: Path, pool: ReferencePool | None, ema=None) -> TrainerState:
    """Restore accelerate's state, the EMA, the pool and the trainer counters from ``path``."""
    try:
        accelerator.load_state(str(path))
    except Exception as err:  # e.g. a pickle that weights_only refuses
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise CheckpointError(f"{path}: refusing to load the training state ({type(err).__name__}: {first})") from err
    if ema is not None:
        _load_ema(ema, path)
    if pool is not None:
        pool.load(path / "pool")
    return TrainerState(**json.loads((path / STATE_FILE).read_text()))


def _save_ema(ema, folder: Path) -> None:
    """EMA weights as safetensors and its counters as JSON (accelerate would pickle them)."""
    state = ema.state_dict()
    shadow = state.pop("shadow_params")
    save_file({f"{i:06d}": t.detach().cpu().contiguous() for i, t in enumerate(shadow)}, str(folder / EMA_WEIGHTS))
    (folder / EMA_STATE).write_text(json.dumps(state, indent=2))


def _load_ema(ema, folder: Path) -> None:
    tensors = load_file(str(folder / EMA_WEIGHTS))
    if len(tensors) != len(ema.shadow_params):
        raise CheckpointError(f"{folder}: {len(tensors)} EMA tensors, the model has {len(ema.shadow_params)}")
    state = json.loads((folder / EMA_STATE).read_text())
    shadow = [tensors[k].to(old.device) for k, old in zip(sorted(tensors), ema.shadow_params)]
    ema.load_state_dict({**state, "shadow_params": shadow})


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint was written at."""
    return int(json.loads((Path(path) / STATE_FILE).read_text())["step"])


def read_trainable(path: Path) -> dict[str, torch.Tensor]:
    """The trainable tensors stored in a checkpoint (for export without training)."""
    return load_file(str(Path(path) / TRAINABLE_FILE))


def read_ema_weights(path: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """A checkpoint's EMA weights named like the trainable parameters (``names``, in the order
    the EMA was built with: ``named_trainable_parameters``)."""
    file = Path(path) / EMA_WEIGHTS
    if not file.exists():
        raise CheckpointError(f"{path}: train.ema.enabled is set but the checkpoint has no {EMA_WEIGHTS}")
    tensors = load_file(str(file))
    if len(tensors) != len(names):
        raise CheckpointError(f"{file}: {len(tensors)} EMA tensors, the model has {len(names)} trainable tensors")
    return {name: tensors[key] for name, key in zip(names, sorted(tensors))}
