"""Reference inference reuses the policy module with snapshot tensors swapped in."""

from __future__ import annotations

import pytest
import torch

from seppo_video.config import ModelConfig
from seppo_video.models.adapters import load_adapter
from seppo_video.seppo.pool import ReferencePool
from seppo_video.seppo.reference import SwappedModule

CASES = [("animatediff", "motion", 4), ("modelscope", "motion", 4), ("sd", "lora", 1), ("animatediff", "lora", 2)]


def _perturb_trainable(adapter, scale=0.05):
    with torch.no_grad():
        for _, param in adapter.named_trainable_parameters():
            param.add_(scale * torch.randn_like(param))


@pytest.mark.parametrize("kind,trainable,frames", CASES)
def test_reference_equals_independent_copy_with_snapshot(kind, trainable, frames):
    torch.manual_seed(0)
    policy = load_adapter(ModelConfig(kind=kind, trainable=trainable))
    _perturb_trainable(policy)  # LoRA starts as a no-op: make the snapshot differ from the base
    pool = ReferencePool(max_size=4)
    pool.add(0, policy.trainable_state())
    snapshot = {k: v.clone() for k, v in pool.get(0).items()}
    _perturb_trainable(policy)  # the policy moves on after the snapshot

    latents = torch.randn(2, 4, frames, 16, 16)
    timesteps = torch.tensor([20, 700])
    embeds = policy.encode_prompt(["a cat", "sunset over sea"])
    with torch.no_grad():
        reference_out = policy.predict(latents, timesteps, embeds, unet=SwappedModule(policy.unet, pool.get(0)))
        policy_out = policy.predict(latents, timesteps, embeds)

    # An independently built model, loaded from disk, with the snapshot's tensors.
    copy = load_adapter(ModelConfig(kind=kind, trainable=trainable))
    _, unexpected = copy.unet.load_state_dict(snapshot, strict=False)
    assert not unexpected
    with torch.no_grad():
        copy_out = copy.predict(latents, timesteps, embeds)
    torch.testing.assert_close(reference_out, copy_out, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(reference_out, policy_out, atol=1e-4)
    # The policy module's own parameters were never overwritten by the swap.
    for name, param in policy.named_trainable_parameters():
        assert not torch.equal(param.detach(), snapshot[name]), name


def test_pool_memory_is_trainable_tensors_only():
    policy = load_adapter(ModelConfig(kind="animatediff", trainable="motion"))
    trainable_bytes = sum(p.numel() * p.element_size() for _, p in policy.named_trainable_parameters())
    full_bytes = sum(p.numel() * p.element_size() for p in policy.unet.parameters())
    pool = ReferencePool(max_size=8)
    for step in range(3):
        pool.add(step, policy.trainable_state())
    assert pool.nbytes() == 3 * trainable_bytes
    assert trainable_bytes < full_bytes / 2
    assert all("motion_modules" in name for name in pool.get(0))


def test_swap_rejects_unknown_tensor_names():
    policy = load_adapter(ModelConfig(kind="sd", trainable="full"))
    with pytest.raises(KeyError):
        SwappedModule(policy.unet, {"not.a.parameter": torch.zeros(1)})


def test_chunked_reference_pass_gives_the_same_errors():
    from seppo_video.seppo.noise import NoisedBatch
    from seppo_video.train import reference_errors

    policy = load_adapter(ModelConfig(kind="animatediff", trainable="motion"))
    reference = SwappedModule(policy.unet, policy.trainable_state())
    torch.manual_seed(0)
    noisy, eps = torch.randn(4, 4, 3, 8, 8), torch.randn(4, 4, 3, 8, 8)
    timesteps = torch.tensor([5, 300, 600, 999])
    embeds = policy.encode_prompt(["a", "b", "c", "d"])
    noised = NoisedBatch(noisy, timesteps, eps)
    whole = reference_errors(policy, reference, noised, embeds, None, None)
    chunked = reference_errors(policy, reference, noised, embeds, None, 3)
    assert whole.shape == (4,) and not whole.requires_grad
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dropout_in", ["lora", "modelscope"])
def test_reference_is_deterministic_while_the_policy_trains_with_dropout(dropout_in):
    """LoRA dropout or ModelScope's temporal-convolution dropout: the policy in train mode gives a
    different output per call, its reference (the same weights) one output, and the policy's
    modes are untouched afterwards."""
    from seppo_video.config import LoraConfig

    if dropout_in == "lora":
        policy = load_adapter(ModelConfig(kind="animatediff", trainable="lora", lora=LoraConfig(dropout=0.5)))
    else:
        policy = load_adapter(ModelConfig(kind="modelscope", trainable="motion"))
    _perturb_trainable(policy)  # LoRA B and ModelScope's last temporal conv start at zero: dropout would not show
    policy.unet.train()
    reference = SwappedModule(policy.unet, policy.trainable_state())
    torch.manual_seed(0)
    latents, timesteps = torch.randn(1, 4, 3, 8, 8), torch.tensor([400])
    embeds = policy.encode_prompt(["a"])
    with torch.no_grad():
        ref_a, ref_b = (policy.predict(latents, timesteps, embeds, unet=reference) for _ in range(2))
        pol_a, pol_b = (policy.predict(latents, timesteps, embeds) for _ in range(2))
        policy.unet.eval()
        pol_eval = policy.predict(latents, timesteps, embeds)
    assert torch.equal(ref_a, ref_b)
    assert not torch.allclose(pol_a, pol_b)
    torch.testing.assert_close(ref_a, pol_eval, rtol=1e-4, atol=1e-5)  # the reference is the eval-mode model
    policy.unet.train()
    with torch.no_grad():
        policy.predict(latents, timesteps, embeds, unet=reference)
    assert all(module.training for module in policy.unet.modules())
