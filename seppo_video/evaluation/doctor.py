"""``seppo-video eval doctor``: every file an eval config names, checked in seconds before a long run.

For each metric's weights: the file exists and has the expected format;
released checkpoints have exactly the keys and shapes the network needs
(checked against a network built on the ``meta`` device, so nothing is
allocated); tokenizers load and fit the checkpoint's vocabulary; files with a
``sha256`` in the config match it. Also the reference features, the
reference videos and the ChronoMagic-Bench checkout. Each finding says what
is wrong and where the file comes from.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from seppo_video.evaluation.backends import BackendSpec, import_callable
from seppo_video.evaluation.config import EvalConfig
from seppo_video.evaluation.errors import EvalError
from seppo_video.evaluation.networks.checkpoints import is_torchscript, mismatches

BENCH_MODELS = "the Hugging Face model repo BestWishYsh/ChronoMagic-Bench (the benchmark's checkpoints)"
SOURCES = {
    "umt": f"UMT-msrvtt-7k.pth from {BENCH_MODELS}; tokenizer: a local bert-large-uncased folder",
    "internvideo2": f"InternVideo2-stage2_1b-224p-f4.pt from {BENCH_MODELS}; tokenizer: bert-large-uncased",
    "cotracker": f"cotracker2.pth from {BENCH_MODELS}",
    "i3d": "i3d_torchscript.pt (StyleGAN-V's FVD detector)",
    "inception": "inception-2015-12-05.pt (StyleGAN2-ADA's FID detector)",
    "lpips": "an LPIPS network exported to TorchScript",
    "clip": "a transformers CLIPModel folder (e.g. openai/clip-vit-large-patch14)",
    "pickscore": "the PickScore_v1 CLIPModel folder (+ laion/CLIP-ViT-H-14-laion2B-s32B-b79K processor)",
    "hpsv2": "HPS_v2.1_compressed.pt (xswu/HPSv2) and open_clip_torch",
    "umt_features": "UMT/gt_feature/gt150_feats.pt or gt1649_feats.pt in the PKU-YuanGroup/ChronoMagic-Bench repository",
    "chronomagic_repo": "git clone https://github.com/PKU-YuanGroup/ChronoMagic-Bench",
}
# SHA-256 of the reference feature files shipped in the benchmark's repository.
SHIPPED_FEATURES = {
    "92ce300caf03c1485fcfe3db0ae5a8f3bd76a7764360c27a0b47fd31b050170e": "gt150_feats.pt",
    "d3fd458c6d5c26597cecf03ed3bbe44fec896e24c1f30201726580aaeeadcf80": "gt1649_feats.pt",
}


@dataclass(frozen=True)
class Finding:
    subject: str  # the config key checked
    status: str  # "ok" | "problem" | "not configured"
    detail: str
    source: str = ""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def diagnose(config: EvalConfig, checksums: bool = False) -> list[Finding]:
    """Every finding for ``config`` (problems and what is fine); ``checksums`` adds each weights file's SHA-256."""
    findings = [_weights(entry.name, getattr(config.weights, entry.name), checksums) for entry in fields(config.weights)]
    return [*findings, _umt_features(config), _reference_videos(config), _checkout(config)]


def _guard(subject: str, source: str, check: Callable[[], str]) -> Finding:
    try:
        return Finding(subject, "ok", check(), source)
    except EvalError as err:
        return Finding(subject, "problem", str(err), source)


def _weights(name: str, spec: BackendSpec, checksums: bool) -> Finding:
    subject, source = f"weights.{name}", SOURCES[name]
    if not spec.configured:
        return Finding(subject, "not configured", "metric skipped", source)
    if spec.path == "tiny":
        return Finding(subject, "ok", "the tiny random-init stand-in (built at run time; its numbers mean nothing)")
    return _guard(subject, source, lambda: _check_spec(name, spec, checksums))


def _check_spec(name: str, spec: BackendSpec, checksums: bool) -> str:
    if spec.factory:
        import_callable(spec.factory, f"weights.{name}.factory")
    notes = [f"factory {spec.factory}"] if spec.factory else []
    if spec.path:
        path = Path(spec.path)
        if not path.exists():
            raise EvalError(f"{path} not found")
        notes.append(CHECKS.get(name, _torchscript)(path, spec))
        digest = sha256(path) if path.is_file() and (spec.sha256 or checksums) else None
        if spec.sha256 and digest != spec.sha256.lower():
            raise EvalError(f"{path}: SHA-256 {digest} differs from weights.{name}.sha256")
        notes += [f"sha256 {digest}"] if checksums and digest else []
    return "; ".join(notes)


def _torchscript(path: Path, spec: BackendSpec) -> str:
    if not is_torchscript(path):
        raise EvalError(f"{path} is not a TorchScript file")
    return f"{path.name}: TorchScript"


def _released(path: Path, spec: BackendSpec, read: Callable, build: Callable, vocab: Callable) -> str:
    if is_torchscript(path):
        return f"{path.name}: TorchScript export"
    shape, state = read(path)
    with torch.device("meta"):
        expected = build(shape).state_dict()
    problems = mismatches(expected, state)
    if problems:
        raise EvalError(f"{path}: {'; '.join(problems)}")
    return f"{path.name}: all {len(expected)} tensors match; " + _tokenizer(spec, vocab(shape))


