"""The Gradio viewer: reading run folders, refusing files outside them, and the page in headless Chromium."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from seppo_video.viewer.app import build_parser, main
from seppo_video.viewer.runs import (
    read_evaluation,
    read_metrics,
    read_run,
    read_runs,
    unique_names,
)

PROMPTS = ["a flower blooming, time-lapse", "ice melting on a table", "day turning into night over a city"]
SEEDS = [0, 1]
CHROMIUM = os.environ.get("SEPPO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SECRET = "TOP-SECRET-NOT-IN-ANY-RUN"
REPO = Path(__file__).resolve().parents[1]


def make_tiny_run(path: Path, prompts: list[str], seeds: list[int], method: str) -> Path:
    """A real tiny training run (the demo's model and data): metrics, export and samples."""
    from seppo_video.config import load_config
    from seppo_video.train import train

    overrides = [
        f"output_dir={path}", f"seppo.method={method}", "train.max_steps=6", "train.log_with=none",
        "seppo.ref_sample_steps=2", "seppo.ref_every=2", "sample.num_inference_steps=4",
        f"sample.prompts={json.dumps(prompts)}", f"sample.seeds={json.dumps(seeds)}",
    ]
    train(load_config(None, overrides))
    return path


def write_report(path: Path, runs: list[str]) -> None:
    rows = [{"metric": metric, "run": run, "mean": 0.3 + i / 10, "ci_low": 0.25 + i / 10, "ci_high": 0.35 + i / 10}
            for i, run in enumerate(runs) for metric in ("clip_score", "mtscore")]
    path.mkdir(parents=True, exist_ok=True)
    (path / "report.json").write_text(json.dumps({"rows": rows}))


def make_broken_run(path: Path, secret: Path) -> Path:
    """Garbage metrics lines, an index naming a missing video and one escaping the folder, a symlink out."""
    (path / "samples").mkdir(parents=True)
    videos = [{"prompt": PROMPTS[0], "seed": 0, "mp4": "gone/seed0.mp4"},
              {"prompt": PROMPTS[0], "seed": 1, "mp4": "../../secret.txt"}, "junk"]
    (path / "samples" / "index.json").write_text(json.dumps({"videos": videos}))
    (path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\nnot json at all\n[1, 2]\n{"loss": 1}\n{"step": 2, ')
    (path / "samples" / "leak.mp4").symlink_to(secret)
    return path


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("viewer-runs")
    (root / "secret.txt").write_text(SECRET)
    make_tiny_run(root / "seppo", PROMPTS, SEEDS, "seppo")
    make_tiny_run(root / "sft", PROMPTS[:2], SEEDS, "sft")
    write_report(root / "seppo" / "eval", ["seppo", "sft"])
    make_broken_run(root / "broken", root / "secret.txt")
    return root


def run_dirs(root: Path) -> list[Path]:
    return [root / "seppo", root / "sft", root / "broken"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def viewer(runs_root: Path) -> Iterator[Any]:
    pytest.importorskip("gradio", reason="gradio is not installed (pip install 'seppo-video[viewer]')")
    from seppo_video.viewer.ui import launch_viewer

    running = launch_viewer(read_runs(run_dirs(runs_root)), port=free_port(), quiet=True)
    yield running
    running.close()


def http_get(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no normalisation of ``..``)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# ------------------------------------------------------------------ reading run folders (no Gradio needed)


def test_read_run_collects_samples_metrics_export_and_evaluation(runs_root: Path) -> None:
    run = read_run(runs_root / "seppo")
    assert run.problems == []
    assert {(s.prompt, s.seed) for s in run.samples} == {(p, s) for p in PROMPTS for s in SEEDS}
    assert all(s.path.is_file() for s in run.samples)
    # A SePPO run logs every plotted curve: loss, flipper and the training-health figures.
    assert {p.metric for p in run.metrics} == {"loss", "flip_rate", "implicit_acc", "d_w_rel", "d_ref_rel",
                                               "saturated", "inside_abs", "inside_std", "err_w"}
    assert len(run.metrics) == 9 * 6  # nine curves, six logged steps
    assert run.export == runs_root / "seppo" / "export"
    assert {(r.model, r.metric) for r in run.evaluation} == {(m, k) for m in ("seppo", "sft")
                                                             for k in ("clip_score", "mtscore")}


def test_malformed_run_gives_messages_not_errors(runs_root: Path) -> None:
    run = read_run(runs_root / "broken")
    text = "\n".join(run.problems)
    assert run.samples == []
    assert "missing file gone/seed0.mp4" in text
    assert "outside the samples folder" in text
    assert "video 2: not an object" in text
    assert "line 2: not valid JSON" in text and "line 3: not a JSON object" in text
    assert "line 4: no integer 'step'" in text and "line 5: not valid JSON" in text
    assert [(p.step, p.metric, p.value) for p in run.metrics] == [(1, "loss", 0.5)]
    assert run.export is None and run.evaluation == []


def test_empty_and_unreadable_folders(tmp_path: Path) -> None:
    assert "nothing to show" in read_run(tmp_path).problems[0]
    (tmp_path / "index.json").write_bytes(b"\xff\xfe")
    assert "cannot be read as JSON" in read_run(tmp_path).problems[0]


def test_training_health_figures_are_plotted(tmp_path: Path) -> None:
    file = tmp_path / "metrics.jsonl"
    health = {"d_w_rel": -0.003, "d_ref_rel": 0.02, "saturated": 0.5, "inside_abs": 7.5, "inside_std": 1.5, "err_w": 1.1}
    file.write_text(json.dumps({"step": 3, "loss": 0.1, **health}) + "\n")
    points, problems = read_metrics(file)
    assert problems == [] and {p.metric: p.value for p in points} == {"loss": 0.1, **health}


def test_metrics_skip_non_finite_values(tmp_path: Path) -> None:
    file = tmp_path / "metrics.jsonl"
    file.write_text('{"step": 1, "loss": NaN, "flip_rate": true, "implicit_acc": 0.75}\n')
    points, problems = read_metrics(file)
    assert problems == [] and [(p.metric, p.value) for p in points] == [("implicit_acc", 0.75)]


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({"results": [{"metric": "clip", "model": "base", "mean": 1, "ci_low": 0.5, "ci_high": 1.5}]}, 1),
        ({"rows": [{"metric": "clip", "run": "a", "mean": 1}]}, 0),
        ([{"metric": "clip", "run": "a", "mean": 1, "ci_low": 0, "ci_high": 2}], 0),
        ({"summary": "text only"}, 0),
    ],
)
def test_evaluation_report_is_read_defensively(tmp_path: Path, report: Any, expected: int) -> None:
    (tmp_path / "report.json").write_text(json.dumps(report))
    rows, problems = read_evaluation(tmp_path / "report.json")
    assert len(rows) == expected
    assert (problems == []) == bool(expected)


def test_a_run_with_base_samples_is_shown_before_and_after(runs_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "world"
    shutil.copytree(runs_root / "sft" / "samples", run / "samples")
    shutil.copytree(runs_root / "seppo" / "samples", run / "base_samples")
    plain, before, after = read_runs([runs_root / "sft", run])
    assert (plain.name, before.name, after.name) == ("sft", "world: before", "world: after")
    assert {s.path.parent.parent.name for s in before.samples} == {"base_samples"}
    assert len(before.samples) == len(PROMPTS) * len(SEEDS) and len(after.samples) == 2 * len(SEEDS)
    assert before.path == after.path == run.resolve()  # one folder: the viewer serves both from it


def test_unique_names_disambiguate_same_folder_names(tmp_path: Path) -> None:
    folders = [tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "c"]
    assert unique_names(folders) == ["a/run", "b/run", "c"]


def test_missing_folder_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file.txt").write_text("x")
    assert main(["--runs", str(tmp_path / "nope"), str(tmp_path / "file.txt")]) == 2
    err = capsys.readouterr().err
    assert "not a folder" in err and "nope" in err and "file.txt" in err and "Traceback" not in err


def test_help_and_safe_default_host(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--runs" in capsys.readouterr().out
    assert build_parser().parse_args(["--runs", "x"]).host == "127.0.0.1"


# ------------------------------------------------------------------ the running server


def test_files_outside_the_run_folders_are_refused(viewer: Any, runs_root: Path) -> None:
    assert urlsplit(viewer.url).hostname == "127.0.0.1"
    run = runs_root / "seppo"
    outside = [
        "/etc/passwd",
        f"{run}/../secret.txt",
        f"{run}/%2e%2e/secret.txt",
        quote(f"{run}/../secret.txt"),
        f"{runs_root}/broken/samples/leak.mp4",
    ]
    for path in outside:
        status, body = http_get(viewer.url, f"/gradio_api/file={path}")
        assert status in (403, 404), path
        assert SECRET.encode() not in body and b"root:" not in body, path
    video = read_run(run).samples[0].path
    status, body = http_get(viewer.url, f"/gradio_api/file={video}")
    assert status == 200 and body[4:8] == b"ftyp"


@pytest.mark.browser
def test_page_in_headless_chromium(viewer: Any, tmp_path: Path) -> None:
    pytest.importorskip("playwright", reason="playwright is not installed (pip install 'seppo-video[test]')")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium, or set SEPPO_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(viewer.url)
            check_samples(page, viewer.url)
            shoot(page, tmp_path / "viewer.png")
            check_status_and_curves(page)
            check_evaluation(page)
            check_generate(page, viewer.url)
        finally:
            browser.close()


def sample_sources(page: Any) -> list[str]:
    return page.eval_on_selector_all("#sample-videos video", "videos => videos.map(v => v.currentSrc)")


def check_samples(page: Any, url: str) -> None:
    page.wait_for_selector("#sample-video-1 video", timeout=30_000)
    before = sample_sources(page)
    page.get_by_label("Search prompts").fill("ice melt")
    page.wait_for_function(
        "before => { const now = [...document.querySelectorAll('#sample-videos video')].map(v => v.currentSrc);"
        " return now.length == 2 && now.every((src, i) => src && src != before[i]); }",
        arg=before, timeout=30_000,
    )
    assert page.locator("#prompt-select input").input_value() == PROMPTS[1]
    assert all(src.startswith(f"{url}/gradio_api/file=") for src in sample_sources(page))
    assert page.get_by_text("broken: no video for this prompt and seed").is_visible()
    assert_videos_play(page, "#sample-videos video", 2)


def assert_videos_play(page: Any, selector: str, count: int) -> None:
    states = page.eval_on_selector_all(
        selector,
        "async videos => Promise.all(videos.map(async v => { v.muted = true; await v.play();"
        " const t0 = v.currentTime; await new Promise(r => setTimeout(r, 400));"
        " return {ready: v.readyState, advanced: v.currentTime != t0, error: v.error && v.error.code}; }))",
    )
    assert len(states) == count
    assert all(s["ready"] >= 2 and s["advanced"] and s["error"] is None for s in states), states


def check_status_and_curves(page: Any) -> None:
    assert page.get_by_text("line 2: not valid JSON").is_visible()
    page.get_by_role("tab", name="Training curves").click()
    for metric in ("loss", "flip_rate", "implicit_acc", "d_w_rel", "d_ref_rel", "saturated"):
        page.wait_for_selector(f"#curve-{metric} canvas, #curve-{metric} svg", timeout=30_000)
        size = page.eval_on_selector(f"#curve-{metric}", "e => e.getBoundingClientRect().height")
        assert size > 100


def check_evaluation(page: Any) -> None:
    page.get_by_role("tab", name="Evaluation").click()
    table = page.locator("#evaluation-table")
    table.wait_for(timeout=30_000)
    assert "clip_score" in table.inner_text() and "[0.25, 0.35]" in table.inner_text()


def check_generate(page: Any, url: str) -> None:
    page.get_by_role("tab", name="Generate").click()
    page.locator("#generate-prompt textarea").fill("a candle burning down")
    page.click("#generate-button")
    page.wait_for_selector("#generated-video video", timeout=90_000)
    assert page.eval_on_selector("#generated-video video", "v => v.currentSrc").startswith(f"{url}/gradio_api/file=")
    assert_videos_play(page, "#generated-video video", 1)


def shoot(page: Any, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("SEPPO_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(path, REPO / "docs" / "viewer.png")
