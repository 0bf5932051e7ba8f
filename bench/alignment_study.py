"""Does SePPO beat its baselines? A controlled study with tuning, seeds and confidence intervals.

    python bench/alignment_study.py --config configs/study_cpu.yaml [key=value ...]

A synthetic time-lapse world in the tiny ModelScope model's latent space with a reward written
from its definition (seppo_video/data/world.py); a base model pretrained on good and defective
clips (`seppo-video make-world-base`); each method tuned on validation prompts with the same
number of runs, then aligned on winners only (DPO on good/defective pairs) for every seed
through the real training loop; held-out rewards and good-clip shares with bootstrap intervals,
paired differences with SePPO and with the base, validation curves, the AAF flip rate and sign
precision. Writes results.md, results.json and four PNG plots to the config's report_dir.
Finished runs are kept under output_dir, so an interrupted study resumes; ``parallel_runs`` of
them train at once, each in its own process.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from seppo_video.atomic import atomic_write_json, atomic_write_text
from seppo_video.config import ConfigError
from seppo_video.study.report import markdown, plot, summarise_study
from seppo_video.study.runner import load_study_config, run_study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the study config")
    args = parser.parse_args(argv)
    try:
        study = load_study_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    scores = run_study(study)
    wall = time.perf_counter() - started
    summary = summarise_study(scores, study.eval.confidence, study.eval.n_boot)
    report_dir = Path(study.report_dir)
    command = shlex.join(["python", "bench/alignment_study.py", "--config", str(args.config), *args.overrides])
    header = (
        f"# Alignment study: {args.config.name}\n\n"
        f"`{command}` — {len(study.seeds)} seeds, {len(scores['prompts']['validation'])} validation and "
        f"{len(scores['prompts']['held_out'])} held-out prompts, {study.align_steps} alignment steps per run; "
        f"{wall / 60:.1f} min wall on {_machine()}, "
        f"{study.parallel_runs} run(s) at a time (finished runs reused from earlier invocations are not re-timed)."
    )
    atomic_write_text(report_dir / "results.md", markdown(summary, header))
    atomic_write_json(report_dir / "results.json", {"command": command, "config": str(args.config),
                                                    "wall_time_s": wall, "summary": summary, "scores": scores})
    plot(summary, report_dir)
    print((report_dir / "results.md").read_text())
    return 0


def _machine() -> str:
    return f"{platform.machine()} CPU x{torch.get_num_threads()} threads" if not torch.cuda.is_available() \
        else torch.cuda.get_device_name()


if __name__ == "__main__":
    sys.exit(main())
