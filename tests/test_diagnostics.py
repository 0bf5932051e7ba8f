"""AAF sign precision: the agreement measure, and its behaviour on real tiny models."""

from __future__ import annotations

import torch

from seppo_video.config import ModelConfig
from seppo_video.models.adapters import load_adapter
from seppo_video.seppo.diagnostics import anchor_draws, sign_agreement
from seppo_video.seppo.noise import DDPMNoise
from seppo_video.seppo.reference import SwappedModule


def test_sign_agreement_by_hand():
    anchors = torch.tensor([[1.0, -2.0, 0.5], [2.0, 1.0, -0.5], [-0.5, -1.0, 0.2], [3.0, -0.1, -0.1]])
    # Means: 1.375 (+), -0.525 (-), 0.025 (+). Signs agreeing: 3/4, 3/4, 2/4.
    torch.testing.assert_close(sign_agreement(anchors), torch.tensor([0.75, 0.75, 0.5]))


def test_a_damaged_reference_is_recognised_more_often_than_a_coin_toss():
    adapter = load_adapter(ModelConfig(kind="animatediff", trainable="motion"))
    torch.manual_seed(0)
    damaged = {n: p + 0.5 * torch.randn_like(p) for n, p in adapter.trainable_state().items()}
    embeds = adapter.encode_prompt(["a", "b"])
    x_w = torch.randn(2, 4, 3, 8, 8)
    process = DDPMNoise(adapter.scheduler_config)

    def predict(noisy, t, unet):
        return adapter.predict(noisy, t, embeds, unet=unet)

    anchors = anchor_draws(predict, adapter.unet, SwappedModule(adapter.unet, damaged), x_w, process, draws=24)
    assert anchors.shape == (24, 2)
    assert (anchors.mean(dim=0) > 0).all()  # the policy fits better than a heavily noised copy
    # One draw is noisy even against a heavily damaged reference (~0.8 here): that is what we measure.
    assert (sign_agreement(anchors) > 0.6).all()
    same = anchor_draws(predict, adapter.unet, adapter.unet, x_w, process, draws=3)
    assert torch.equal(same, torch.zeros_like(same))  # identical models: a = 0 on every draw
