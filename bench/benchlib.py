"""What the benchmarks share: arguments, alternating timers, memory probes, models, results.

Every figure is a ratio of two things measured in the same process, with the
two measurements alternated and medians taken, so load from other processes
hits both sides alike; absolute times on a shared CPU mean little. On a CPU
the clock is CPU time on one thread (``--threads 1``): on a shared machine
wall time also counts waiting for a core, and with two threads every op
waits for whichever thread another process has preempted.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_MIXED_PRECISION = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}

# A mid-size AnimateDiff: SD-1.5's layout (cross-attention down/up blocks, two layers each, motion
# modules everywhere; a four-block VAE that downsamples by 8) at a width a 2-core CPU still steps
# through in seconds. The text encoder is the tiny one (cross-attention dimension 32).
MID_UNET = {
    "block_out_channels": (64, 128, 256),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
MID_MOTION = {
    "block_out_channels": MID_UNET["block_out_channels"],
    "motion_layers_per_block": 2,
    "motion_num_attention_heads": 8,
    "motion_norm_num_groups": 32,
    "motion_max_seq_length": 32,
    "use_motion_mid_block": False,
}
MID_VAE = {
    "block_out_channels": (32, 64, 128, 128),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
}
MID_VERSION = 2  # bump when MID_UNET / MID_MOTION / MID_VAE change: the cached copy is rebuilt
# The backbones the step and memory benchmarks take (their tiny models; mid and real are AnimateDiff).
KINDS = ["animatediff", "modelscope", "wan", "cogvideox", "ltx"]


# ---------------------------------------------------------------- arguments and results


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark takes, so each runs unchanged on a GPU in bf16."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--attention", default="sdpa", choices=["sdpa", "xformers"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per variant (after one warm-up)")
    parser.add_argument("--smoke", action="store_true", help="smallest sizes, two rounds: only checks it runs")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/<name>.json)")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if torch.device(args.device).type == "cpu":
        torch.set_num_threads(args.threads)
    return args


@dataclass
class Ratio:
    """One reported figure; ``target`` reads like ``"<= 1.10"`` (None: reported without a target)."""

    name: str
    value: float
    target: str | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        op, bound = self.target.split()
        return self.value <= float(bound) if op == "<=" else self.value >= float(bound)


def machine(device: str) -> dict[str, Any]:
    """Where the figures come from, with the load average: other processes share this machine."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_average_1m": os.getloadavg()[0],
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def report(name: str, args: argparse.Namespace, ratios: list[Ratio], details: dict[str, Any]) -> dict[str, Any]:
    """Print the ratios as a table and write them, with the details and the machine, as JSON."""
    result = {
        "benchmark": name,
        "machine": machine(args.device),
        "args": {key: str(value) for key, value in vars(args).items()},
        "ratios": [{**asdict(r), "met": r.met} for r in ratios],
        "details": details,
    }
    out = args.out or RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result["ratios"]))
    print(f"-> {out}")
    return result


def result_name(benchmark: str, model: str, kind: str) -> str:
    """``<benchmark>_<model>``, with the kind appended for any backbone but the default AnimateDiff."""
    return f"{benchmark}_{model}" + ("" if kind == "animatediff" else f"_{kind}")


