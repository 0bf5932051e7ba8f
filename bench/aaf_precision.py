"""Precision of the AAF sign for a trained run, against every reference in its pool.

    python bench/aaf_precision.py --run runs/tiny [--checkpoint latest] [--samples 4] [--draws 32]

For each snapshot in the checkpoint's reference pool, prints the mean anchor
``a = e_ref(x_w) - e_theta(x_w)`` over winners and draws (> 0: the policy fits
the winners better) and the AAF precision: how often one (t, eps) draw gives
the sign of the anchor's expectation (ALGORITHM.md section 4).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import DDPMScheduler

from seppo_video.checkpoint import find_checkpoint, read_trainable
from seppo_video.config import load_config
from seppo_video.data import build_dataset, collate, model_id_for
from seppo_video.models.adapters import load_adapter
from seppo_video.seppo.diagnostics import anchor_draws, sign_agreement
from seppo_video.seppo.pool import ReferencePool
from seppo_video.seppo.reference import SwappedModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--checkpoint", default="latest")
    parser.add_argument("--samples", type=int, default=4, help="winners from the run's data")
    parser.add_argument("--draws", type=int, default=32, help="(t, eps) draws per winner")
    args = parser.parse_args()
    config = load_config(args.run / "config.yaml")
    checkpoint = find_checkpoint(args.run, args.checkpoint)
    adapter = load_adapter(config.model)
    adapter.unet.load_state_dict(read_trainable(checkpoint), strict=False)
    pool = ReferencePool(config.seppo.pool_size)
    pool.load(checkpoint / "pool")
    dataset = build_dataset(config.data, config.model.kind, pairs=False, model_id=model_id_for(config.model))
    batch = collate([dataset[i] for i in range(min(args.samples, len(dataset)))])
    with torch.no_grad():
        x_w = adapter.encode_video(batch["pixels"]) if "pixels" in batch else batch["latents"]
        embeds = adapter.encode_prompt(batch["prompt"]) if "pixels" in batch else batch["prompt_embeds"]
    scheduler = DDPMScheduler.from_config(adapter.scheduler_config)

    def predict(noisy, t, unet):
        return adapter.predict_noise(noisy, t, embeds, unet=unet)

    print(f"run={args.run} checkpoint={checkpoint.name} winners={x_w.shape[0]} draws={args.draws}")
    print("ref_step  mean_anchor   aaf_precision")
    for index, step in enumerate(pool.steps):
        reference = SwappedModule(adapter.unet, pool.get(index))
        anchors = anchor_draws(predict, adapter.unet, reference, x_w, scheduler, args.draws, seed=index)
        print(f"{step:8d}  {anchors.mean().item():+.6f}   {sign_agreement(anchors).mean().item():.3f}")


if __name__ == "__main__":
    main()
