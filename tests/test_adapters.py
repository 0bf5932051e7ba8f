"""Each backbone, built by make-tiny and loaded with from_pretrained, behind one interface."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from seppo_video.config import ConfigError, ModelConfig
from seppo_video.models.adapters import load_adapter, resolve_paths
from seppo_video.models.tiny import make_tiny

# (kind, trainable mode, frames, a substring every trainable name must contain)
CASES = [
    ("animatediff", "motion", 8, "motion_modules"),
    ("animatediff", "lora", 8, "lora_"),
    ("animatediff", "full", 4, ""),
    ("modelscope", "motion", 8, ""),
    ("modelscope", "lora", 4, "lora_"),
    ("modelscope", "full", 4, ""),
    ("sd", "lora", 1, "lora_"),
    ("sd", "full", 1, ""),
]


@pytest.mark.parametrize("kind,trainable,frames,marker", CASES)
def test_shapes_and_gradients_only_on_selected_parameters(kind, trainable, frames, marker):
    adapter = load_adapter(ModelConfig(kind=kind, trainable=trainable))
    latents = torch.randn(2, 4, frames, 16, 16)
    embeds = adapter.encode_prompt(["a red ball", ""])
    assert embeds.shape[0] == 2 and embeds.ndim == 3
    out = adapter.predict(latents, torch.tensor([3, 900]), embeds)
    assert out.shape == latents.shape
    out.square().mean().backward()
    with_grad = {n for n, p in adapter.unet.named_parameters() if p.grad is not None}
    selected = {n for n, p in adapter.unet.named_parameters() if p.requires_grad}
    assert with_grad and with_grad <= selected
    assert all(marker in name for name in selected)
    if trainable != "full":
        assert len(selected) < len(list(adapter.unet.parameters()))
    if kind == "modelscope" and trainable == "motion":
        assert all(("temp_" in n) or n.startswith("transformer_in.") for n in selected)
    for frozen in (adapter.vae, adapter.text_encoder):
        assert not any(p.requires_grad for p in frozen.parameters())


def test_motion_mode_is_refused_for_the_image_backbone():
    with pytest.raises(ConfigError, match="temporal"):
        load_adapter(ModelConfig(kind="sd", trainable="motion"))


def test_animatediff_conditions_every_frame_on_its_own_video_prompt():
    # Frames folded into the batch must see their own video's prompt (per-frame encoder rows).
    adapter = load_adapter(ModelConfig(kind="animatediff", trainable="motion"), configure=False)
    torch.manual_seed(0)
    latents = torch.randn(1, 4, 4, 16, 16)
    a, b = adapter.encode_prompt(["a red ball"]), adapter.encode_prompt(["ocean waves at dusk"])
    with torch.no_grad():
        both = adapter.predict(latents.repeat(2, 1, 1, 1, 1), torch.tensor([5, 5]), torch.cat([a, b]))
        only_b = adapter.predict(latents, torch.tensor([5]), b)
    torch.testing.assert_close(both[1:], only_b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["animatediff", "modelscope", "sd"])
def test_save_and_reload_gives_identical_outputs(kind, tmp_path):
    make_tiny(kind, tmp_path / "a", seed=7)
    first = load_adapter(_config(kind, tmp_path / "a"), configure=False)
    # Save through diffusers' own writers into a fresh layout, reload, compare.
    if kind == "animatediff":
        shutil.copytree(tmp_path / "a" / "sd", tmp_path / "b" / "sd")  # the SD-1.5 part is untouched
        first.unet.save_motion_modules(str(tmp_path / "b" / "motion_adapter"))
    else:
        first.build_pipeline().save_pretrained(tmp_path / "b")
    second = load_adapter(_config(kind, tmp_path / "b"), configure=False)
    frames = 1 if kind == "sd" else 4
    latents = torch.randn(1, 4, frames, 16, 16)
    outputs = []
    with torch.no_grad():
        for adapter in (first, second):
            noise = adapter.predict(latents, torch.tensor([10]), adapter.encode_prompt(["x"]))
            outputs.append((noise, adapter.decode_latents(latents)))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    other = load_adapter(_config(kind, _fresh(kind, tmp_path / "c")), configure=False)
    with torch.no_grad():
        different = other.predict(latents, torch.tensor([10]), other.encode_prompt(["x"]))
    assert not torch.allclose(different, outputs[0][0])  # the comparison can tell models apart


def _fresh(kind, path):
    return make_tiny(kind, path, seed=8)


def _config(kind, root):
    if kind == "animatediff":
        return ModelConfig(kind=kind, pretrained=str(root / "sd"), motion_adapter=str(root / "motion_adapter"))
    return ModelConfig(kind=kind, pretrained=str(root), trainable="full")


def test_make_tiny_writes_the_real_layouts(tmp_path):
    make_tiny("animatediff", tmp_path / "ad")
    index = json.loads((tmp_path / "ad" / "sd" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert (tmp_path / "ad" / "motion_adapter" / "config.json").exists()
    make_tiny("modelscope", tmp_path / "ms")
    assert json.loads((tmp_path / "ms" / "model_index.json").read_text())["_class_name"] == "TextToVideoSDPipeline"
    assert json.loads((tmp_path / "ms" / "unet" / "config.json").read_text())["_class_name"] == "UNet3DConditionModel"


def test_vae_round_trip_shapes_and_chunking():
    adapter = load_adapter(ModelConfig(kind="modelscope", trainable="motion", vae_chunk_frames=3), configure=False)
    pixels = torch.rand(2, 3, 7, 64, 64) * 2 - 1
    latents = adapter.encode_video(pixels)
    assert latents.shape == (2, 4, 7, 16, 16)
    adapter.vae_chunk_frames = 100
    torch.testing.assert_close(adapter.encode_video(pixels), latents, rtol=1e-4, atol=1e-4)
    decoded = adapter.decode_latents(latents)
    assert decoded.shape == pixels.shape and decoded.min() >= -1 and decoded.max() <= 1


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="model.pretrained"):
        resolve_paths(ModelConfig(kind="sd", pretrained=str(tmp_path / "nope"), trainable="full"))
    make_tiny("animatediff", tmp_path / "ad")
    with pytest.raises(ConfigError, match="model.motion_adapter"):
        resolve_paths(ModelConfig(kind="animatediff", pretrained=str(tmp_path / "ad" / "sd"),
                                  motion_adapter=str(tmp_path / "missing")))


def test_xformers_request_without_xformers_fails_clearly():
    import importlib.util

    if importlib.util.find_spec("xformers") is not None:
        pytest.skip("xformers is installed here")
    with pytest.raises(ConfigError, match="xformers"):
        load_adapter(ModelConfig(kind="sd", trainable="full", attention="xformers"))
