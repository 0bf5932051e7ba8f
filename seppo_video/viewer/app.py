"""``seppo-video view --runs DIR [DIR ...]``: compare runs' samples, curves and evaluations in a browser."""

from __future__ import annotations

import argparse
import sys

from seppo_video.viewer.runs import Run, RunFolderError, read_runs

PROG = "seppo-video view"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A Gradio page over training run folders: each prompt's videos from every run side by "
        "side, training curves from metrics.jsonl, the evaluation table from eval/report.json, and a "
        "Generate tab that samples from a run's export/. Serves only files under the given folders.",
    )
    parser.add_argument("--runs", nargs="+", required=True, metavar="DIR",
                        help="run folders (or `seppo-video sample` / eval output folders)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes the page)")
    parser.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    return parser


def report_problems(runs: list[Run]) -> None:
    for run in runs:
        print(f"{PROG}: {run.name}: {run.summary()}", file=sys.stderr)
        for problem in run.problems:
            print(f"{PROG}: warning: {problem}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        runs = read_runs(args.runs)
    except RunFolderError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    try:
        from seppo_video.viewer.ui import launch_viewer
    except ImportError as err:
        print(f"{PROG}: error: {err}; install the viewer extra: pip install 'seppo-video[viewer]'", file=sys.stderr)
        return 2
    report_problems(runs)
    try:
        viewer = launch_viewer(runs, host=args.host, port=args.port)
    except OSError as err:
        print(f"{PROG}: error: cannot serve on {args.host}:{args.port or 'a free port'}: {err}", file=sys.stderr)
        return 2
    print(f"{PROG}: serving {len(runs)} run(s) at {viewer.url} (Ctrl+C stops)", file=sys.stderr)
    try:
        viewer.blocks.block_thread()
    finally:
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
