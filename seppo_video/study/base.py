"""The world's base models: competent, imperfect starting points for alignment.

``seppo-video make-world-base --config configs/world_base.yaml`` (ModelScope UNet) or
``configs/world_base_wan.yaml`` (Wan flow-matching transformer) builds one: a random-init tiny
pipeline whose tokenizer has the world's words as whole tokens (``make_tiny(words=WORDS)``),
pretrained with ``seppo-video train``'s own loop (SFT) on a mixture of good and defective clips of
the world's training prompts, so that its samples are a bimodal mix of good clips and clips with a
defect. The result is a standard diffusers pipeline folder (the trained denoiser stored in float16
to keep the shipped copy small; diffusers loads it as float32) with ``world_base.json``: the
recipe, the torch version and thread count it was built with, and the denoiser's sha256. The
repository ships one per kind in ``WORLD_BASE_DIRS`` (``model.pretrained: world``); the same
command with the same torch version and thread count rebuilds it bit for bit.
"""

from __future__ import annotations

import json
import platform
import shlex
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from seppo_video.atomic import atomic_directory, file_sha256
from seppo_video.config import Config, ConfigError, config_from_mapping, load_config
from seppo_video.data.world import WORDS
from seppo_video.models.tiny import WORLD_BASE_DIRS, make_tiny, tiny_wan_transformer
from seppo_video.train import train

WORLD_BASE_INFO = "world_base.json"
# The denoiser each kind's base trains (its pipeline's folder name).
DENOISER = {"modelscope": "unet", "wan": "transformer"}
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


def build_world_base(config_path: Path, out: Path | None = None, threads: int = 2,
                     overrides: Sequence[str] = (), work: Path | None = None) -> Path:
    """Pretrain the world's base model with the training config ``config_path`` (and ``key=value``
    ``overrides``) and write it to ``out`` (default: the package's copy for the config's model kind).

    ``model.pretrained`` and ``output_dir`` are set here (a fresh random init and a scratch folder);
    everything else is the config's. ``threads`` fixes torch's CPU threads, since float reductions,
    and so the weights, depend on it.
    """
    recipe = yaml.safe_load(Path(config_path).read_text())
    config = load_config(config_path, overrides)
    kind = config.model.kind
    if kind not in DENOISER or config.data.kind != "world" or config.seppo.method != "sft":
        raise ConfigError(f"{config_path}: the world base is SFT of a model.kind in {sorted(DENOISER)} "
                          f"on data.kind='world' (got model.kind={kind!r}, data.kind={config.data.kind!r}, "
                          f"seppo.method={config.seppo.method!r})")
    out = Path(out) if out is not None else WORLD_BASE_DIRS[kind]
    denoiser = DENOISER[kind]
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="world-base-", dir=work) as scratch:
        init = world_init(Path(scratch) / "init", kind=kind, seed=config.seed)
        run_dir = Path(scratch) / "run"
        started = time.perf_counter()
        train(load_config(config_path, [*overrides, f"model.pretrained={init}", f"output_dir={run_dir}"]))
        minutes = (time.perf_counter() - started) / 60
        with atomic_directory(out) as tmp:
            shutil.copytree(init, tmp, dirs_exist_ok=True)
            (tmp / "seppo_tiny.json").unlink()  # world_base.json says what this folder is
            for part in (denoiser, "scheduler"):  # the trained denoiser, and the schedule it was trained with
                shutil.rmtree(tmp / part)
                shutil.copytree(run_dir / "export" / part, tmp / part)
            _store_half(tmp / denoiser)
            info = _info(recipe, Path(config_path).name, list(overrides), threads, minutes, tmp / denoiser)
            (tmp / WORLD_BASE_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return out


# Token embeddings are drawn with CLIP's std 0.02 and then scaled to std 1: in a random 2-layer causal
# encoder at std 0.02 a word's state is mostly its context (the position word's state, third in the
# prompt, is as similar across positions as within one: cos 0.86 vs 0.89), at std 1 it is mostly the
# word (cos 0.20 vs 0.97), as a trained encoder's word states are. Without it the base cannot read
# the position of a prompt it was not trained on.
TOKEN_EMBEDDING_SCALE = 50.0


# The Wan base's transformer: the tiny Wan's layout, widened to about the world UNet's size (1.2 M
# parameters against its 1.3 M) so the two families are compared at one capacity. The tiny Wan
# (24 k parameters) cannot learn the world: 20 SFT steps move its reward by 0.005.
WORLD_WAN_TRANSFORMER = {"num_attention_heads": 4, "attention_head_dim": 32, "ffn_dim": 512, "num_layers": 4}


def world_init(out: Path, kind: str = "modelscope", seed: int = 0) -> Path:
    """The random-init model a world base is trained from: the tiny ``kind`` with the world's words
    as tokens. ModelScope's CLIP token embeddings are scaled by ``TOKEN_EMBEDDING_SCALE``; UMT5's
    are drawn at std 1 already. Wan's transformer is ``WORLD_WAN_TRANSFORMER``."""
    make_tiny(kind, out, seed=seed, words=WORDS)
    if kind == "wan":
        torch.manual_seed(seed)
        tiny_wan_transformer(**WORLD_WAN_TRANSFORMER).save_pretrained(out / "transformer")
        return out
    from transformers import CLIPTextModel

    encoder = CLIPTextModel.from_pretrained(out / "text_encoder")
    with torch.no_grad():
        encoder.get_input_embeddings().weight.mul_(TOKEN_EMBEDDING_SCALE)
    encoder.save_pretrained(out / "text_encoder")
    return out


def _store_half(folder: Path) -> None:
    """Rewrite the denoiser's weights file in float16 (half the size; diffusers loads it as float32)."""
    from safetensors.torch import load_file, save_file

    path = folder / WEIGHTS_FILE
    save_file({name: tensor.half() for name, tensor in load_file(path).items()}, path, metadata={"format": "pt"})


def _info(recipe: dict[str, Any], config_name: str, overrides: list[str], threads: int, minutes: float,
          denoiser: Path) -> dict[str, Any]:
    return {
        "command": shlex.join(["seppo-video", "make-world-base", "--config", f"configs/{config_name}",
                               "--threads", str(threads), *overrides]),
        "config": recipe,
        "overrides": overrides,
        "torch": torch.__version__,
        "threads": threads,
        "machine": platform.machine(),
        "train_minutes": round(minutes, 1),
        "weights": f"{denoiser.name}/{WEIGHTS_FILE}",
        "weights_sha256": file_sha256(denoiser / WEIGHTS_FILE),
    }


def world_base_config(folder: Path = WORLD_BASE_DIRS["modelscope"]) -> Config:
    """The training config a world base folder was built with (its recipe and overrides)."""
    info = world_base_info(folder)
    return config_from_mapping(info["config"], info["overrides"])


def world_base_info(folder: Path = WORLD_BASE_DIRS["modelscope"]) -> dict[str, Any]:
    """The recipe a world base folder was built with (its ``world_base.json``)."""
    path = Path(folder) / WORLD_BASE_INFO
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a world base (no {WORLD_BASE_INFO}); build one with "
                                "`seppo-video make-world-base --config configs/world_base.yaml` (or world_base_wan.yaml)")
    return json.loads(path.read_text())
