"""Aligned weights in diffusers format, and loading them back into a pipeline.

What an export folder holds, by trainable mode:

- ``motion`` on AnimateDiff: ``motion_adapter/`` (a ``MotionAdapter`` folder:
  ``AnimateDiffPipeline.from_pretrained(sd15, motion_adapter=MotionAdapter.from_pretrained(it))``).
- ``lora``: ``lora/pytorch_lora_weights.safetensors`` (``pipe.load_lora_weights(it)``).
- ``full``, or ``motion`` on ModelScope (whose temporal layers are not a
  separate diffusers component): ``unet/`` (a complete UNet folder); for Wan and CogVideoX,
  ``transformer/`` (a complete ``WanTransformer3DModel`` / ``CogVideoXTransformer3DModel`` folder).

Beside them, ``scheduler/`` is the noise schedule the weights were trained with
(AnimateDiff's linear betas, the prediction type: pass it to the pipeline as
``scheduler=DDIMScheduler.from_pretrained('<export>/scheduler')``; for Wan a
``FlowMatchEulerDiscreteScheduler`` with the training ``shift``, for CogVideoX its
``CogVideoXDDIMScheduler`` with the SNR shift),
``seppo_export.json`` names the base model, and ``README.md`` is a model card
(base model, method, weights, schedule, config, steps).

Which weights: the policy's, or its EMA when the run had ``train.ema.enabled``,
whether the export is written at the end of training or later by
``seppo-video export`` from a checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from seppo_video.atomic import atomic_directory
from seppo_video.config import ModelConfig
from seppo_video.models.adapters import (
    ADAPTERS,
    BACKBONE_SCHEDULES,
    ModelPaths,
    VideoDiffusionAdapter,
    resolve_paths,
)

EXPORT_INFO = "seppo_export.json"


def export_weights(
    adapter: VideoDiffusionAdapter,
    out_dir: str | Path,
    model_config: ModelConfig,
    *,
    method: str,
    steps: int,
    run_config: dict[str, Any] | None = None,
    weights: str = "policy",
) -> Path:
    """Write the adapter's UNet (the policy, never the reference) to ``out_dir``.

    ``weights`` says what its trainable tensors hold, for the model card: ``policy`` or
    ``ema`` (the caller has copied the EMA weights in).
    """
    unet = adapter.unet
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        mode = adapter.trainable_mode
        if mode == "lora" and hasattr(unet, "load_lora_adapter"):
            _save_lora(adapter, unet, tmp / "lora")
            component = "lora"
        elif mode == "lora":  # UNet3D has no diffusers LoRA loader: ship the merged UNet
            component = adapter.denoiser_folder
            _save_full_unet(_merged_copy(unet), tmp / component)
        elif mode == "motion" and adapter.kind == "animatediff":
            unet.save_motion_modules(str(tmp / "motion_adapter"))
            component = "motion_adapter"
        else:
            component = adapter.denoiser_folder  # unet/, or transformer/ for Wan
            _save_full_unet(unet, tmp / component)
        adapter.sampling_scheduler().save_pretrained(str(tmp / "scheduler"))
        info = {
            "format": 1,
            "kind": adapter.kind,
            "component": component,
            "trainable": mode,
            "method": method,
            "steps": steps,
            "weights": weights,
            "prediction_type": adapter.prediction_type,
            "beta_schedule": adapter.scheduler_config.get("beta_schedule"),
            "snr_shift_scale": adapter.scheduler_config.get("snr_shift_scale"),  # CogVideoX only
            "flow_shift": adapter.scheduler_config.get("shift"),  # flow-matching backbones only
            "dynamic_shift": _dynamic_shift(adapter.scheduler_config),  # LTX-Video only
            "base": {
                "pretrained": model_config.pretrained,
                "motion_adapter": model_config.motion_adapter,
            },
        }
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2))
        (tmp / "README.md").write_text(_model_card(info, run_config))
    return out_dir


def _dynamic_shift(schedule: dict[str, Any]) -> dict[str, Any] | None:
    """A dynamically shifted flow schedule's settings (None for a fixed shift or a DDPM schedule)."""
    if not schedule.get("use_dynamic_shifting"):
        return None
    keys = ("base_shift", "max_shift", "base_image_seq_len", "max_image_seq_len", "shift_terminal")
    return {key: schedule.get(key) for key in keys}