def table(ratios: list[dict[str, Any]]) -> str:
    width = max([len(r["name"]) for r in ratios] + [10])
    verdict = {True: "met", False: "MISSED", None: ""}
    lines = [f"{'ratio':<{width}}  {'value':>8}  {'target':>8}  result  note"]
    for r in ratios:
        lines.append(
            f"{r['name']:<{width}}  {r['value']:8.3f}  {r['target'] or '-':>8}  {verdict[r['met']]:<6}  {r['note']}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- timing


def now(device: torch.device | str) -> float:
    """Wall seconds on an accelerator (after its queue drains); on a CPU, CPU seconds of this process
    and of its finished children (imageio's ffmpeg decodes in a child process)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def alternate(
    variants: dict[str, Callable[[], object]], repeats: int, device: torch.device | str = "cpu"
) -> dict[str, list[float]]:
    """Seconds per call of each variant (see ``now``), round-robin after one untimed warm-up round."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(repeats + 1):
        for name, fn in variants.items():
            start = now(device)
            fn()
            if round_:
                times[name].append(now(device) - start)
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of per-round ratios: a burst of outside load hits both sides of a round alike."""
    return statistics.median(a / max(b, 1e-9) for a, b in zip(numerator, denominator, strict=True))


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}


# ---------------------------------------------------------------- memory


def live_tensor_bytes(device_type: str = "cpu") -> int:
    """Bytes of every tensor storage alive on ``device_type`` (a storage shared by views counted once)."""
    gc.collect()
    storages: dict[int, int] = {}
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and obj.device.type == device_type:
            with contextlib.suppress(RuntimeError):  # tensors without storage (meta, functorch wrappers)
                storage = obj.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


class PeakMemory:
    """Peak memory since ``reset``: allocated accelerator memory, or the process's peak RSS on CPU.

    On Linux writing 5 to /proc/self/clear_refs resets the peak RSS (VmHWM) to the current RSS;
    glibc's ``malloc_trim`` first hands freed heap back, or it would hide the next peak.
    """

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)

    def reset(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            with contextlib.suppress(OSError, AttributeError):  # not glibc
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc/self/status")


@contextlib.contextmanager
def saved_for_backward(exclude: Iterable[torch.Tensor]) -> Iterator[list[int]]:
    """Counts the bytes autograd saves for backward, less ``exclude`` (the weights): the activations."""
    seen = {t.untyped_storage().data_ptr() for t in exclude}
    total = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total[0] += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield total


MiB = 2**20


# ---------------------------------------------------------------- models and runs


def mid_model() -> Path:
    """The mid-size random-init AnimateDiff in the tiny layout (``sd/`` + ``motion_adapter/``), built once."""
    from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel

    from seppo_video.atomic import atomic_directory
    from seppo_video.models.tiny import default_cache_dir, ensure_tiny

    path = default_cache_dir() / f"bench-mid-v{MID_VERSION}"
    if (path / "done").exists():
        return path
    tiny = ensure_tiny("animatediff")
    torch.manual_seed(0)
    with atomic_directory(path, overwrite=True) as tmp:
        shutil.copytree(tiny / "sd", tmp / "sd", ignore=shutil.ignore_patterns("unet", "vae"))
        for folder, cls, wider in (("unet", UNet2DConditionModel, MID_UNET), ("vae", AutoencoderKL, MID_VAE)):
            cls.from_config(cls.load_config(tiny / "sd" / folder), **wider).save_pretrained(tmp / "sd" / folder)
        MotionAdapter(**MID_MOTION).save_pretrained(tmp / "motion_adapter")
        (tmp / "done").write_text("")
    return path


def real_model() -> Path:
    """The real-shape random-init AnimateDiff v1-5-2 (SD-1.5 + its published motion adapter), built once.

    Building it takes about a minute and 5.8 GB of disk (``seppo_video.models.real``); only a
    benchmark run with the ``real`` model asks for it.
    """
    from seppo_video.models.real import ensure_real_shape

    return ensure_real_shape("animatediff", "v1-5-2")


# Data settings the tiny video transformers' setup checks accept (causal VAEs: 1 + 4k or 1 + 8k frames).
_VIDEO_TRANSFORMER_CLIPS = {
    "wan": ["data.num_frames=5", "data.resolution=32"],
    "cogvideox": ["data.num_frames=5", "data.resolution=32"],
    "ltx": ["data.num_frames=9", "data.resolution=64"],
}


def model_overrides(model: str, kind: str = "animatediff") -> list[str]:
    """Config overrides selecting the ``tiny`` model of ``kind``, or the ``mid`` or ``real`` AnimateDiff."""
    if model == "tiny":
        # The benchmarks feed latents directly: the data settings only have to pass the setup's checks
        # (and fit the demo clips it loads).
        clips = _VIDEO_TRANSFORMER_CLIPS.get(kind, [])
        return [f"model.kind={kind}", "model.pretrained=tiny", *clips]
    if model not in ("mid", "real") or kind != "animatediff":
        raise ValueError(f"no {model} {kind} model (mid and real exist for animatediff only)")
    root = mid_model() if model == "mid" else real_model()
    return [
        "model.kind=animatediff",
        f"model.pretrained={root / 'sd'}",
        f"model.motion_adapter={root / 'motion_adapter'}",
    ]


def make_run(args: argparse.Namespace, overrides: list[str]):
    """The trainer's own ``setup`` for a config of the defaults plus ``overrides``, on ``args.device``."""
    from seppo_video.config import load_config
    from seppo_video.train import setup

    if torch.device(args.device).type == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"  # accelerate would pick a GPU where there is one
    out = tempfile.mkdtemp(prefix="seppo-bench-")  # the run's output folder (a disk pool writes there)
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    config = load_config(
        None,
        [
            f"output_dir={out}",
            "train.log_with=none",
            f"train.mixed_precision='{_MIXED_PRECISION[args.dtype]}'",  # quoted: YAML reads a bare no as false
            f"model.attention={args.attention}",
            *overrides,
        ],
    )
    return setup(config)


def synthetic_batch(run, frames: int, latent_size: int, batch_size: int) -> dict[str, Any]:
    """A batch as the latent cache gives it: random winner latents (timing does not depend on content)."""
    device, adapter = run.accelerator.device, run.adapter
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(batch_size, adapter.latent_channels, frames, latent_size, latent_size, generator=generator)
    prompts = [f"a flower blooming, time-lapse {i}" for i in range(batch_size)]
    return {"latents": latents.to(device), "prompt_embeds": adapter.encode_prompt(prompts).float(), "prompt": prompts}


def load_model(args: argparse.Namespace, model: str, kind: str = "animatediff", trainable: str = "motion"):
    """The adapter of a ``tiny``, ``mid`` or ``real`` model, on ``args.device`` in ``args.dtype`` (inference use)."""
    from seppo_video.config import load_config
    from seppo_video.models.adapters import load_adapter

    overrides = [*model_overrides(model, kind), f"model.attention={args.attention}", f"model.trainable={trainable}"]
    adapter = load_adapter(load_config(None, overrides).model)
    adapter.unet.to(args.device, DTYPES[args.dtype])
    return adapter.to(args.device, DTYPES[args.dtype])
