"""Precision of the AAF sign for a trained run, against every reference in its pool.

    python bench/aaf_precision.py --run runs/tiny [--checkpoint latest] [--samples 4] [--draws 32]

For each earlier snapshot in the checkpoint's reference pool, prints the mean anchor
``a = e_ref(x_w) - e_theta(x_w)`` over winners and draws (> 0: the policy fits
the winners better) and the AAF precision: how often one (t, eps) draw gives
the sign of the anchor's expectation (ALGORITHM.md section 4).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from seppo_video.checkpoint import checkpoint_step, find_checkpoint, read_trainable
from seppo_video.config import load_config
from seppo_video.data import build_dataset, collate
from seppo_video.models.adapters import load_adapter
from seppo_video.seppo.diagnostics import pool_precision
from seppo_video.seppo.pool import ReferencePool


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
    dataset = build_dataset(config.data, config.model, pairs=False)
    batch = collate([dataset[i] for i in range(min(args.samples, len(dataset)))])
    with torch.no_grad():
        x_w = adapter.encode_video(batch["pixels"]) if "pixels" in batch else batch["latents"]
        embeds = adapter.encode_prompt(batch["prompt"]) if "pixels" in batch else batch["prompt_embeds"]
    print(f"run={args.run} checkpoint={checkpoint.name} winners={x_w.shape[0]} draws={args.draws}")
    print("ref_step  mean_anchor   aaf_precision")
    for row in pool_precision(adapter, pool, x_w, embeds, args.draws, policy_step=checkpoint_step(checkpoint)):
        print(f"{row['ref_step']:8d}  {row['mean_anchor']:+.6f}   {row['precision']:.3f}")


if __name__ == "__main__":
    main()
