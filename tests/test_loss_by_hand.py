"""``compute_loss`` recomputed by hand, for every backbone, AAF mode and prediction type.

Independent of the trainer's code: the reference is a deep copy of the policy with the
snapshot loaded, the reference sample comes from a DDIM + CFG loop written here, q(x, t, eps)
and the targets from the betas, the UNets are called directly in each backbone's layout, and
the AAF and the loss are spelled out from ALGORITHM.md section 3. Only the random draws are
shared: (t, eps) and the per-sample seeds are taken from the trainer's keyed generators.
"""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
import torch.nn.functional as F

import seppo_video.train as recipe
from seppo_video.checkpoint import TrainerState
from seppo_video.config import load_config
from seppo_video.data import collate

BACKBONES = {
    "animatediff": ["model.kind=animatediff", "model.trainable=motion", "data.num_frames=3"],
    "modelscope": ["model.kind=modelscope", "model.trainable=motion", "data.num_frames=3"],
    "sd": ["model.kind=sd", "model.trainable=lora", "data.num_frames=1"],
}
STEPS, GUIDANCE, BETA_T = 3, 3.0, 2.5 * 1000
SFT_WEIGHT = {"none": 0.5}  # the SFT regulariser on the plain-DPO cases (one per backbone); 0 elsewhere


def _alphas_bar(kind: str) -> torch.Tensor:
    if kind == "animatediff":  # the motion modules' training schedule
        betas = torch.linspace(0.00085, 0.012, 1000, dtype=torch.float64)
    else:  # SD-1.5 / ModelScope: scaled_linear
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, dim=0)


def _unet_output(kind: str, unet, x: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
    """Each backbone called in its own layout (AnimateDiff: a text row per frame; SD: frames as images)."""
    frames = x.shape[2]
    if kind == "modelscope":
        return unet(x, t, encoder_hidden_states=embeds).sample
    if kind == "animatediff":
        return unet(x, t, encoder_hidden_states=embeds.repeat_interleave(frames, 0)).sample
    images = x.permute(0, 2, 1, 3, 4).reshape(-1, *x.shape[1:2], *x.shape[3:])
    out = unet(images, t.repeat_interleave(frames), encoder_hidden_states=embeds.repeat_interleave(frames, 0)).sample
    return out.reshape(x.shape[0], frames, *out.shape[1:]).permute(0, 2, 1, 3, 4)


def _to_eps_and_x0(prediction_type: str, output, x, abar):
    if prediction_type == "epsilon":
        eps = output
        return eps, (x - (1 - abar).sqrt() * eps) / abar.sqrt()
    # v = sqrt(abar) eps - sqrt(1 - abar) x0, x = sqrt(abar) x0 + sqrt(1 - abar) eps
    return abar.sqrt() * output + (1 - abar).sqrt() * x, abar.sqrt() * x - (1 - abar).sqrt() * output


def _ddim_cfg_sample(kind, unet, prediction_type, embeds, negative, seeds, shape) -> torch.Tensor:
    """DDIM (eta 0, 'leading' spacing, steps_offset 1, alpha_prev of step 0 for the last step) with CFG."""
    abar = _alphas_bar(kind)
    ratio = 1000 // STEPS
    timesteps = [i * ratio + 1 for i in reversed(range(STEPS))]
    x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]).double()
    for t in timesteps:
        t_batch = torch.full((len(seeds),), t)
        with torch.no_grad():
            uncond = _unet_output(kind, unet, x.float(), t_batch, negative.expand_as(embeds)).double()
            cond = _unet_output(kind, unet, x.float(), t_batch, embeds).double()
        output = uncond + GUIDANCE * (cond - uncond)
        a_t = abar[t]
        a_prev = abar[t - ratio] if t - ratio >= 0 else abar[0]  # set_alpha_to_one=False
        eps, x0 = _to_eps_and_x0(prediction_type, output, x, a_t)
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x.float()


def _target(prediction_type, x0, eps, abar):
    if prediction_type == "epsilon":
        return eps
    return abar.sqrt() * eps - (1 - abar).sqrt() * x0


def _sign(aaf: str, anchor: torch.Tensor) -> torch.Tensor:
    return {"sign": torch.sign(anchor), "indicator": (anchor > 0).double(), "none": torch.ones_like(anchor)}[aaf]


