"""Fault injection and bad input: kills, damaged and malicious checkpoints, full disks, NaNs, bad data, bad configs."""

from __future__ import annotations

import ast
import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import typing
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_train import FAST, _metrics

from seppo_video import checkpoint
from seppo_video.checkpoint import CheckpointError, complete_checkpoints, find_checkpoint, verify_checkpoint
from seppo_video.cli import main
from seppo_video.config import Config, ConfigError, load_config
from seppo_video.data import skips as reasons
from seppo_video.data.video import BACKEND
from seppo_video.train import NonFiniteLossError, train

REPO = Path(__file__).resolve().parents[1]
# sft with EMA: the checkpoint holds accelerate's optimizer / scheduler / RNG files and our safetensors.
BASE = [
    *FAST,
    "seppo.method=sft",
    "train.max_steps=4",
    "train.checkpoint_every=2",
    "train.checkpoints_keep=3",
    "train.ema.enabled=true",
    "train.ema.decay=0.5",
    "train.learning_rate=0.01",
    "train.lr_scheduler=constant",
]


def _step(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:06d}"


def _same_tensors(a: Path, b: Path) -> bool:
    left, right = load_file(str(a)), load_file(str(b))
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A finished 4-step run with checkpoints at steps 2 and 4 (never modified: tests work on copies)."""
    out = tmp_path_factory.mktemp("base") / "run"
    train(load_config(None, [*BASE, f"output_dir={out}"]))
    return out


@pytest.fixture()
def run_copy(base_run, tmp_path) -> Path:
    return Path(shutil.copytree(base_run, tmp_path / "run", symlinks=True))


def _config(run: Path, *extra: str) -> Config:
    return load_config(None, [*BASE, f"output_dir={run}", *extra])


# ---------------------------------------------------------------- 1. crash safety

INJECT = r"""
import os, signal, sys
import seppo_video.checkpoint as checkpoint, seppo_video.export as export
from seppo_video.cli import main

point, tag = sys.argv[1], f"step-{int(sys.argv[2]):06d}"

