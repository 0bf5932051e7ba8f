"""The Gradio page: samples side by side, training curves, evaluation table, and a Generate tab."""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import torch

from seppo_video.export import load_pipeline
from seppo_video.sample import SampleSettings, prompt_slug, sample_video, write_video
from seppo_video.viewer.runs import PLOTTED_METRICS, Run, Sample

NO_EVALUATION = "No evaluation found (looked for `eval/report.json` or `report.json` in each run folder)."


@dataclass
class Viewer:
    """A running viewer: its page, address, and the folder that holds generated videos."""

    blocks: gr.Blocks
    url: str
    workdir: Path

    def close(self) -> None:
        self.blocks.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def launch_viewer(runs: list[Run], host: str = "127.0.0.1", port: int | None = None, quiet: bool = False) -> Viewer:
    """Serve the page without blocking; only files under the run folders (and Gradio's cache) are served."""
    workdir = Path(tempfile.mkdtemp(prefix="seppo-view-"))
    try:
        blocks = build_page(runs, VideoGenerator(workdir))
        blocks.queue(default_concurrency_limit=1)
        _, url, _ = blocks.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=True,
            allowed_paths=[str(run.path) for run in runs],
            ssr_mode=False,
            quiet=quiet,
            footer_links=[],
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return Viewer(blocks, url.rstrip("/"), workdir)


def build_page(runs: list[Run], generator: VideoGenerator) -> gr.Blocks:
    with gr.Blocks(title="seppo-video viewer", analytics_enabled=False) as blocks:
        gr.Markdown("# seppo-video viewer\n" + status_markdown(runs))
        with gr.Tab("Samples"):
            samples_tab(runs)
        with gr.Tab("Training curves"):
            curves_tab(runs)
        with gr.Tab("Evaluation"):
            evaluation_tab(runs)
        with gr.Tab("Generate"):
            generate_tab(runs, generator)
    return blocks


def status_markdown(runs: list[Run]) -> str:
    lines = [f"- **{run.name}** (`{run.path}`): {run.summary()}" for run in runs]
    for run in runs:
        lines += [f"  - ⚠️ {problem}" for problem in run.problems]
    return "\n".join(lines)


# ------------------------------------------------------------------ samples


def prompts_of(runs: list[Run]) -> list[str]:
    """Every prompt with a video in some run, in order of first appearance."""
    return list(dict.fromkeys(s.prompt for run in runs for s in run.samples))


def seeds_of(runs: list[Run], prompt: str | None) -> list[int]:
    return sorted({s.seed for run in runs for s in run.samples if s.prompt == prompt})


def filter_prompts(prompts: list[str], query: str) -> list[str]:
    words = query.lower().split()
    return [p for p in prompts if all(w in p.lower() for w in words)]


def find_sample(run: Run, prompt: str | None, seed: int | None) -> Sample | None:
    return next((s for s in run.samples if s.prompt == prompt and s.seed == seed), None)


def video_props(run: Run, prompt: str | None, seed: int | None) -> dict[str, Any]:
    sample = find_sample(run, prompt, seed)
    if sample is None:
        return {"value": None, "label": f"{run.name}: no video for this prompt and seed"}
    return {"value": str(sample.path), "label": f"{run.name} · seed {seed}"}


def video_updates(runs: list[Run], prompt: str | None, seed: int | None) -> list[Any]:
    return [gr.Video(**video_props(run, prompt, seed)) for run in runs]


def samples_tab(runs: list[Run]) -> None:
    prompts = prompts_of(runs)
    if not prompts:
        gr.Markdown("No sample videos found (looked for `samples/index.json` or `index.json` in each run folder).")
        return
    first_seeds = seeds_of(runs, prompts[0])
    with gr.Row():
        search = gr.Textbox(label="Search prompts", placeholder="type words of a prompt", scale=1)
        prompt = gr.Dropdown(prompts, value=prompts[0], label=f"Prompt ({len(prompts)})", scale=3,
                             elem_id="prompt-select")
        seed = gr.Radio(first_seeds, value=first_seeds[0], label="Seed", scale=1, elem_id="seed-select")
    with gr.Row(elem_id="sample-videos"):
        videos = [
            gr.Video(**video_props(run, prompts[0], first_seeds[0]), autoplay=True, loop=True,
                     elem_id=f"sample-video-{number}", height=320, min_width=240)
            for number, run in enumerate(runs)
        ]

    def on_search(query: str) -> Any:
        matching = filter_prompts(prompts, query)
        return gr.Dropdown(choices=matching, value=matching[0] if matching else None,
                           label=f"Prompt ({len(matching)} of {len(prompts)})")

    def on_prompt(chosen: str | None, current_seed: int | None) -> list[Any]:
        seeds = seeds_of(runs, chosen)
        keep = current_seed if current_seed in seeds else (seeds[0] if seeds else None)
        return [gr.Radio(choices=seeds, value=keep), *video_updates(runs, chosen, keep)]

    search.change(on_search, search, prompt)
    prompt.change(on_prompt, [prompt, seed], [seed, *videos])
    seed.change(lambda p, s: video_updates(runs, p, s), [prompt, seed], videos)