def _perturb(adapter, scale: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in adapter.named_trainable_parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


def _v_prediction_sd(tmp_path):
    from seppo_video.models.tiny import ensure_tiny

    root = tmp_path / "sd-v"
    shutil.copytree(ensure_tiny("sd"), root)
    file = root / "scheduler" / "scheduler_config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), "prediction_type": "v_prediction"}))
    return root


CASES = [(kind, aaf, False) for kind in BACKBONES for aaf in ("sign", "indicator", "none")]
CASES += [("animatediff", "sign", True), ("modelscope", "sign", True), ("sd", "sign", True), ("sd-v", "sign", False)]


@pytest.mark.parametrize("kind,aaf,checkpointing", CASES)
def test_compute_loss_equals_the_hand_computation(kind, aaf, checkpointing, tmp_path):
    backbone = "sd" if kind == "sd-v" else kind
    extra = [f"model.pretrained={_v_prediction_sd(tmp_path)}"] if kind == "sd-v" else []
    sft_weight = SFT_WEIGHT.get(aaf, 0.0)
    config = load_config(None, [f"seppo.sft_weight={sft_weight}",
        *BACKBONES[backbone], *extra, f"output_dir={tmp_path / 'run'}", "data.resolution=32", "data.batch_size=2",
        f"seppo.aaf={aaf}", "seppo.ref_strategy=fixed:1", "seppo.pool_dtype=bfloat16",
        f"seppo.ref_sample_steps={STEPS}", f"seppo.ref_guidance_scale={GUIDANCE}", "train.log_with=none",
        f"model.gradient_checkpointing={str(checkpointing).lower()}", "train.policy_dropout=false",
    ])
    prediction_type = "v_prediction" if kind == "sd-v" else "epsilon"
    run = recipe.setup(config)
    adapter = run.adapter
    _perturb(adapter, 0.02, seed=1)  # LoRA / zero-init temporal layers: make theta_0 do something
    run.pool.add(0, adapter.trainable_state())
    _perturb(adapter, 0.02, seed=2)
    run.pool.add(5, adapter.trainable_state())  # the reference: stored in bfloat16
    _perturb(adapter, 0.02, seed=3)  # the policy has moved on since
    batch = collate([run.dataset[0], run.dataset[1]])
    state = TrainerState(step=7, batches_seen=3)

    loss, stats, ref_index = recipe.compute_loss(run, batch, state)
    assert ref_index == 1
    loss.backward()
    grads = {n: p.grad.clone() for n, p in adapter.named_trainable_parameters()}
    run.optimizer.zero_grad(set_to_none=True)

    # ---- by hand
    reference = copy.deepcopy(adapter.unet).eval()
    snapshot = {name: tensor.float() for name, tensor in run.pool.get(1).items()}
    _, unexpected = reference.load_state_dict(snapshot, strict=False)
    assert not unexpected
    with torch.no_grad():
        x_w = adapter.encode_video(batch["pixels"]).float()
        embeds = adapter.encode_prompt(batch["prompt"]).float()
        negative = adapter.encode_prompt([""]).float()
    seeds = [recipe._derive_seed(config.seed, "ref", state.batches_seen, 0, i) for i in range(2)]
    x_ref = _ddim_cfg_sample(backbone, reference, prediction_type, embeds, negative, seeds, x_w.shape[1:])
    generator = recipe._batch_generator(config.seed, state.batches_seen, 0)
    t = torch.randint(0, 1000, (2,), generator=generator)
    eps = torch.randn(x_w.shape, generator=generator)
    abar = _alphas_bar(backbone)[t].view(-1, 1, 1, 1, 1)
    errors = {}
    for name, x0 in (("w", x_w.double()), ("ref", x_ref.double())):
        noisy = (abar.sqrt() * x0 + (1 - abar).sqrt() * eps).float()
        target = _target(prediction_type, x0, eps, abar).float()
        with torch.no_grad():
            errors[f"ref_{name}"] = (_unet_output(backbone, reference, noisy, t, embeds) - target).pow(2).mean((1, 2, 3, 4))
        errors[f"pol_{name}"] = (_unet_output(backbone, adapter.unet, noisy, t, embeds) - target).pow(2).mean((1, 2, 3, 4))
    d_w = errors["pol_w"] - errors["ref_w"]
    d_ref = errors["pol_ref"] - errors["ref_ref"]
    sign = _sign(aaf, (errors["ref_w"] - errors["pol_w"]).detach().double()).float()
    inside = -BETA_T * (d_w - sign * d_ref)
    by_hand = -F.logsigmoid(inside).mean() + sft_weight * errors["pol_w"].mean()

    torch.testing.assert_close(loss.detach(), by_hand.detach(), rtol=2e-3, atol=1e-5)
    assert stats["d_w"] == pytest.approx(d_w.mean().item(), rel=2e-3, abs=1e-7)
    assert stats["d_ref"] == pytest.approx(d_ref.mean().item(), rel=2e-3, abs=1e-7)
    assert stats["flip_rate"] == pytest.approx((sign <= 0).float().mean().item())
    assert stats["d_w_rel"] == pytest.approx((d_w / errors["ref_w"]).mean().item(), rel=2e-3, abs=1e-7)
    assert stats["d_ref_rel"] == pytest.approx((d_ref / errors["ref_ref"]).mean().item(), rel=2e-3, abs=1e-7)
    assert stats["err_w"] == pytest.approx(errors["pol_w"].mean().item(), rel=1e-4)
    assert stats["saturated"] == pytest.approx((torch.sigmoid(-inside) < 1e-3).float().mean().item())
    by_hand.backward()
    # The whole gradient, by relative norm: the float64 sampler here and the trainer's float32 one
    # give reference samples that differ in the last bits, which single tiny entries amplify.
    names = [name for name, _ in adapter.named_trainable_parameters()]
    ours = torch.cat([grads[name].flatten() for name in names])
    hand = torch.cat([param.grad.flatten() for _, param in adapter.named_trainable_parameters()])
    assert hand.norm() > 0
    assert (ours - hand).norm() / hand.norm() < 1e-3