def _tokenizer(spec: BackendSpec, vocab: int) -> str:
    from transformers import AutoTokenizer

    if not spec.tokenizer or not Path(spec.tokenizer).is_dir():
        raise EvalError(f"tokenizer folder not found: {spec.tokenizer!r} (set its 'tokenizer' key)")
    size = len(AutoTokenizer.from_pretrained(spec.tokenizer, local_files_only=True))
    if size > vocab:
        raise EvalError(f"tokenizer {spec.tokenizer} has {size} tokens, the checkpoint's vocabulary {vocab}")
    return f"tokenizer {Path(spec.tokenizer).name}: {size} tokens"


def _umt(path: Path, spec: BackendSpec) -> str:
    from seppo_video.evaluation.networks.umt import UMT, umt_checkpoint

    return _released(path, spec, umt_checkpoint, UMT, lambda shape: shape.vocab)


def _internvideo2(path: Path, spec: BackendSpec) -> str:
    from seppo_video.evaluation.networks.internvideo2 import InternVideo2, internvideo2_checkpoint

    return _released(path, spec, internvideo2_checkpoint, InternVideo2, lambda shape: shape.text.vocab)


def _cotracker(path: Path, spec: BackendSpec) -> str:
    from seppo_video.evaluation.networks.checkpoints import read_state_dict
    from seppo_video.evaluation.networks.cotracker2 import WHAT, CoTracker2

    if is_torchscript(path):
        return f"{path.name}: TorchScript export"
    if spec.factory:  # the official predictor of a co-tracker checkout loads the file itself
        if not _importable("cotracker.predictor"):
            raise EvalError("cannot find cotracker.predictor: put a co-tracker checkout on PYTHONPATH")
        return f"{path.name}: for the official predictor; cotracker.predictor importable"
    with torch.device("meta"):
        expected = CoTracker2().state_dict()
    problems = mismatches(expected, read_state_dict(path, WHAT))
    if problems:
        raise EvalError(f"{path}: {'; '.join(problems)}")
    return f"{path.name}: all {len(expected)} tensors match"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is missing
        return False


def _folder(path: Path, spec: BackendSpec) -> str:
    if not (path / "config.json").is_file():
        raise EvalError(f"{path} is not a transformers model folder (no config.json)")
    return f"{path.name}: transformers folder"


def _hpsv2(path: Path, spec: BackendSpec) -> str:
    if not _importable("open_clip"):
        raise EvalError("HPSv2 needs open_clip_torch (pip install open_clip_torch)")
    return f"{path.name}: {path.stat().st_size / 2**20:.0f} MiB; open_clip importable"


CHECKS: dict[str, Callable[[Path, BackendSpec], str]] = {
    "umt": _umt, "internvideo2": _internvideo2, "cotracker": _cotracker,
    "clip": _folder, "pickscore": _folder, "hpsv2": _hpsv2,
}


def _umt_features(config: EvalConfig) -> Finding:
    subject, source = "reference.umt_features", SOURCES["umt_features"]
    if not config.reference.umt_features:
        return Finding(subject, "not configured", "UMT-FVD needs reference videos instead", source)

    def check() -> str:
        from seppo_video.evaluation.metrics.chronomagic import load_umt_reference_features

        path = Path(config.reference.umt_features)
        rows = load_umt_reference_features(str(path))
        digest = sha256(path)
        if config.reference.umt_features_sha256 and digest != config.reference.umt_features_sha256.lower():
            raise EvalError(f"{path}: SHA-256 differs from reference.umt_features_sha256")
        shipped = SHIPPED_FEATURES.get(digest)
        origin = f"the benchmark's {shipped}" if shipped else f"not a file the benchmark ships (sha256 {digest})"
        return f"{path.name}: {rows.shape[0]} x {rows.shape[1]}; {origin}"

    return _guard(subject, source, check)


def _reference_videos(config: EvalConfig) -> Finding:
    subject = "reference.videos"
    source = "the reference clips in the Hugging Face dataset BestWishYsh/ChronoMagic-Bench"
    if not config.reference.videos:
        return Finding(subject, "not configured", "FID, FVD, LPIPS, SSIM and PSNR are skipped", source)
    folder = Path(config.reference.videos)
    if config.reference.videos == "tiny":
        return Finding(subject, "ok", "synthetic clips (written at run time)", source)
    if not folder.is_dir():
        return Finding(subject, "problem", f"{folder} is not a folder", source)
    return Finding(subject, "ok", f"{folder}: {sum(1 for _ in folder.glob('*.mp4'))} .mp4 clips", source)


def _checkout(config: EvalConfig) -> Finding:
    from seppo_video.evaluation.official import gpt4o_rubric, mtscore_descriptions

    subject, source = "chronomagic_repo", SOURCES["chronomagic_repo"]
    if not config.chronomagic_repo:
        own = "own MTScore descriptions set" if config.mtscore_descriptions else "MTScore skipped"
        return Finding(subject, "not configured", f"{own}; MTScore / GPT4o-MTScore not leaderboard-comparable", source)

    def check() -> str:
        texts = mtscore_descriptions(config.chronomagic_repo, None)
        gpt4o_rubric(config.chronomagic_repo, None)
        return f"MTScore descriptions ({len(texts.value)}) and GPT4o-MTScore rubric read"

    return _guard(subject, source, check)


def format_findings(findings: list[Finding]) -> str:
    marks = {"ok": "ok     ", "problem": "PROBLEM", "not configured": "-      "}
    lines = []
    for finding in findings:
        lines.append(f"{marks[finding.status]} {finding.subject}: {finding.detail}")
        if finding.status != "ok" and finding.source:
            lines.append(f"        get it: {finding.source}")
    problems = sum(f.status == "problem" for f in findings)
    lines.append(f"{problems} problem(s)" if problems else "no problems")
    return "\n".join(lines)
