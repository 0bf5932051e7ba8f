"""Reference-model cost: ours vs the naive implementation, as ratios measured in one run.

    python bench/bench_reference.py [--kind animatediff|modelscope|sd] [--frames 8] [--size 32] [--repeats 7]

For the chosen tiny backbone (or a real one with --pretrained/--motion-adapter):
- pool memory: K full-UNet copies (naive) vs K trainable-only snapshots (ours);
- reference forward: a second deep-copied UNet (naive) vs the policy module with
  snapshot tensors swapped in (ours), time ratio;
- classifier-free guidance: two forwards (cond, uncond) vs one batched forward;
- reference sample hand-off: VAE decode + re-encode (naive) vs staying in latent space.
"""

from __future__ import annotations

import copy
from typing import Any

import benchlib
import torch

from seppo_video.config import ModelConfig
from seppo_video.models.adapters import load_adapter
from seppo_video.seppo.pool import ReferencePool
from seppo_video.seppo.reference import SwappedModule


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = benchlib.parser(__doc__)
    parser.add_argument("--kind", default="animatediff", choices=["animatediff", "modelscope", "sd"])
    parser.add_argument("--pretrained", default="tiny")
    parser.add_argument("--motion-adapter", default=None)
    parser.add_argument("--trainable", default=None, help="default: motion (video) / lora (sd)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32, help="latent height and width")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--snapshots", type=int, default=7, help="K, the paper's pool size")
    args = benchlib.parse(parser, argv)
    if args.smoke:
        args.frames, args.size, args.repeats = 2, 8, 1
    frames = 1 if args.kind == "sd" else args.frames
    trainable = args.trainable or ("lora" if args.kind == "sd" else "motion")
    torch.manual_seed(0)
    adapter = load_adapter(
        ModelConfig(
            kind=args.kind,
            pretrained=args.pretrained,
            motion_adapter=args.motion_adapter,
            trainable=trainable,
            attention=args.attention,
        )
    )
    dtype = benchlib.DTYPES[args.dtype]
    adapter.unet.to(args.device, dtype).eval()
    adapter.to(args.device, dtype)
    unet = adapter.unet

    full_bytes = sum(t.numel() * t.element_size() for t in unet.state_dict().values())
    pool = ReferencePool(max_size=args.snapshots + 1)
    for step in range(args.snapshots):
        pool.add(step, adapter.trainable_state())
    naive_pool = args.snapshots * full_bytes + full_bytes  # K checkpoints + a resident second UNet

    latents = torch.randn(
        args.batch, adapter.latent_channels, frames, args.size, args.size, device=args.device, dtype=dtype
    )
    timesteps = torch.randint(0, 1000, (args.batch,), device=args.device)
    embeds = adapter.encode_prompt(["a flower blooming"] * args.batch)
    negative = adapter.encode_prompt([""] * args.batch)
    second_unet = copy.deepcopy(unet)
    swapped = SwappedModule(unet, pool.get(0))
    both = (torch.cat([latents, latents]), torch.cat([timesteps, timesteps]), torch.cat([negative, embeds]))
    with torch.no_grad():
        times = benchlib.alternate(
            {
                "second_unet": lambda: adapter.predict(latents, timesteps, embeds, unet=second_unet),
                "swapped": lambda: adapter.predict(latents, timesteps, embeds, unet=swapped),
                "cfg_two": lambda: (
                    adapter.predict(latents, timesteps, negative),
                    adapter.predict(latents, timesteps, embeds),
                ),
                "cfg_one": lambda: adapter.predict(*both),
                "decode_encode": lambda: adapter.encode_video(adapter.decode_latents(latents)),
                "latent": lambda: latents.clone(),
            },
            args.repeats,
            args.device,
        )
    label = f"tiny {args.kind} {trainable}" if args.pretrained == "tiny" else f"{args.kind} {trainable}"
    ratios = [
        benchlib.Ratio(
            f"pool bytes, naive (K full UNets + 2nd UNet) / ours, K={args.snapshots} ({label})",
            naive_pool / pool.nbytes(),
        ),
        benchlib.Ratio(
            f"ref forward time, second UNet / swapped tensors ({label})",
            benchlib.paired_ratio(times["second_unet"], times["swapped"]),
        ),
        benchlib.Ratio(
            f"CFG time, two forwards / one batched forward ({label})",
            benchlib.paired_ratio(times["cfg_two"], times["cfg_one"]),
        ),
        benchlib.Ratio(
            f"x_ref hand-off time, VAE decode+encode / latent copy ({label})",
            benchlib.paired_ratio(times["decode_encode"], times["latent"]),
        ),
    ]
    details = {"median_s": benchlib.medians(times), "pool_bytes": pool.nbytes(), "naive_pool_bytes": naive_pool}
    return benchlib.report(f"reference_{args.kind}", args, ratios, details)


if __name__ == "__main__":
    main()
