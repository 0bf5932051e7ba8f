"""The evaluation's metrics against independent computations and known properties.

Networks are the project's tiny random-init stand-ins, loaded from TorchScript
files / CLIP folders through the same loader a real run uses.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from seppo_video.evaluation.backends import BackendSpec
from seppo_video.evaluation.errors import EvalError
from seppo_video.evaluation.frechet import frechet_distance
from seppo_video.evaluation.metrics import chronomagic, distribution, paired
from seppo_video.evaluation.metrics.base import VideoItem
from seppo_video.evaluation.metrics.preference import ClipFamilyScore, HPSv2Score
from seppo_video.evaluation.metrics.registry import set_distance
from seppo_video.evaluation.official import OfficialText
from seppo_video.evaluation.tiny_extractors import ensure_tiny_extractors
from seppo_video.evaluation.video import evenly_spaced_indices

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    return ensure_tiny_extractors()


def smooth_videos(count: int, frames: int = 8, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    """Distinct smooth clips (gradients drifting over time), uint8 [F, H, W, 3]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    clips = []
    for _ in range(count):
        a, b, c = rng.uniform(1, 6, size=3)
        clip = [np.stack([np.sin(a * x + t / 3), np.cos(b * y - t / 4), np.sin(c * (x + y))], -1) for t in range(frames)]
        clips.append(((np.stack(clip) + 1) * 127.5).astype(np.uint8))
    return clips


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's general matrix square root."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# ---------------------------------------------------------------- Fréchet distance


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(60, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(loc=0.5, size=(80, 6)) @ rng.normal(size=(6, 6))
    assert frechet_distance(a, b) == pytest.approx(scipy_frechet(a, b), rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_fid_matches_torchmetrics_with_the_same_extractor(tiny):
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = distribution.FID(BackendSpec(path=str(tiny["inception"])), CPU, frames_per_video=8)
    real, fake = smooth_videos(4, seed=1), smooth_videos(4, seed=2)
    ours = set_distance("fid", [metric.features(v) for v in fake], [metric.features(v) for v in real]).value
    reference = FrechetInceptionDistance(feature=metric.network)
    reference.update(torch.from_numpy(np.concatenate(real)).permute(0, 3, 1, 2), real=True)
    reference.update(torch.from_numpy(np.concatenate(fake)).permute(0, 3, 1, 2), real=False)
    assert ours == pytest.approx(float(reference.compute()), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name", ["fid", "fvd"])
def test_distribution_metric_is_zero_on_itself_and_grows_with_perturbation(tiny, name):
    if name == "fid":
        metric = distribution.FID(BackendSpec(path=str(tiny["inception"])), CPU, frames_per_video=8)
    else:
        metric = distribution.FVD(BackendSpec(path=str(tiny["i3d"])), CPU, num_frames=8, size=32)
    videos = smooth_videos(12, seed=3)
    reference = [metric.features(v) for v in videos]
    rng = np.random.default_rng(4)
    noise = [rng.normal(size=v.shape) for v in videos]
    distances = []
    for sigma in (0.0, 10.0, 30.0, 80.0):
        perturbed = [np.clip(v + sigma * n, 0, 255).astype(np.uint8) for v, n in zip(videos, noise)]
        distances.append(set_distance(name, [metric.features(v) for v in perturbed], reference).value)
    assert distances[0] == pytest.approx(0.0, abs=1e-6)
    assert all(later > earlier for earlier, later in itertools.pairwise(distances)), distances


# ---------------------------------------------------------------- SSIM / PSNR / LPIPS


def item_with_reference(frames: np.ndarray, reference: np.ndarray) -> VideoItem:
    return VideoItem("v", "a prompt", frames, lambda: reference)


def test_ssim_is_one_and_psnr_capped_for_identical_videos():
    (video,) = smooth_videos(1)
    item = item_with_reference(video, video.copy())
    assert paired.SSIM().score(item)["score"] == pytest.approx(1.0, abs=1e-5)
    psnr = paired.PSNR().score(item)["score"]
    assert math.isfinite(psnr) and psnr == pytest.approx(paired.PSNR_CAP_DB)


def test_psnr_matches_the_formula_for_a_known_error():
    (video,) = smooth_videos(1)
    brighter = np.clip(video.astype(int) + 10, 0, 255).astype(np.uint8)
    error = (brighter.astype(float) - video) / 255.0
    expected = np.mean([10 * np.log10(1.0 / np.mean(e**2)) for e in error])
    assert paired.PSNR().score(item_with_reference(brighter, video))["score"] == pytest.approx(expected, rel=1e-4)


def test_reference_is_aligned_in_time_and_space():
    """A longer, larger reference clip is resampled to the generated frames and size."""
    (video,) = smooth_videos(1, frames=8, size=32)
    long_reference = np.repeat(np.repeat(np.repeat(video, 2, axis=0), 2, axis=1), 2, axis=2)  # 16 frames, 64 px
    score = paired.SSIM().score(item_with_reference(video, long_reference))["score"]
    assert score > 0.9


def test_lpips_is_zero_for_identical_and_positive_otherwise(tiny):
    metric = paired.LPIPS(BackendSpec(path=str(tiny["lpips"])), CPU)
    a, b = smooth_videos(2)
    assert metric.score(item_with_reference(a, a.copy()))["score"] == pytest.approx(0.0, abs=1e-6)
    assert metric.score(item_with_reference(a, b))["score"] > 0.0


# ---------------------------------------------------------------- MTScore / UMT / CHScore


def test_evenly_spaced_frames_include_both_ends():
    picked = evenly_spaced_indices(16, 8)
    assert picked[0] == 0 and picked[-1] == 15 and len(picked) == 8


def test_mtscore_is_the_time_lapse_mass_among_the_top_five():
    normal = [0.30, 0.10, 0.05, 0.28, 0.00]
    timelapse = [0.29, 0.31, 0.02, 0.27, 0.01]
    weights = [math.exp(100 * c) for c in normal + timelapse]
    total = sum(weights)
    # Top five by probability: 0.31 (T), 0.30 (N), 0.29 (T), 0.28 (N), 0.27 (T).
    expected = (math.exp(31) + math.exp(29) + math.exp(27)) / total
    assert chronomagic.metamorphic_score(np.array(normal + timelapse)) == pytest.approx(expected, rel=1e-9)
    # A time-lapse text outside the top five does not count, however close.
    only_normal_top = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.49, 0.0, 0.0, 0.0, 0.0])
    assert chronomagic.metamorphic_score(only_normal_top) == 0.0


def test_mtscore_and_umtscore_run_on_tiny_backbones(tiny):
    (video,) = smooth_videos(1)
    item = VideoItem("v", "ice melting, time-lapse", video)
    spec = BackendSpec(path=str(tiny["internvideo2"]), tokenizer=str(tiny["tokenizer"]))
    own = OfficialText(tuple(f"text {i}" for i in range(10)), "test", False)
    mt = chronomagic.MTScore(spec, CPU, own).score(item)["score"]
    assert 0.0 <= mt <= 1.0
    umt = BackendSpec(path=str(tiny["umt"]), tokenizer=str(tiny["tokenizer"]))
    assert math.isfinite(chronomagic.UMTScore(umt, CPU).score(item)["score"])


def test_chscore_of_static_fully_visible_points_is_zero(tiny):
    tracks = np.tile(np.array([[10.0, 10.0], [50.0, 30.0]]), (8, 1, 1))
    parts = chronomagic.chscore_components(chronomagic.missed_fraction(tracks, np.ones((8, 2), bool)))
    assert chronomagic.instability_index(parts) == 0.0
    assert chronomagic.chscore_from_instability(0.0) == 0.0
    still = np.repeat(smooth_videos(1)[0][:1], 8, axis=0)  # one frame held: every point stays visible
    record = chronomagic.CHScore(BackendSpec(path=str(tiny["cotracker"])), CPU).score(VideoItem("v", "p", still))
    assert record["instability"] == 0.0 and record["score"] == 0.0


# ---------------------------------------------------------------- preference scores


def independent_clip_cosines(folder, frames: np.ndarray, prompt: str) -> torch.Tensor:
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)
    pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"]
    tokens = processor.tokenizer([prompt], return_tensors="pt", padding=True)
    with torch.no_grad():
        image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        text = model.text_projection(model.text_model(**tokens).pooler_output)
    image, text = image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
    return (image @ text.T)[:, 0], model.logit_scale.exp().item()


def test_clip_score_and_pickscore_match_their_definitions(tiny):
    (video,) = smooth_videos(1, size=48)
    prompt = "a flower opening, time-lapse"
    item = VideoItem("v", prompt, video)
    cos, scale = independent_clip_cosines(tiny["clip"], video, prompt)
    clip = ClipFamilyScore("clip_score", BackendSpec(path=str(tiny["clip"])), CPU, None).score(item)["score"]
    assert clip == pytest.approx(float((100 * cos.clamp(min=0)).mean()), abs=1e-4)
    pick = ClipFamilyScore("pickscore", BackendSpec(path=str(tiny["clip"])), CPU, None).score(item)["score"]
    assert pick == pytest.approx(float((scale * cos).mean()), abs=1e-4)


def test_hpsv2_without_open_clip_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "open_clip", None)
    with pytest.raises(EvalError, match="open_clip_torch"):
        HPSv2Score(BackendSpec(path=str(tmp_path / "HPS_v2.1.pt")), CPU, None)