def _save_lora(adapter: VideoDiffusionAdapter, unet: torch.nn.Module, directory: Path) -> None:
    import diffusers

    pipeline_class = getattr(diffusers, adapter.pipeline_class_name)
    layers = {adapter.lora_layers_argument: adapter.lora_layers()}
    pipeline_class.save_lora_weights(str(directory), **layers, safe_serialization=True)


def _merged_copy(unet: torch.nn.Module) -> torch.nn.Module:
    """A plain UNet (no peft layers) whose weights have the LoRA deltas folded in."""
    import copy

    from peft.tuners.lora import LoraLayer

    merged = copy.deepcopy(unet)
    for module in merged.modules():
        if isinstance(module, LoraLayer):
            module.merge()
    state = {k.replace(".base_layer.", "."): v for k, v in merged.state_dict().items() if "lora_" not in k}
    plain = type(unet).from_config(unet.config)
    plain.load_state_dict(state)
    return plain


def _save_full_unet(unet: torch.nn.Module, directory: Path) -> None:
    unet.save_pretrained(str(directory), safe_serialization=True)


def _model_card(info: dict[str, Any], run_config: dict[str, Any] | None) -> str:
    import yaml

    backbone = ADAPTERS[info["kind"]]
    load = {
        "motion_adapter": "MotionAdapter.from_pretrained('<export>/motion_adapter') passed as "
        "AnimateDiffPipeline.from_pretrained(<base>, motion_adapter=...)",
        "lora": "pipe.load_lora_weights('<export>/lora')",
        "unet": "the UNet class's from_pretrained('<export>/unet') passed as unet=... to the pipeline",
        "transformer": f"{backbone.unet_class_name}.from_pretrained('<export>/transformer') passed as transformer=... "
        f"to {backbone.pipeline_class_name}.from_pretrained(<base>)",
    }[info["component"]]
    scheduler = (f"(`scheduler/`: pass `scheduler={backbone.sampler_class_name}.from_pretrained('<export>/scheduler')` "
                 "to the pipeline)")
    if info.get("dynamic_shift"):
        shift = info["dynamic_shift"]
        schedule = (f"- noise schedule: flow matching (velocity target), shift growing with the video's latent tokens "
                    f"(mu {shift['base_shift']} at {shift['base_image_seq_len']} to {shift['max_shift']} at "
                    f"{shift['max_image_seq_len']}; sampling stretched to end at {shift['shift_terminal']}) "
                    f"{scheduler}")
    elif info.get("flow_shift") is not None:
        schedule = f"- noise schedule: flow matching (velocity target), shift {info['flow_shift']} {scheduler}"
    elif info.get("snr_shift_scale") is not None:
        schedule = (f"- noise schedule: CogVideoX's {info['beta_schedule']} betas with SNR shift "
                    f"{info['snr_shift_scale']} and zero terminal SNR, prediction type {info['prediction_type']} "
                    f"{scheduler}")
    else:
        schedule = (f"- noise schedule: {info['beta_schedule']} betas, prediction type {info['prediction_type']} "
                    f"{scheduler}")
    card = [
        "# seppo-video export",
        "",
        f"- base model: `{info['base']['pretrained']}`"
        + (f" + motion adapter `{info['base']['motion_adapter']}`" if info["base"]["motion_adapter"] else ""),
        f"- backbone: {info['kind']}",
        f"- method: {info['method']}",
        f"- trainable: {info['trainable']}",
        f"- optimizer steps: {info['steps']}",
        "- weights: " + ("the EMA of the policy (train.ema.enabled)" if info["weights"] == "ema"
                         else "the policy at its last optimizer step (no EMA)"),
        schedule,
        f"- load with: {load} (or `seppo-video sample --model <export>`)",
    ]
    if run_config:
        card += ["", "## Training config", "", "```yaml", yaml.safe_dump(run_config, sort_keys=False).strip(), "```"]
    return "\n".join(card) + "\n"


