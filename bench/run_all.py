"""Every benchmark, each in a fresh process, then one table of every ratio beside its target.

    python bench/run_all.py [--device cuda --dtype bfloat16 --attention sdpa|xformers] [--only step memory ...]

Each benchmark writes bench/results/<name>.json (ratios, details, machine); this script adds
bench/results/run_all.json with every ratio and the total wall time. About 15 minutes on a
2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import benchlib

HERE = Path(__file__).resolve().parent
# (name, script, arguments): the sizes a 2-core CPU gets through in the time budget.
BENCHMARKS = [
    ("step_tiny", "bench_step.py", ["--model", "tiny"]),
    ("step_mid", "bench_step.py", ["--model", "mid", "--latent", "8", "--repeats", "5"]),
    ("step_tiny_wan", "bench_step.py", ["--model", "tiny", "--kind", "wan", "--trainable", "lora", "--repeats", "15"]),
    ("step_tiny_cogvideox", "bench_step.py",
     ["--model", "tiny", "--kind", "cogvideox", "--trainable", "lora", "--repeats", "15"]),
    ("step_tiny_ltx", "bench_step.py", ["--model", "tiny", "--kind", "ltx", "--trainable", "lora", "--repeats", "15"]),
    ("memory_mid", "bench_memory.py", ["--model", "mid"]),
    ("memory_tiny_wan", "bench_memory.py", ["--model", "tiny", "--kind", "wan", "--trainables", "lora"]),
    ("memory_tiny_wan_bfloat16_pool", "bench_memory.py",
     ["--model", "tiny", "--kind", "wan", "--trainables", "lora", "--pool-dtype", "bfloat16"]),
    ("memory_tiny_cogvideox", "bench_memory.py", ["--model", "tiny", "--kind", "cogvideox", "--trainables", "lora"]),
    ("memory_tiny_ltx", "bench_memory.py", ["--model", "tiny", "--kind", "ltx", "--trainables", "lora"]),
    ("sampler_tiny_animatediff", "bench_sampler.py", ["--model", "tiny", "--repeats", "11"]),
    ("sampler_tiny_modelscope", "bench_sampler.py", ["--model", "tiny", "--kind", "modelscope", "--repeats", "11"]),
    ("sampler_mid_animatediff", "bench_sampler.py", ["--model", "mid", "--latent", "8", "--repeats", "5"]),
    ("data", "bench_data.py", []),
    ("scaling_tiny", "bench_scaling.py", ["--models", "tiny", "--repeats", "3"]),
    ("scaling_mid", "bench_scaling.py", ["--models", "mid", "--repeats", "3"]),
    ("reference_animatediff", "bench_reference.py", ["--size", "16"]),
    ("reference_modelscope", "bench_reference.py", ["--kind", "modelscope", "--size", "16"]),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=list(benchlib.DTYPES))
    parser.add_argument("--attention", default="sdpa", choices=["sdpa", "xformers"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="every benchmark at its smallest size (tests)")
    parser.add_argument("--only", nargs="+", choices=[name for name, _, _ in BENCHMARKS], default=None)
    parser.add_argument("--results", type=Path, default=benchlib.RESULTS)
    args = parser.parse_args(argv)
    common = [f"--device={args.device}", f"--dtype={args.dtype}", f"--attention={args.attention}"]
    common += [f"--threads={args.threads}", *(["--smoke"] if args.smoke else [])]
    started, ratios, timings = time.perf_counter(), [], {}
    for name, script, extra in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        out = args.results / f"{name}.json"
        print(f"== {name}: {script} {' '.join(extra)}", flush=True)
        begun = time.perf_counter()
        subprocess.run([sys.executable, str(HERE / script), *common, *extra, "--out", str(out)], check=True)
        timings[name] = time.perf_counter() - begun
        ratios += json.loads(out.read_text())["ratios"]
    wall = time.perf_counter() - started
    print(f"\n{benchlib.table(ratios)}\n\ntotal wall time {wall / 60:.1f} min")
    summary = {
        "machine": benchlib.machine(args.device) | {"torch_threads": args.threads},  # what the benchmarks ran with
        "args": vars(args) | {"results": str(args.results)},
        "wall_s": wall,
        "benchmark_wall_s": timings,
        "ratios": ratios,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "run_all.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