def kill_when(module, name, hit):
    real = getattr(module, name)
    def wrapper(*args, **kwargs):
        if hit(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    setattr(module, name, wrapper)

if point == "mid-checkpoint":  # accelerate's files are written, the manifest is not
    kill_when(checkpoint, "_write_manifest", lambda folder: tag in folder.name)
elif point == "before-pointer":  # the checkpoint is renamed into place, `latest` not yet rewritten
    kill_when(checkpoint, "atomic_write_text", lambda path, text: text.strip() == tag)
elif point == "mid-export":  # the weights are in the export's temporary folder
    kill_when(export, "_model_card", lambda *args: True)
sys.exit(main(["train", *sys.argv[3:]]))
"""


def _killed_at(point: str, step: int, argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", INJECT, point, str(step), *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
    )
    assert result.returncode == -signal.SIGKILL, (point, result.returncode, result.stderr[-3000:])


@pytest.mark.slow
def test_kills_mid_checkpoint_before_the_pointer_and_mid_export_then_resume_equals_a_straight_run(tmp_path):
    common = [*BASE, "train.checkpoint_every=1", "train.checkpoints_keep=2"]  # 4 steps, EMA on
    train(load_config(None, [*common, f"output_dir={tmp_path / 'straight'}"]))
    run = tmp_path / "killed"
    args = [*common, f"output_dir={run}"]

    _killed_at("mid-checkpoint", 2, args)
    assert complete_checkpoints(run) == [_step(run, 1)]
    assert (run / "checkpoints" / ".step-000002.tmp").is_dir() and not _step(run, 2).exists()  # never in place

    _killed_at("before-pointer", 4, ["--resume", "latest", *args])  # trains 2, 3, 4
    assert complete_checkpoints(run) == [_step(run, 2), _step(run, 3), _step(run, 4)]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-000003"
    assert find_checkpoint(run, "latest") == _step(run, 3)

    _killed_at("mid-export", 0, ["--resume", "latest", *args])  # trains 4 again, dies exporting
    assert complete_checkpoints(run) == [_step(run, 3), _step(run, 4)]
    assert not (run / "export").exists() and list(run.glob(".export.tmp-*"))
    for folder in complete_checkpoints(run):
        verify_checkpoint(folder)

    train(load_config(None, args), resume="latest")  # at step 4 already: only the export is left
    component = Path("export/motion_adapter/diffusion_pytorch_model.safetensors")  # the EMA weights
    assert _same_tensors(run / component, tmp_path / "straight" / component)
    straight, resumed = _metrics(tmp_path / "straight"), _metrics(run)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": ("trainable.safetensors", _truncate, r"trainable\.safetensors has \d+ bytes, the manifest says \d+"),
    "tampered": ("optimizer.bin", _flip_a_byte, r"optimizer\.bin does not match its sha256"),
    "missing": ("ema.safetensors", Path.unlink, r"ema\.safetensors is missing"),
    "bad manifest": ("manifest.json", lambda p: p.write_text("{"), r"unreadable manifest\.json"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_passed_over_for_the_previous_one_with_a_warning(run_copy, damage, caplog):
    name, spoil, message = DAMAGE[damage]
    spoil(_step(run_copy, 4) / name)
    with caplog.at_level(logging.WARNING, logger="seppo_video.checkpoint"):
        assert find_checkpoint(run_copy, "latest") == _step(run_copy, 2)
    assert len(caplog.records) == 1 and caplog.records[0].getMessage().startswith("skipping damaged checkpoint")
    assert re.search(message, caplog.records[0].getMessage())
    with pytest.raises(CheckpointError, match=message):  # named explicitly, it is refused
        find_checkpoint(run_copy, str(_step(run_copy, 4)))


def test_resuming_past_a_tampered_checkpoint_reproduces_the_uninterrupted_weights(base_run, run_copy):
    _flip_a_byte(_step(run_copy, 4) / "trainable.safetensors")
    train(_config(run_copy), resume="latest")  # from step 2, trains 3 and 4 again
    for name in ("trainable.safetensors", "ema.safetensors"):
        assert _same_tensors(_step(run_copy, 4) / name, _step(base_run, 4) / name), name
    assert [r["loss"] for r in _metrics(run_copy)] == [r["loss"] for r in _metrics(base_run)]


# ---------------------------------------------------------------- 5. safe loading


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: proof that a file was unpickled as objects."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


POISONED = {  # file -> how loading refuses it (None: skipped without loading it)
    "optimizer.bin": "UnpicklingError: Weights only load failed",  # accelerate: torch.load(weights_only=True)
    "scheduler.bin": "UnpicklingError: Weights only load failed",
    "custom_checkpoint_0.pkl": "RuntimeError: Number of custom checkpoints",  # the EMA is no longer pickled
    "random_states_0.pkl": None,  # accelerate skips an RNG file it cannot load (our randomness is keyed by step)
}


def test_a_malicious_pickle_in_a_checkpoint_is_never_executed(run_copy, tmp_path):
    from seppo_video.train import setup

    run = setup(_config(run_copy))
    for name, refusal in POISONED.items():
        folder, marker = tmp_path / name / "step-000004", tmp_path / name / "payload-ran"
        shutil.copytree(_step(run_copy, 4), folder)
        torch.save({"state": _Payload(marker)}, folder / name)
        torch.load(folder / name, weights_only=False)  # the payload is live: plain unpickling runs it
        assert marker.is_dir()
        marker.rmdir()
        checkpoint._write_manifest(folder)  # an attacker who can write files can fix the manifest too
        verified = find_checkpoint(run_copy, str(folder))
        if refusal:
            with pytest.raises(CheckpointError, match=rf"step-000004: refusing to load the training state \({refusal}"):
                checkpoint.load_checkpoint(run.accelerator, verified, run.pool, run.ema)
        else:
            assert checkpoint.load_checkpoint(run.accelerator, verified, run.pool, run.ema).step == 4
        assert not marker.exists(), name


def test_no_code_path_unpickles_files():
    """Every torch.load passes weights_only=True; nothing imports pickle-based loaders."""
    offenders = []
    for path in sorted((REPO / "seppo_video").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                safe = any(k.arg == "weights_only" and ast.unparse(k.value) == "True" for k in node.keywords)
                if not safe:
                    offenders.append(f"{path.name}:{node.lineno} torch.load without weights_only=True")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                offenders += [
                    f"{path.name}:{node.lineno} imports {n}" for n in names if n in ("pickle", "dill", "joblib")
                ]
            if isinstance(node, ast.Attribute) and node.attr == "register_for_checkpointing":
                offenders.append(f"{path.name}:{node.lineno} accelerate pickles registered objects")
    assert not offenders


# ---------------------------------------------------------------- 6. disk


def _disk_full(tensors, path, *args, **kwargs):
    Path(path).write_bytes(b"\0" * 100)  # what a full disk leaves behind
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _read_only(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


@pytest.mark.parametrize(
    "patched,failure,phase",
    [
        ("save_file", _disk_full, "saving the training state"),  # accelerate's save hook writing the weights
        ("replace_directory", _read_only, "saving the pool, EMA and counters"),  # renaming it into place
    ],
)
def test_a_failed_checkpoint_write_keeps_the_previous_one_and_stops(
    run_copy, monkeypatch, capsys, patched, failure, phase
):
    before = {p.name: p.read_bytes() for p in _step(run_copy, 4).iterdir() if p.is_file()}
    monkeypatch.setattr(checkpoint, patched, failure)
    argv = ["train", "--resume", "latest", *BASE, f"output_dir={run_copy}", "train.max_steps=5"]
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "checkpoint error" in line]
    assert len(lines) == 1
    assert lines[0][lines[0].index("seppo-video train:") :].startswith(  # after the progress bar's last state
        f"seppo-video train: checkpoint error: writing checkpoint step-000005 failed while {phase}: "
    )
    assert f"the previous checkpoint {_step(run_copy, 4)} is intact" in lines[0] and "--resume latest" in lines[0]
    assert complete_checkpoints(run_copy) == [_step(run_copy, 2), _step(run_copy, 4)]
    assert not list((run_copy / "checkpoints").glob(".step-*"))  # the temporary folder is cleaned up
    assert (run_copy / "checkpoints" / "latest").read_text().strip() == "step-000004"
    verify_checkpoint(_step(run_copy, 4))
    assert {p.name: p.read_bytes() for p in _step(run_copy, 4).iterdir() if p.is_file()} == before


def test_a_failed_folder_replacement_puts_the_old_version_back(tmp_path, monkeypatch):
    from seppo_video.atomic import replace_directory

    target, new = tmp_path / "step-000004", tmp_path / ".step-000004.tmp"
    for folder, text in ((target, "old"), (new, "new")):
        folder.mkdir()
        (folder / "weights").write_text(text)
    real, moves = os.replace, []

    def second_move_fails(src, dst):
        moves.append(src)
        if len(moves) == 2:  # the old version is set aside; moving the new one in fails
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", second_move_fails)
    with pytest.raises(OSError, match="Read-only"):
        replace_directory(new, target)
    assert (target / "weights").read_text() == "old"


def _free_bytes(monkeypatch, free: int) -> None:
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda _: usage._replace(free=free))


def test_the_checkpoint_size_estimate_is_what_a_checkpoint_takes_and_a_short_disk_warns_at_start(
    tmp_path, monkeypatch, caplog
):
    from seppo_video.train import checkpoint_size

    _free_bytes(monkeypatch, 1)
    # a full pool (theta_0 in float32, one bfloat16 snapshot), EMA and AdamW
    config = _config(tmp_path / "run", "seppo.method=seppo", "seppo.pool_size=2", "seppo.pool_dtype=bfloat16",
                     "train.max_steps=2", "train.checkpoint_every=2")
    with caplog.at_level(logging.WARNING, logger="seppo_video.checkpoint"):
        run = train(config)
    size = checkpoint_size(run)
    warning = [r.getMessage() for r in caplog.records if "may not fit" in r.getMessage()]
    assert len(warning) == 1 and "train.checkpoints_keep=3, 4 exist while one is written" in warning[0]
    assert f"{4 * size.total / 1e6:.3g} MB more" in warning[0]  # the tiny model's checkpoints are MBs
    written = _step(tmp_path / "run", 2)

    def on_disk(*patterns: str) -> int:
        return sum(f.stat().st_size for pattern in patterns for f in written.glob(pattern))

    # The files as written, each within its headers (safetensors' JSON, torch.save's zip) of the estimate.
    numel = sum(p.numel() for _, p in run.adapter.named_trainable_parameters())
    assert size.trainable == size.ema == 4 * numel and size.optimizer == 8 * numel and size.pool == 6 * numel
    for estimate, actual in ((size.trainable, on_disk("trainable.safetensors")), (size.ema, on_disk("ema.*")),
                             (size.optimizer, on_disk("optimizer.bin")), (size.pool, on_disk("pool/*"))):
        assert estimate <= actual <= 1.05 * estimate + 64_000, (estimate, actual)


def test_the_disk_warning_counts_the_checkpoints_already_there(tmp_path, monkeypatch):
    mb = 1_000_000
    size = checkpoint.CheckpointSize(trainable=100 * mb, optimizer=200 * mb, ema=0, pool=300 * mb)
    # 3 x 600 MB for a new run (its folder not made yet: the disk is its parent's)
    _free_bytes(monkeypatch, 1800 * mb)
    assert checkpoint.warn_if_checkpoints_may_not_fit(tmp_path / "new" / "run", size, keep=2) is None
    _free_bytes(monkeypatch, 1800 * mb - 1)
    message = checkpoint.warn_if_checkpoints_may_not_fit(tmp_path / "new" / "run", size, keep=2)
    assert message.startswith("checkpoints may not fit on disk: each takes about 0.60 GB (trainable 0.10 GB, "
                              "optimizer 0.20 GB, full pool 0.30 GB); with train.checkpoints_keep=2, 3 exist while "
                              "one is written, 1.80 GB more than")
    assert message.endswith("has 1.80 GB free. Free space, or lower train.checkpoints_keep or seppo.pool_size, "
                            "or set seppo.pool_dtype=bfloat16")
    # a complete checkpoint of 500 MB already there: 1,300 MB more
    old = _step(tmp_path, 2)
    old.mkdir(parents=True)
    with open(old / "weights", "wb") as sparse:
        sparse.truncate(500 * mb - 100)
    (old / checkpoint.MANIFEST_FILE).write_bytes(b"\0" * 100)
    _free_bytes(monkeypatch, 1300 * mb)
    assert checkpoint.warn_if_checkpoints_may_not_fit(tmp_path, size, keep=2) is None
    _free_bytes(monkeypatch, 1300 * mb - 1)
    assert "1.30 GB more" in checkpoint.warn_if_checkpoints_may_not_fit(tmp_path, size, keep=2)


def test_rotation_never_deletes_the_checkpoint_just_written(run_copy):
    # Resuming from the older step-2 with keep=1: the new step-3 is the one `latest` must find.
    train(_config(run_copy, "train.max_steps=3", "train.checkpoints_keep=1"), resume=str(_step(run_copy, 2)))
    assert _step(run_copy, 3).is_dir() and not _step(run_copy, 2).exists()
    assert find_checkpoint(run_copy, "latest") == _step(run_copy, 3)


# ---------------------------------------------------------------- 4. numerics


class _InfiniteGradient(torch.autograd.Function):
    """Identity forward (a finite loss), infinite gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def test_nonfinite_gradients_are_skipped_counted_and_stop_the_run(tmp_path, monkeypatch):
    import seppo_video.train as recipe

    real, bad_steps = recipe.compute_loss, {2, 4, 5, 6}

    def poisoned(run, batch, state):
        loss, stats, ref = real(run, batch, state)
        return (_InfiniteGradient.apply(loss) if state.step + 1 in bad_steps else loss), stats, ref

    monkeypatch.setattr(recipe, "compute_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="3 optimizer steps in a row had a non-finite loss or gradient"):
        train(
            _config(
                tmp_path,
                "train.max_steps=10",
                "train.checkpoint_every=1",
                "train.checkpoints_keep=10",
                "train.ema.enabled=false",
                "train.max_nonfinite_in_row=3",
            )
        )
    records = _metrics(tmp_path)
    assert [r["skipped"] for r in records] == [False, True, False, True, True, True]
    assert all(np.isfinite(r["loss"]) for r in records)  # the losses were finite: only the gradients were not
    weights = {s: _step(tmp_path, s) / "trainable.safetensors" for s in range(1, 6)}
    assert _same_tensors(weights[1], weights[2]) and not _same_tensors(weights[2], weights[3])
    assert _same_tensors(weights[3], weights[4]) and _same_tensors(weights[4], weights[5])
    assert all(torch.isfinite(t).all() for t in load_file(str(weights[5])).values())
    state = json.loads((_step(tmp_path, 5) / "trainer_state.json").read_text())
    assert (state["nonfinite_total"], state["nonfinite_in_row"]) == (3, 2)


def test_with_a_grad_scaler_an_overflowing_step_is_left_to_the_scaler():
    """fp16 (no GPU here to run it): accelerate's GradScaler must see the step to skip it and lower its scale."""
    from types import SimpleNamespace

    from seppo_video.train import optimizer_update

    def run_with(scaler, scaler_skipped: bool, calls: list[str]):
        accelerator = SimpleNamespace(
            clip_grad_norm_=lambda params, max_norm: torch.tensor(float("inf")),
            scaler=scaler,
            optimizer_step_was_skipped=scaler_skipped,
        )
        return SimpleNamespace(
            accelerator=accelerator,
            unet=torch.nn.Linear(1, 1),
            config=SimpleNamespace(train=SimpleNamespace(max_grad_norm=1.0)),
            optimizer=SimpleNamespace(step=lambda: calls.append("optimizer")),
            lr_scheduler=SimpleNamespace(step=lambda: calls.append("scheduler")),
        )

    ours, scaled = [], []
    assert optimizer_update(run_with(None, False, ours)) is False and ours == []  # fp32: skipped here
    assert optimizer_update(run_with(object(), True, scaled)) is False  # fp16: the scaler skipped it...
    assert scaled == ["optimizer", "scheduler"]  # ...after being handed the step


# ---------------------------------------------------------------- 3. configuration


def _leaf_keys(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    keys = []
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            keys += _leaf_keys(hints[field.name], f"{prefix}{field.name}.")
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


def test_every_config_field_rejects_a_value_of_the_wrong_type():
    keys = _leaf_keys(Config)
    assert len(keys) > 50
    for key in keys:
        with pytest.raises(ConfigError) as caught:
            load_config(None, [f"{key}={{not: valid}}"])  # a mapping fits no leaf field
        assert str(caught.value).startswith(key), (key, str(caught.value))


@pytest.mark.parametrize(
    "override,message",
    [
        ("seppo.pool_size=0", "seppo.pool_size: must be at least 2"),
        ("seppo.pool_size=1", "seppo.pool_size: must be at least 2"),
        ("train.learning_rate=-0.1", "train.learning_rate: must be positive, got -0.1"),
        ("train.learning_rate=.nan", "train.learning_rate: must be positive, got nan"),
        ("train.log_every=0", "train.log_every: must be positive"),
        ("train.max_nonfinite_in_row=0", "train.max_nonfinite_in_row: must be positive"),
        ("train.adam_beta2=1.0", r"train.adam_beta2: must be in \[0, 1\)"),
        ("train.ema.decay=1.5", r"train.ema.decay: must be in \[0, 1\]"),
        ("train.lr_warmup_steps=-1", "train.lr_warmup_steps: must be non-negative"),
        ("seed=-3", "seed: must be non-negative"),
        ("seppo.beta=0", "seppo.beta: must be positive"),
        ("seppo.ref_eta=2", r"seppo.ref_eta: must be in \[0, 1\]"),
        ("data.frame_stride=0", "data.frame_stride: must be positive"),
        ("data.target_fps=0", "data.target_fps: must be positive or null"),
        ("data.num_workers=-1", "data.num_workers: must be non-negative"),
        ("data.max_bad_fraction=1.5", r"data.max_bad_fraction: must be in \[0, 1\]"),
        ("model.lora.targets=[]", "model.lora.targets: must be a non-empty list"),
        ("sample.seeds=[0, -1]", "sample.seeds: must be non-negative integers"),
        ("output_dir=' '", "output_dir: must be a non-empty path"),
    ],
)
def test_out_of_range_values_name_the_field_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize(
    "override,package",
    [
        ("model.attention=xformers", "xformers"),
        ("train.log_with=wandb", "wandb"),
        ("train.use_8bit_adam=true", "bitsandbytes"),
    ],
)
def test_an_option_whose_package_is_missing_fails_at_load(override, package, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}: .* needs {package}, which is not installed; "):
        load_config(None, [override])


def _loser_free_annotations(tmp_path: Path) -> Path:
    from seppo_video.data.demo import ensure_demo_data

    videos = ensure_demo_data() / "videos"
    path = tmp_path / "winners.csv"
    path.write_text("videoid,name\n" + "".join(f"{p.stem},clip {p.stem}\n" for p in sorted(videos.glob("*_0??.mp4"))))
    return path


@pytest.mark.parametrize(
    "case",
    [
        "not a diffusers dir",
        "too many frames",
        "resolution",
        "dpo without losers",
        "annotation without caption",
        "annotation not JSON",
        "fp16 on cpu",
    ],
)
def test_impossible_setups_fail_before_the_model_is_loaded(case, tmp_path, monkeypatch, capsys):
    import seppo_video.train as recipe
    from seppo_video.data.demo import ensure_demo_data

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the setup was checked")

    monkeypatch.setattr(recipe, "load_adapter", refuse)
    videos = ensure_demo_data() / "videos"
    (tmp_path / "bad.json").write_text('[{"videoid": "a", "name": "x"},]')
    (tmp_path / "no_caption.csv").write_text("videoid,label\na,1\n")
    video = ["data.kind=video", f"data.video_dir={videos}"]
    overrides, expected = {
        "not a diffusers dir": (
            [f"model.pretrained={tmp_path}", f"model.motion_adapter={tmp_path}"],
            "config error: model.pretrained: .* is not a diffusers pipeline folder",
        ),
        "too many frames": (["data.num_frames=40"], "config error: data.num_frames: 40 is more than the 32 frames"),
        "resolution": (
            ["data.resolution=30"],
            "config error: data.resolution: 30 is not a multiple of 4, .* \\(use 28 or 32\\)",
        ),
        "dpo without losers": (
            ["seppo.method=dpo", *video, f"data.annotations={_loser_free_annotations(tmp_path)}"],
            "data error: .*Diffusion-DPO baseline needs pairs.*'loser' column",
        ),
        "annotation without caption": (
            [*video, f"data.annotations={tmp_path / 'no_caption.csv'}"],
            "data error: .*no_caption.csv: no caption column",
        ),
        "annotation not JSON": (
            [*video, f"data.annotations={tmp_path / 'bad.json'}"],
            "data error: .*bad.json: not valid JSON",
        ),
        "fp16 on cpu": (
            ["train.mixed_precision=fp16"],
            "config error: train.mixed_precision: 'fp16' needs a CUDA GPU.*use 'bf16' or 'no'",
        ),
    }[case]
    assert main(["train", *FAST, f"output_dir={tmp_path / 'run'}", *overrides]) == 2
    err = capsys.readouterr().err
    assert re.search(expected, err), err


# ---------------------------------------------------------------- 2. bad data


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", *args], check=True, timeout=120)


def _forged_sample_table(source: bytes) -> bytes:
    """An mp4 whose ``stts`` box claims 219 entries where there is one: decord aborts the process on it."""
    data = bytearray(source)
    count = data.index(b"stts") + 8  # after the box type and version/flags
    data[count : count + 4] = struct.pack(">I", 219)
    return bytes(data)


@pytest.mark.skipif(BACKEND != "decord", reason="the expected reasons (and the forged header's crash) are decord's")
def test_fuzzed_videos_and_captions_are_skipped_by_reason_and_the_good_ones_train(tmp_path, caplog):
    from seppo_video.data.demo import ensure_demo_data

    demo = ensure_demo_data()
    good = sorted((demo / "videos").glob("*_0??.mp4"))[:6]
    clips = tmp_path / "clips"
    clips.mkdir()
    for path in good:
        (clips / path.name).symlink_to(path)
    source = good[0].read_bytes()
    rows = [f"{p.stem},clip {p.stem}".encode() for p in good]
    bad = {  # file name -> (bytes or a writer, expected reason)
        "random_bytes": (np.random.default_rng(0).bytes(5000), reasons.CORRUPT_FILE),
        "truncated": (source[: len(source) // 2], reasons.CORRUPT_FILE),
        "text": (b"this is a text file, not a video\n" * 20, reasons.CORRUPT_FILE),
        "forged_header": (_forged_sample_table(source), reasons.CORRUPT_FILE),
        "zero_frames": (
            lambda out: _ffmpeg(
                "-f", "lavfi", "-i", "testsrc=size=32x32:rate=8", "-frames:v", "0", "-pix_fmt", "yuv420p", str(out)
            ),
            reasons.CORRUPT_FILE,
        ),
        "one_frame": (
            lambda out: _ffmpeg(
                "-f", "lavfi", "-i", "testsrc=size=32x32:rate=8", "-frames:v", "1", "-pix_fmt", "yuv420p", str(out)
            ),
            reasons.TOO_SHORT,
        ),
        "huge_frames": (
            lambda out: _ffmpeg(
                "-f",
                "lavfi",
                "-i",
                "color=c=black:s=4608x4096:rate=8",
                "-frames:v",
                "4",
                "-pix_fmt",
                "yuv420p",
                "-preset",
                "ultrafast",
                str(out),
            ),
            reasons.FRAME_TOO_LARGE,
        ),
        "empty": (b"", reasons.EMPTY_FILE),
        "missing": (None, reasons.MISSING_FILE),
    }
    for name, (content, _) in bad.items():
        path = clips / f"{name}.mp4"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            content(path)
        rows.append(f"{name},clip {name}".encode())
    # Usable although odd: 33x17 pixels (odd sizes), resized and cropped like any other clip.
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=33x17:rate=8",
        "-frames:v",
        "8",
        "-pix_fmt",
        "yuv444p",
        str(clips / "odd_size.mp4"),
    )
    rows.append(b"odd_size,an odd-sized clip")
    rows.append(f"{good[1].stem},caption in latin-1: caf\xe9".encode("latin-1"))  # not UTF-8
    rows.append(f"{good[2].stem},the same id again".encode())  # duplicate id
    annotations = tmp_path / "fuzz.csv"
    annotations.write_bytes(b"videoid,name\n" + b"\n".join(rows) + b"\n")

    config = load_config(
        None,
        [
            *FAST,
            f"output_dir={tmp_path / 'run'}",
            "seppo.method=sft",
            "train.max_steps=2",
            "data.kind=video",
            f"data.annotations={annotations}",
            f"data.video_dir={clips}",
            "data.max_bad_fraction=0.7",
            "data.shuffle=false",
            "data.batch_size=7",
        ],
    )
    with caplog.at_level(logging.WARNING, logger="seppo_video.data"):
        run = train(config)  # the forged header would abort this process without the probe's child processes
    expected = Counter(reason for _, reason in bad.values())
    expected.update([reasons.BAD_CAPTION, reasons.DUPLICATE_ID])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 2
    assert summary["data_skips"] == {
        "source": str(annotations),
        "total": len(rows),
        "skipped": sum(expected.values()),
        "by_reason": dict(expected),
    }
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping ")]
    for name in bad:
        assert sum(f"{name}.mp4" in line for line in lines) == 1, name
    assert set(run.dataset.ids) == {p.stem for p in good} | {"odd_size"}  # one batch of 7: every good clip trained
    odd = run.dataset[run.dataset.ids.index("odd_size")]["pixels"]
    assert odd.shape == (3, 4, 32, 32) and odd.std() > 0.05