# ---------------------------------------------------------------- loading back


def read_export_info(path: str | Path) -> dict[str, Any] | None:
    file = Path(path) / EXPORT_INFO
    return json.loads(file.read_text()) if file.exists() else None


def load_pipeline(model: str | Path, scheduler: str = "ddim"):
    """A diffusers pipeline for ``model``: an export folder, a pipeline folder,
    an AnimateDiff folder (``sd/`` + ``motion_adapter/``), or ``tiny:<kind>``.

    ``scheduler="ddim"`` samples the DDPM backbones with DDIM; Wan and CogVideoX always sample with
    their own schedulers (flow-matching Euler, ``CogVideoXDDIMScheduler``).
    """
    import diffusers

    info = read_export_info(model) if not str(model).startswith("tiny:") else None
    if info is not None:
        base = resolve_paths(ModelConfig(kind=info["kind"], trainable="full", **info["base"]))
        kind = info["kind"]
    else:
        kind, base = _locate_base(model)
    adapter_class = ADAPTERS[kind]
    pipeline_class = getattr(diffusers, adapter_class.pipeline_class_name)
    kwargs: dict[str, Any] = {}
    if kind == "animatediff":
        motion_dir = Path(model) / "motion_adapter" if info and info["component"] == "motion_adapter" else None
        kwargs["motion_adapter"] = diffusers.MotionAdapter.from_pretrained(motion_dir or base.motion_adapter)
    if kind == "sd":
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if info and info["component"] == adapter_class.denoiser_folder:
        unet_class = getattr(diffusers, adapter_class.unet_class_name)
        kwargs[adapter_class.denoiser_folder] = unet_class.from_pretrained(Path(model) / adapter_class.denoiser_folder)
    pipe = pipeline_class.from_pretrained(str(base.pipeline), **kwargs)
    if info and info["component"] == "lora":
        pipe.load_lora_weights(str(Path(model) / "lora"))
    sampler = getattr(diffusers, adapter_class.sampler_class_name)
    if info is not None:  # the schedule the weights were trained with, not the base folder's
        pipe.scheduler = sampler.from_pretrained(str(Path(model) / "scheduler"))
    else:  # a base model: the backbone's own training schedule (AnimateDiff's linear betas)
        pipe.scheduler = sampler.from_config({**pipe.scheduler.config, **BACKBONE_SCHEDULES.get(kind, {})})
    if scheduler == "ddim" and adapter_class.sampler_class_name == "DDIMScheduler":
        pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _locate_base(model: str | Path) -> tuple[str, ModelPaths]:
    text = str(model)
    if text.startswith("tiny:"):
        kind = text.split(":", 1)[1]
        return kind, resolve_paths(ModelConfig(kind=kind, trainable="full"))  # type: ignore[arg-type]
    root = Path(model)
    if (root / "sd" / "model_index.json").exists() and (root / "motion_adapter" / "config.json").exists():
        return "animatediff", ModelPaths(root / "sd", root / "motion_adapter")
    index = root / "model_index.json"
    if not index.exists():
        raise FileNotFoundError(
            f"{root} is neither a seppo-video export ({EXPORT_INFO}), a diffusers pipeline folder "
            "(model_index.json), nor an AnimateDiff folder (sd/ + motion_adapter/)"
        )
    class_name = json.loads(index.read_text()).get("_class_name", "")
    # AnimateDiff bases are sd/ + motion_adapter/ folders (above), not an AnimateDiffPipeline folder.
    kinds = {cls.pipeline_class_name: kind for kind, cls in ADAPTERS.items() if kind != "animatediff"}
    if class_name not in kinds:
        raise ValueError(
            f"{index}: pipeline class {class_name!r} is not supported here; for AnimateDiff pass a folder "
            "with sd/ and motion_adapter/, or an export folder"
        )
    return kinds[class_name], ModelPaths(root)
