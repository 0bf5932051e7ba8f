"""Reference-model cost: ours vs the naive implementation, as ratios measured in one run.

    python bench/bench_reference.py [--kind animatediff|modelscope|sd] [--frames 8] [--size 32] [--repeats 7]

Prints, for the chosen tiny backbone (or a real one with --pretrained/--motion-adapter):
- pool memory: K full-UNet copies (naive) vs K trainable-only snapshots (ours);
- reference forward: a second deep-copied UNet (naive) vs the policy module with
  snapshot tensors swapped in (ours), time ratio;
- classifier-free guidance: two forwards (cond, uncond) vs one batched forward;
- reference sample hand-off: VAE decode + re-encode (naive) vs staying in latent space.
Timings alternate the two variants and take medians, so machine noise hits both;
absolute times are not meaningful here, ratios are.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from seppo_video.config import ModelConfig
from seppo_video.models.adapters import load_adapter
from seppo_video.seppo.pool import ReferencePool
from seppo_video.seppo.reference import SwappedModule


def _median_pair(first, second, repeats: int) -> tuple[float, float]:
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="animatediff", choices=["animatediff", "modelscope", "sd"])
    parser.add_argument("--pretrained", default="tiny")
    parser.add_argument("--motion-adapter", default=None)
    parser.add_argument("--trainable", default=None, help="default: motion (video) / lora (sd)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32, help="latent height and width")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--snapshots", type=int, default=7, help="K, the paper's pool size")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    frames = 1 if args.kind == "sd" else args.frames
    trainable = args.trainable or ("lora" if args.kind == "sd" else "motion")
    torch.manual_seed(0)
    adapter = load_adapter(ModelConfig(kind=args.kind, pretrained=args.pretrained,
                                       motion_adapter=args.motion_adapter, trainable=trainable))
    unet = adapter.unet.eval()

    full_bytes = sum(t.numel() * t.element_size() for t in unet.state_dict().values())
    pool = ReferencePool(max_size=args.snapshots + 1)
    for step in range(args.snapshots):
        pool.add(step, adapter.trainable_state())
    naive_pool = args.snapshots * full_bytes + full_bytes  # K checkpoints + a resident second UNet
    print(f"backbone={args.kind} trainable={trainable} K={args.snapshots}")
    print(f"pool memory   naive/ours = {naive_pool / pool.nbytes():7.2f}x  "
          f"({naive_pool / 2**20:.1f} MiB vs {pool.nbytes() / 2**20:.1f} MiB)")

    latents = torch.randn(args.batch, adapter.latent_channels, frames, args.size, args.size)
    timesteps = torch.randint(0, 1000, (args.batch,))
    embeds = adapter.encode_prompt(["a flower blooming"] * args.batch)
    second_unet = copy.deepcopy(unet)
    swapped = SwappedModule(unet, pool.get(0))
    with torch.no_grad():
        naive_t, ours_t = _median_pair(
            lambda: adapter.predict_noise(latents, timesteps, embeds, unet=second_unet),
            lambda: adapter.predict_noise(latents, timesteps, embeds, unet=swapped),
            args.repeats,
        )
        print(f"ref forward   naive/ours = {naive_t / ours_t:7.2f}x  (second UNet vs swapped tensors)")

        negative = adapter.encode_prompt([""] * args.batch)
        both = torch.cat([latents, latents])
        both_t = torch.cat([timesteps, timesteps])
        both_e = torch.cat([negative, embeds])
        two_t, one_t = _median_pair(
            lambda: (adapter.predict_noise(latents, timesteps, negative), adapter.predict_noise(latents, timesteps, embeds)),
            lambda: adapter.predict_noise(both, both_t, both_e),
            args.repeats,
        )
        print(f"CFG           two/one    = {two_t / one_t:7.2f}x  (separate cond/uncond vs one batched forward)")

        round_trip, stay = _median_pair(
            lambda: adapter.encode_video(adapter.decode_latents(latents)),
            lambda: latents.clone(),
            args.repeats,
        )
        print(f"x_ref hand-off decode+encode / latent = {round_trip / max(stay, 1e-9):7.0f}x")


if __name__ == "__main__":
    main()