# ------------------------------------------------------------------ curves and evaluation


def metrics_frame(runs: list[Run]) -> pd.DataFrame:
    rows = [(run.name, p.step, p.metric, p.value) for run in runs for p in run.metrics]
    return pd.DataFrame(rows, columns=["run", "step", "metric", "value"])


def curves_tab(runs: list[Run]) -> None:
    frame = metrics_frame(runs)
    if frame.empty:
        gr.Markdown("No training metrics found (looked for `metrics.jsonl` in each run folder).")
        return
    with gr.Row():
        for metric in PLOTTED_METRICS:
            curve = frame[frame.metric == metric].drop(columns="metric")
            if curve.empty:
                gr.Markdown(f"No `{metric}` values logged.")
                continue
            gr.LinePlot(curve, x="step", y="value", color="run", title=metric, y_title=metric,
                        elem_id=f"curve-{metric}", height=280, min_width=280)


def evaluation_frame(runs: list[Run]) -> pd.DataFrame:
    rows = [
        (run.name, row.model, row.metric, row.mean, f"[{row.ci_low:.4g}, {row.ci_high:.4g}]")
        for run in runs
        for row in run.evaluation
    ]
    return pd.DataFrame(rows, columns=["run folder", "run/model", "metric", "mean", "95% CI"])


def evaluation_tab(runs: list[Run]) -> None:
    frame = evaluation_frame(runs)
    if frame.empty:
        gr.Markdown(NO_EVALUATION)
        return
    gr.Dataframe(frame, interactive=False, elem_id="evaluation-table")


# ------------------------------------------------------------------ generate


class VideoGenerator:
    """Samples one video from an export into ``workdir``, keeping each loaded pipeline."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._pipelines: dict[Path, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, export: Path, prompt: str, seed: int, settings: SampleSettings,
                 callback: Callable[[int, int], None]) -> Path:
        with self._lock:
            frames = sample_video(self._pipeline(export), prompt, seed, settings, callback=callback)
        name = f"{prompt_slug(prompt, 40)}-seed{seed}-{uuid.uuid4().hex[:8]}.mp4"
        return write_video(frames, self.workdir / name, settings.fps)

    def _pipeline(self, export: Path) -> Any:
        if export not in self._pipelines:
            self._pipelines[export] = load_pipeline(export).to("cuda" if torch.cuda.is_available() else "cpu")
        return self._pipelines[export]


def generate_tab(runs: list[Run], generator: VideoGenerator) -> None:
    exports = {run.name: run.export for run in runs if run.export is not None}
    if not exports:
        gr.Markdown("No run has an export (`export/seppo_export.json`); finish a training run or run "
                    "`seppo-video export --run RUN` first.")
        return
    prompts = prompts_of(runs)
    with gr.Row():
        with gr.Column(scale=1):
            run = gr.Dropdown(list(exports), value=next(iter(exports)), label="Run (its export/)")
            prompt = gr.Textbox(value=prompts[0] if prompts else "", label="Prompt", elem_id="generate-prompt")
            seed = gr.Number(0, precision=0, minimum=0, label="Seed")
            steps = gr.Slider(1, 50, value=8, step=1, label="Denoising steps")
            frames = gr.Slider(1, 32, value=8, step=1, label="Frames")
            size = gr.Dropdown([64, 128, 256, 512], value=64, label="Height and width")
            button = gr.Button("Generate", variant="primary", elem_id="generate-button")
        output = gr.Video(label="Generated", autoplay=True, loop=True, elem_id="generated-video", height=420,
                          scale=2)

    def generate(run_name: str, text: str, seed_value: float | None, step_count: float, frame_count: float,
                 side: int, progress: gr.Progress = gr.Progress()) -> str:  # noqa: B008 (Gradio injects it)
        if not text.strip():
            raise gr.Error("Type a prompt first.")
        if run_name not in exports:
            raise gr.Error(f"Unknown run {run_name!r}.")
        settings = SampleSettings(int(frame_count), int(side), int(side), int(step_count))
        progress(0, desc="loading the model")

        def report(step: int, total: int) -> None:
            progress((step, total), desc="denoising")

        try:
            path = generator(exports[run_name], text.strip(), int(seed_value or 0), settings, report)
        except Exception as err:  # a broken export must not take the page down
            raise gr.Error(f"Sampling from {exports[run_name]} failed: {type(err).__name__}: {err}") from err
        return str(path)

    button.click(generate, [run, prompt, seed, steps, frames, size], output)
