"""What the video transformers' tests share (tests/test_wan.py, tests/test_cogvideox.py).

A pool whose theta_0 and reference both differ from the policy, the trainer's loss and gradient on
one batch, the reference rebuilt as a deep copy with its snapshot loaded, the sign-AAF loss formed
by hand from per-sample errors the test computes itself, a resumed run against a straight one, and
an export loaded by the backbone's own pipeline class. Nothing here computes an error, a target or
a prediction: each test does that from its backbone's formulas and calls.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import seppo_video.train as recipe
from seppo_video.checkpoint import TrainerState
from seppo_video.config import load_config
from seppo_video.data import collate
from seppo_video.models.adapters import load_adapter
from seppo_video.models.tiny import ensure_tiny

BETA_T = 2.5 * 1000  # the default beta times T


def hand_test_run(out: Path, overrides: list[str], checkpointing: bool, steps: int, guidance: float) -> recipe.Run:
    """The trainer set up for a by-hand test: reference = pool entry 1, ``steps`` reference sampling
    steps at ``guidance``, gradient checkpointing on or off."""
    return recipe.setup(load_config(None, [
        *overrides, f"output_dir={out / 'run'}", f"model.gradient_checkpointing={str(checkpointing).lower()}",
        "seppo.ref_strategy=fixed:1", f"seppo.ref_sample_steps={steps}", f"seppo.ref_guidance_scale={guidance}",
    ]))


def perturb(adapter, scale: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in adapter.named_trainable_parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


@dataclass
class TrainerLoss:
    """``compute_loss`` on the first two items at step 7 (reference: pool entry 1), and its gradient."""

    loss: torch.Tensor
    stats: dict[str, float]
    gradient: torch.Tensor  # every trainable parameter's, flattened in ``named_trainable_parameters`` order
    batch: dict
    state: TrainerState


def trainer_loss(run: recipe.Run, scale: float = 0.01) -> TrainerLoss:
    adapter = run.adapter
    perturb(adapter, scale, seed=1)  # LoRA B starts at zero: make theta_0 differ from the base
    run.pool.add(0, adapter.trainable_state())
    perturb(adapter, scale, seed=2)
    run.pool.add(5, adapter.trainable_state())  # the reference
    perturb(adapter, scale, seed=3)  # the policy has moved on since
    batch = collate([run.dataset[0], run.dataset[1]])
    state = TrainerState(step=7, batches_seen=3)
    loss, stats, ref_index = recipe.compute_loss(run, batch, state)
    assert ref_index == 1
    loss.backward()
    gradient = torch.cat([param.grad.flatten().clone() for _, param in adapter.named_trainable_parameters()])
    run.optimizer.zero_grad(set_to_none=True)
    return TrainerLoss(loss.detach(), stats, gradient, batch, state)


def reference_copy(run: recipe.Run) -> torch.nn.Module:
    """The reference as a second model: a deep copy of the policy with pool entry 1 loaded."""
    reference = copy.deepcopy(run.adapter.unet).eval()
    _, unexpected = reference.load_state_dict({k: v.float() for k, v in run.pool.get(1).items()}, strict=False)
    assert not unexpected
    return reference


@torch.no_grad()
def encoded_batch(run: recipe.Run, ours: TrainerLoss) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's winner latents (``1 + (F - 1) / 4`` latent frames), prompt states and the empty prompt's."""
    adapter = run.adapter
    x_w = adapter.encode_video(ours.batch["pixels"]).float()
    assert x_w.shape[2] == 1 + (run.config.data.num_frames - 1) // 4
    return x_w, adapter.encode_prompt(ours.batch["prompt"]).float(), adapter.encode_prompt([""]).float()


def reference_seeds(run: recipe.Run, ours: TrainerLoss) -> list[int]:
    return [recipe._derive_seed(run.config.seed, "ref", ours.state.batches_seen, 0, i) for i in range(2)]


def noise_generator(run: recipe.Run, ours: TrainerLoss) -> torch.Generator:
    """The generator the trainer drew this batch's (t, eps) from."""
    return recipe._batch_generator(run.config.seed, ours.state.batches_seen, 0)


def hand_errors(output: Callable, run: recipe.Run, reference: torch.nn.Module, x_w: torch.Tensor, x_ref: torch.Tensor,
                noised: Callable) -> dict[str, torch.Tensor]:
    """Per-sample squared errors (mean over C, F, H, W) of the reference (no gradient) and the policy on the
    winners ``w`` and the reference samples ``ref``: ``noised(x0)`` is the test's ``(x_t, target)`` for
    float64 ``x0``, ``output(model, x_t)`` its call of the model."""
    errors = {}
    for name, x0 in (("w", x_w.double()), ("ref", x_ref.double())):
        noisy, target = (tensor.float() for tensor in noised(x0))
        with torch.no_grad():
            errors[f"ref_{name}"] = (output(reference, noisy) - target).pow(2).mean((1, 2, 3, 4))
        errors[f"pol_{name}"] = (output(run.adapter.unet, noisy) - target).pow(2).mean((1, 2, 3, 4))
    return errors


