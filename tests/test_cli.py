"""The command line explains itself and drives the real code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from seppo_video.cli import main

SUBCOMMANDS = ["train", "calibrate-beta", "sample", "export", "eval", "view", "make-tiny", "make-world-base", "make-demo-data",
               "cache-latents"]


def _help(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "seppo_video.cli", *args, "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_top_level_help_lists_every_subcommand():
    text = _help()
    for name in SUBCOMMANDS:
        assert name in text


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name):
    text = _help(name)
    assert "usage:" in text and len(text.splitlines()) > 3


def test_config_error_exits_2_naming_the_key(capsys):
    assert main(["train", "seppo.mehtod=seppo"]) == 2
    assert "seppo.method" in capsys.readouterr().err


def test_make_tiny_and_sample(tmp_path):
    assert main(["make-tiny", "--kind", "sd", "--out", str(tmp_path / "sd")]) == 0
    assert main(["sample", "--model", str(tmp_path / "sd"), "--prompt", "a blue square", "--out",
                 str(tmp_path / "s"), "--steps", "2", "--height", "32", "--width", "32", "--gif"]) == 0
    import imageio.v3 as iio

    frames = iio.imread(tmp_path / "s" / "a-blue-square" / "seed0.mp4")
    assert frames.shape == (1, 32, 32, 3)
    assert (tmp_path / "s" / "a-blue-square" / "seed0.gif").exists()
    assert (tmp_path / "s" / "index.json").exists()


def test_resume_without_a_checkpoint_fails_fast_and_clearly(tmp_path, capsys):
    assert main(["train", f"output_dir={tmp_path}", "--resume", "latest"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing was started
