"""The scale of SePPO's inside term ``d_w - s * d_ref`` per backbone, to choose ``seppo.beta``.

    python bench/beta_scale.py [--steps 10] [--batches 8]

Trains each tiny backbone with SePPO for ``--steps`` steps (its shipped tiny config), then,
on ``--batches`` fresh batches, computes the per-pair inside term exactly as the trainer does
against theta_0 (the reference every pool holds; the newest snapshot can be the policy itself,
whose terms are 0): reference sample, one shared (t, eps) per pair, sign AAF. It prints
its spread: the standard deviation, the median of its magnitude, ``beta * T`` times that median
at the configured beta (the log-sigmoid's argument: near 0 the loss is linear, past ~4 it
saturates), and the beta at which that median argument would be 1.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import seppo_video.train as recipe
from seppo_video.checkpoint import TrainerState
from seppo_video.config import load_config
from seppo_video.data import collate
from seppo_video.seppo.loss import aaf_sign, per_sample_error
from seppo_video.seppo.noise import noise_pairs

REPO = Path(__file__).resolve().parents[1]
# (config file, overrides): AnimateDiff with LoRA too, so that the backbone / target is compared at
# the same kind of trainable part.
CONFIGS = {
    "animatediff (motion)": ("configs/tiny_animatediff.yaml", []),
    "animatediff (lora)": ("configs/tiny_animatediff.yaml", ["model.trainable=lora"]),
    "wan (lora)": ("configs/tiny_wan.yaml", []),
    "cogvideox (lora)": ("configs/tiny_cogvideox.yaml", []),
    "ltx (lora)": ("configs/tiny_ltx.yaml", []),
}


@torch.no_grad()
def inside_terms(run: recipe.Run, batches: int) -> torch.Tensor:
    """``d_w - s * d_ref`` for every pair of ``batches`` batches, as ``compute_loss`` forms it."""
    terms, size = [], run.config.data.batch_size
    state = TrainerState(step=run.config.train.max_steps, batches_seen=10_000)  # unseen noise / seeds
    for b in range(batches):
        batch = collate([run.dataset[(b * size + i) % len(run.dataset)] for i in range(size)])
        x_w, embeds = recipe.winner_latents(run, batch)
        reference = recipe.reference_module(run, 0)  # theta_0
        x_other = recipe.second_samples(run, batch, embeds, reference, state, x_w)
        generator = recipe._batch_generator(run.config.seed, state.batches_seen, 0)
        pairs = noise_pairs(run.noise, x_w, x_other, generator)
        embeds2 = torch.cat([embeds, embeds])
        policy = per_sample_error(run.adapter.predict(pairs.noisy, pairs.timesteps, embeds2), pairs.target)
        ref = recipe.reference_errors(run.adapter, reference, pairs, embeds2, None, None)
        d_w, d_ref = policy[:size] - ref[:size], policy[size:] - ref[size:]
        terms.append(d_w - aaf_sign(policy[:size], ref[:size], "sign") * d_ref)
        state.batches_seen += 1
    return torch.cat(terms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    print(f"{'backbone':22} {'pairs':>5} {'mean':>10} {'std':>10} {'median |x|':>11} {'beta*T*med':>10} "
          f"{'beta for 1':>10}")
    for name, (path, overrides) in CONFIGS.items():
        with tempfile.TemporaryDirectory() as out:
            config = load_config(REPO / path, [*overrides, f"output_dir={out}", f"train.max_steps={args.steps}",
                                               "sample.prompts=[]", "train.log_with=none"])
            run = recipe.train(config)
            run.adapter.unet.eval()
            terms = inside_terms(run, args.batches)
        beta_t = config.seppo.beta * config.seppo.num_train_timesteps
        median = terms.abs().median().item()
        print(f"{name:22} {terms.numel():5d} {terms.mean().item():10.3g} {terms.std().item():10.3g} {median:11.3g} "
              f"{beta_t * median:10.3g} "
              f"{1 / (median * config.seppo.num_train_timesteps):10.3g}")


if __name__ == "__main__":
    main()