def assert_sign_aaf_loss_matches(run: recipe.Run, ours: TrainerLoss, errors: dict[str, torch.Tensor]) -> None:
    """``errors`` (``pol_w``, ``ref_w``, ``pol_ref``, ``ref_ref``: per-sample errors computed by hand, the
    policy's with gradient) give the sign-AAF SePPO loss; it must equal the trainer's, and so must its
    statistics and its gradient."""
    d_w = errors["pol_w"] - errors["ref_w"]
    d_ref = errors["pol_ref"] - errors["ref_ref"]
    sign = torch.sign((errors["ref_w"] - errors["pol_w"]).detach())
    by_hand = -F.logsigmoid(-BETA_T * (d_w - sign * d_ref)).mean()
    torch.testing.assert_close(ours.loss, by_hand.detach(), rtol=2e-3, atol=1e-5)
    assert ours.stats["d_w"] == pytest.approx(d_w.mean().item(), rel=2e-3, abs=1e-7)
    assert ours.stats["d_ref"] == pytest.approx(d_ref.mean().item(), rel=2e-3, abs=1e-7)
    assert ours.stats["flip_rate"] == pytest.approx((sign <= 0).float().mean().item())
    by_hand.backward()
    hand = torch.cat([param.grad.flatten() for _, param in run.adapter.named_trainable_parameters()])
    assert hand.norm() > 0
    assert (ours.gradient - hand).norm() / hand.norm() < 1e-3


def assert_resume_reproduces_a_straight_run(out: Path, overrides: list[str]) -> list[dict]:
    """Four steps straight, and two then two more resumed from the checkpoint: equal records.
    Returns the straight run's records."""
    common = [*overrides, "seppo.ref_every=2", "train.checkpoint_every=2", "train.lr_scheduler=constant",
              "sample.prompts=[]"]
    recipe.train(load_config(None, [*common, f"output_dir={out / 'straight'}", "train.max_steps=4"]))
    recipe.train(load_config(None, [*common, f"output_dir={out / 'split'}", "train.max_steps=2"]))
    recipe.train(load_config(None, [*common, f"output_dir={out / 'split'}", "train.max_steps=4"]), resume="latest")
    straight, split = (
        [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
        for name in ("straight", "split")
    )
    assert [r["step"] for r in split] == [1, 2, 3, 4]
    for a, b in zip(straight, split):
        for key in ("loss", "d_w", "d_ref", "flip_rate", "ref_index"):
            assert a[key] == b[key], (a["step"], key, a[key], b[key])
    assert any(r["d_w"] != 0 for r in straight)  # the policy moved: equal records are not trivially equal
    return straight


def exported_pipeline(out: Path, overrides: list[str], trainable: str, pipeline_class, transformer_class,
                      scheduler_class):
    """Two SFT steps at a high learning rate, exported, and the export loaded with ``pipeline_class``
    on the tiny base: its ``transformer/`` folder (full) or ``pipe.load_lora_weights`` (LoRA), and its
    ``scheduler/``. Returns the run and the pipeline."""
    config = load_config(None, [*overrides, f"output_dir={out}", f"model.trainable={trainable}", "seppo.method=sft",
                                "train.max_steps=2", "train.learning_rate=0.01", "sample.prompts=[]"])
    run = recipe.train(config)
    export = out / "export"
    info = json.loads((export / "seppo_export.json").read_text())
    assert info["component"] == ("transformer" if trainable == "full" else "lora")
    extra = {"transformer": transformer_class.from_pretrained(export / "transformer")} if trainable == "full" else {}
    scheduler = scheduler_class.from_pretrained(export / "scheduler")
    pipe = pipeline_class.from_pretrained(ensure_tiny(config.model.kind), scheduler=scheduler, **extra)
    if trainable == "lora":
        pipe.load_lora_weights(export / "lora")
    return run, pipe


def assert_export_predicts_like_the_policy(run: recipe.Run, exported: Callable, latents: torch.Tensor,
                                           timestep: torch.Tensor) -> None:
    """``exported(latents, timestep, embeds)`` (the loaded pipeline's transformer, called by the test)
    gives the trained policy's output, which differs from the untrained base's."""
    embeds = run.adapter.encode_prompt(["a candle melting"])
    with torch.no_grad():
        trained = run.adapter.predict(latents, timestep, embeds)
        loaded = exported(latents, timestep, embeds)
        base = load_adapter(run.config.model).predict(latents, timestep, embeds)
    torch.testing.assert_close(loaded, trained, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(base, trained, atol=1e-4)  # training moved it, so the match means something
