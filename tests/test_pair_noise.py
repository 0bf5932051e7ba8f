"""Within a pair, winner and reference sample share (t, eps); pairs differ from each other."""

from __future__ import annotations

import pytest
import torch

from seppo_video.models.tiny import _scheduler
from seppo_video.seppo.noise import DDPMNoise, noise_pairs
from seppo_video.train import _batch_generator


def _alphas_bar(t: torch.Tensor) -> torch.Tensor:
    # Recomputed from the betas, independently of the scheduler's own add_noise.
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, dim=0)[t]


def test_pairs_share_timestep_and_noise():
    process = DDPMNoise(_scheduler().config)
    torch.manual_seed(0)
    x_w, x_ref = torch.randn(4, 4, 3, 8, 8), torch.randn(4, 4, 3, 8, 8)
    pairs = noise_pairs(process, x_w, x_ref, torch.Generator().manual_seed(5))
    noisy, t2, eps2 = pairs.noisy, pairs.timesteps, pairs.target  # epsilon prediction: the target is eps
    t_w, t_ref = t2[:4], t2[4:]
    assert torch.equal(t_w, t_ref) and torch.equal(eps2[:4], eps2[4:])
    # Invert q(x, t, eps) for each sample with the schedule rebuilt here: both members of a
    # pair must reveal the same eps, and the same t.
    abar = _alphas_bar(t_w).view(-1, 1, 1, 1, 1)
    eps_from_w = (noisy[:4].double() - abar.sqrt() * x_w.double()) / (1 - abar).sqrt()
    eps_from_ref = (noisy[4:].double() - abar.sqrt() * x_ref.double()) / (1 - abar).sqrt()
    torch.testing.assert_close(eps_from_w, eps_from_ref, rtol=1e-4, atol=1e-4)
    # Different pairs get different draws.
    assert len(set(t_w.tolist())) > 1
    flat = eps_from_w.flatten(1)
    assert not torch.allclose(flat[0], flat[1], atol=1e-2)


def test_draws_are_keyed_by_batch_counter_and_rank():
    a = torch.randint(0, 1000, (8,), generator=_batch_generator(0, 17, 0))
    b = torch.randint(0, 1000, (8,), generator=_batch_generator(0, 17, 0))
    c = torch.randint(0, 1000, (8,), generator=_batch_generator(0, 18, 0))
    d = torch.randint(0, 1000, (8,), generator=_batch_generator(0, 17, 1))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_training_target_follows_the_prediction_type(prediction_type):
    process = DDPMNoise({**_scheduler().config, "prediction_type": prediction_type})
    x_w, x_ref = torch.randn(3, 4, 2, 8, 8), torch.randn(3, 4, 2, 8, 8)
    pairs = noise_pairs(process, x_w, x_ref, torch.Generator().manual_seed(1))
    x0 = torch.cat([x_w, x_ref]).double()
    abar = _alphas_bar(pairs.timesteps).view(-1, 1, 1, 1, 1)
    eps = (pairs.noisy.double() - abar.sqrt() * x0) / (1 - abar).sqrt()
    expected = {
        "epsilon": eps,
        "v_prediction": abar.sqrt() * eps - (1 - abar).sqrt() * x0,  # v = alpha_t eps - sigma_t x0
        "sample": x0,
    }[prediction_type]
    torch.testing.assert_close(pairs.target.double(), expected, rtol=1e-4, atol=1e-4)


def test_unknown_prediction_type_is_refused():
    process = DDPMNoise(_scheduler().config)
    process.scheduler.register_to_config(prediction_type="flow")
    with pytest.raises(ValueError, match="prediction_type 'flow'"):
        process.target(torch.zeros(1), torch.zeros(1), torch.zeros(1, dtype=torch.long))
