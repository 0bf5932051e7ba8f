"""The benchmark metrics against independent computations of the official definitions.

Each reference computation below is written from the official scripts'
formulas (PKU-YuanGroup/ChronoMagic-Bench) in the test itself, in a different
style from the code under test, and compared on synthetic tracks, features
and frames. Texts that define the metrics (descriptions, rubric) come from a
fake checkout written here with made-up wording: the tests check where the
text is read from, not what it says.
"""

from __future__ import annotations

import math
import random
import sys
import types

import cv2
import numpy as np
import pytest
import scipy.linalg
import torch

from seppo_video.evaluation.backends import BackendSpec
from seppo_video.evaluation.errors import EvalError
from seppo_video.evaluation.metrics import chronomagic
from seppo_video.evaluation.metrics.base import VideoItem
from seppo_video.evaluation.metrics.gpt4o import GPT4oMTScore, gpt4o_frames, parse_rating
from seppo_video.evaluation.official import OfficialText, gpt4o_rubric, mtscore_descriptions
from seppo_video.evaluation.tiny_extractors import ensure_tiny_extractors
from seppo_video.evaluation.video import gpt4o_indices, mtscore_indices, resize_uint8_bicubic_antialias, umt_indices

CPU = torch.device("cpu")
FAKE_DESCRIPTIONS = [f"made-up ordinary text {i}" for i in range(5)] + [f"made-up fast text {i}" for i in range(5)]
FAKE_RUBRIC = "Made-up rubric for the test.\nRate 1 to 5."


@pytest.fixture
def checkout(tmp_path):
    """A stand-in for a ChronoMagic-Bench checkout: the two scripts, with the variables where the official ones are."""
    mt = tmp_path / "MTScore" / "step0-get_MTScore.py"
    mt.parent.mkdir()
    mt.write_text(f"import os\n\ndef main():\n    seed = 1\n    text_candidates = {FAKE_DESCRIPTIONS!r}\n    return seed\n")
    gpt = tmp_path / "GPT4o_MTScore" / "step1-get_temp_results.py"
    gpt.parent.mkdir()
    gpt.write_text(f"import os\ntxt_prompt = {FAKE_RUBRIC!r}\n")
    return tmp_path


def fake_module(monkeypatch, name: str, **attributes) -> str:
    """Register a throwaway module so a backend ``factory`` can point at it."""
    module = types.ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)
    return name


# ---------------------------------------------------------------- CHScore


def official_chscore(tracks: torch.Tensor, visibility: torch.Tensor, threshold: float = 0.1) -> dict[str, float]:
    """step0-get_CHScore.py's get_score, written out: tracks [1, T, N, 2], visibility [1, T, N] bool."""
    frames, points = visibility.shape[1], visibility.shape[2]
    start, half = tracks[0, 0], tracks[0, frames // 2]
    direction = (half - start) / ((half - start).norm(dim=1, keepdim=True) + 1e-8)
    missed = []
    for i in range(frames):
        projection = ((tracks[0, i] - start) * direction).sum(dim=1)
        missed.append(((visibility[0, i] == 0) & ~(projection > 0)).sum().double() / points)
    missed = torch.stack(missed)
    change = (missed[1:] - missed[:-1]).abs()
    raw = {
        "AMPR": missed.mean().item(), "MPVR": change.std().item(), "FCR": int((change > threshold).sum()) / frames,
        "CMPV": int((change > threshold).sum()), "MCMPV": change.max().item(),
    }
    top = {"AMPR": 0.9368749856948853, "MPVR": 0.8997353911399841, "FCR": 0.625, "CMPV": 20, "MCMPV": 1.0}
    weight = {"AMPR": 0.35, "MPVR": 0.25, "FCR": 0.15, "CMPV": 0.15, "MCMPV": 0.10}
    total = sum(weight[k] * raw[k] / top[k] for k in raw)
    return {"instability": total, "score": 1 / total if total != 0 else 0.0}


def synthetic_tracks(seed: int, frames: int = 16, points: int = 900, size: int = 512):
    """Points drifting in random directions, some reversing, with random and systematic occlusions."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.rand(points, 2, generator=gen, dtype=torch.float64) * size
    velocity = torch.randn(points, 2, generator=gen, dtype=torch.float64) * 6
    t = torch.arange(frames, dtype=torch.float64)[:, None, None]
    turn = torch.where(torch.rand(points, generator=gen) < 0.3, -1.0, 1.0).double()[None, :, None]
    tracks = start + velocity * torch.where(t > frames // 2, frames // 2 + turn * (t - frames // 2), t)
    visible = torch.rand(frames, points, generator=gen) > 0.2
    visible[frames // 3 : frames // 3 + 2, : points // 4] = False  # a burst: gives cuts
    visible[0] = True  # the predictor forces the query frame visible
    return tracks[None], visible[None]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chscore_matches_the_official_formula(seed):
    tracks, visible = synthetic_tracks(seed)
    expected = official_chscore(tracks, visible)
    parts = chronomagic.chscore_components(chronomagic.missed_fraction(tracks[0].numpy(), visible[0].numpy()))
    instability = chronomagic.instability_index(parts)
    assert instability == pytest.approx(expected["instability"], rel=1e-9, abs=1e-9)
    assert chronomagic.chscore_from_instability(instability) == pytest.approx(expected["score"], rel=1e-9, abs=1e-6)


def test_chscore_counts_by_projection_not_by_leaving_the_frame():
    """Two invisible points inside the frame: the one that moved along its direction is not missed."""
    tracks = np.zeros((5, 2, 2))
    tracks[:, 0] = np.stack([10.0 + 2 * np.arange(5), np.full(5, 10.0)], 1)  # moves right, stays inside
    tracks[:, 1] = np.stack([30.0 + 2 * np.arange(5), np.full(5, 10.0)], 1)
    tracks[4, 1] = (25.0, 10.0)  # came back behind its start at the last frame
    visible = np.ones((5, 2), bool)
    visible[4] = False
    np.testing.assert_allclose(chronomagic.missed_fraction(tracks, visible), [0, 0, 0, 0, 0.5])


def test_chscore_calls_the_tracker_with_the_official_grid(monkeypatch):
    tracks, visible = synthetic_tracks(3, frames=8, size=64)
    calls = []

    class Tracker:
        def track(self, video, grid_size):
            calls.append((tuple(video.shape), grid_size, float(video.max())))
            return tracks.float(), visible

    factory = fake_module(monkeypatch, "fake_cotracker", build=lambda spec: Tracker())
    metric = chronomagic.CHScore(BackendSpec(factory=f"{factory}:build"), CPU)
    frames = np.full((8, 64, 48, 3), 200, np.uint8)
    record = metric.score(VideoItem("v", "p", frames))
    assert calls == [((1, 8, 3, 64, 48), 30, 200.0)]  # [0, 255] pixels, grid_size=30
    assert record["score"] == pytest.approx(official_chscore(tracks.float().double(), visible)["score"], rel=1e-6)


def test_chscore_refuses_too_short_videos():
    with pytest.raises(EvalError, match="at least 3 frames"):
        chronomagic.chscore_components(np.array([0.0, 0.1]))


# ---------------------------------------------------------------- UMT-FVD


def official_umt_fvd(generated: np.ndarray, real: np.ndarray) -> float:
    """calc_metrics_for_dataset.py per seed and size, then step4's averages (over seeds, then sizes)."""

    def stats(features, seed, size):
        rows = np.asarray(features, dtype=np.float32)
        if size < len(rows):
            random.seed(seed)
            rows = rows[random.sample(list(range(len(rows))), size)]
        rows = rows.astype(np.float64)
        return rows.mean(0), np.cov(rows, rowvar=False, bias=True)

    per_size = []
    for size in (32, 64, 128, 256, 300, 512, 1024):
        values = []
        for seed in (12, 22, 32, 42):
            mu_g, s_g = stats(generated, seed, size)
            mu_r, s_r = stats(real, seed, size)
            root = scipy.linalg.sqrtm(s_g @ s_r)
            values.append(float(np.real(((mu_g - mu_r) ** 2).sum() + np.trace(s_g + s_r - 2 * root))))
        per_size.append(sum(values) / len(values))
    return sum(per_size) / len(per_size)


@pytest.mark.parametrize(("n_gen", "n_real"), [(40, 40), (70, 70), (40, 90)])
def test_umt_fvd_matches_the_official_protocol(n_gen, n_real):
    rng = np.random.default_rng(n_gen + n_real)
    mixing = rng.normal(size=(8, 8))
    real = (rng.normal(size=(n_real, 8)) @ mixing).astype(np.float16)
    generated = (rng.normal(loc=0.4, size=(n_gen, 8)) @ mixing).astype(np.float32)
    result = chronomagic.umt_fvd_protocol(generated, real.astype(np.float32))
    assert result.value == pytest.approx(official_umt_fvd(generated, real), rel=1e-6)


def test_umt_fvd_draws_the_same_prompts_on_both_sides():
    """Same seed, same count: the subsets are the same rows, so a set against itself is at distance 0."""
    features = np.random.default_rng(0).normal(size=(100, 6))
    result = chronomagic.umt_fvd_protocol(features, features.copy())
    assert result.value == pytest.approx(0.0, abs=1e-6)
    # Sizes 32 and 64 draw 4 subsets each; every larger size is the whole set (one pair for 20 values).
    assert result.details["distinct_subsets"] == 9


def test_umt_reference_features_load_in_the_shipped_format(tmp_path):
    path = tmp_path / "gt150_feats.pt"
    shipped = torch.randn(150, 768).half()
    torch.save(shipped, path)
    np.testing.assert_array_equal(chronomagic.load_umt_reference_features(str(path)), shipped.float().numpy())


@pytest.mark.parametrize("content", ["shape", "dict", "numpy", "missing"])
def test_wrong_umt_reference_features_name_the_file(tmp_path, content):
    path = tmp_path / "features.pt"
    if content == "shape":
        torch.save(torch.zeros(150, 512).half(), path)
    elif content == "dict":
        torch.save({"feats": torch.zeros(150, 768)}, path)
    elif content == "numpy":
        np.save(path, np.zeros((150, 768)), allow_pickle=False)
    with pytest.raises(EvalError, match="features.pt"):
        chronomagic.load_umt_reference_features(str(path))


# ---------------------------------------------------------------- UMT frames and resize


def official_umt_indices(vlen: int, num_frames: int = 12) -> list[int]:
    """video_utils.get_frame_indices(sample='middle'), written out."""
    acc = min(num_frames, vlen)
    cuts = np.linspace(start=0, stop=vlen, num=acc + 1).astype(int)
    ranges = [(cuts[k], cuts[k + 1] - 1) for k in range(acc)]
    chosen = [(lo + hi) // 2 for lo, hi in ranges]
    return chosen + [chosen[-1]] * (num_frames - len(chosen))


@pytest.mark.parametrize("vlen", [5, 12, 16, 24, 25, 33, 100])
def test_umt_frames_are_the_official_segment_middles(vlen):
    assert umt_indices(vlen) == official_umt_indices(vlen)


def pil_style_bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Antialiased bicubic weights (Keys a = -0.5, support widened by the scale when shrinking)."""

    def kernel(x):
        x = np.abs(x)
        return np.where(x < 1, (1.5 * x - 2.5) * x * x + 1, np.where(x < 2, ((-0.5 * x + 2.5) * x - 4) * x + 2, 0.0))

    scale = n_in / n_out
    stretch = max(scale, 1.0)
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - 2 * stretch + 0.5), 0), min(int(centre + 2 * stretch + 0.5), n_in)
        taps = kernel((np.arange(lo, hi) - centre + 0.5) / stretch)
        weights[i, lo:hi] = taps / taps.sum()
    return weights


@pytest.mark.parametrize(("height", "width"), [(512, 512), (320, 576), (64, 48)])
def test_umt_resize_is_torchvision_bicubic_on_uint8(height, width):
    frames = np.random.default_rng(height).integers(0, 256, size=(2, height, width, 3), dtype=np.uint8)
    ours = resize_uint8_bicubic_antialias(frames, 224, 224).numpy().astype(int)
    rows, cols = pil_style_bicubic_matrix(height, 224), pil_style_bicubic_matrix(width, 224)
    exact = rows @ frames.astype(np.float64).transpose(0, 3, 1, 2) @ cols.T  # [F, 3, 224, 224]
    expected = np.clip(exact, 0, 255).round()
    near_tie = np.abs(np.clip(exact, 0, 255) % 1 - 0.5) < 0.01  # float32 rounding may go either way there
    assert ours.dtype == np.int64 and ours.shape == (2, 3, 224, 224)
    assert np.all((ours == expected) | (near_tie & (np.abs(ours - expected) <= 1)))


def test_umt_input_divides_the_uint8_resize_and_normalises():
    frames = np.random.default_rng(7).integers(0, 256, size=(16, 100, 80, 3), dtype=np.uint8)
    picked = resize_uint8_bicubic_antialias(frames[official_umt_indices(16)], 224, 224).double() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]).double(), torch.tensor([0.229, 0.224, 0.225]).double()
    expected = ((picked - mean[:, None, None]) / std[:, None, None])[None]
    torch.testing.assert_close(chronomagic.umt_input(frames, CPU).double(), expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- MTScore


def official_mtscore_tensor(frames: np.ndarray) -> torch.Tensor:
    """configs/utils.py frames2tensor(fnum=4, target_size=(224, 224)) on RGB frames."""
    step = len(frames) // 4
    chosen = list(frames)[::step][:4]
    mean, std = np.array([0.485, 0.456, 0.406]).reshape(1, 1, 3), np.array([0.229, 0.224, 0.225]).reshape(1, 1, 3)
    tube = np.concatenate([np.expand_dims((cv2.resize(f, (224, 224)) / 255.0 - mean) / std, (0, 1)) for f in chosen], 1)
    return torch.from_numpy(np.transpose(tube, (0, 1, 4, 2, 3))).float()


@pytest.mark.parametrize("count", [4, 9, 16, 33])
def test_mtscore_input_is_the_official_tensor(count):
    frames = np.random.default_rng(count).integers(0, 256, size=(count, 90, 130, 3), dtype=np.uint8)
    assert mtscore_indices(count) == list(range(count))[:: count // 4][:4]
    torch.testing.assert_close(chronomagic.mtscore_input(frames), official_mtscore_tensor(frames), rtol=0, atol=1e-6)


def test_mtscore_refuses_fewer_than_four_frames():
    with pytest.raises(EvalError, match="at least 4 frames"):
        mtscore_indices(3)


def test_mtscore_is_the_official_top_five_time_lapse_mass(monkeypatch, checkout):
    """A fake InternVideo2 with fixed embeddings; the official softmax / top-k in torch as the reference."""
    rng = np.random.default_rng(11)
    video_embedding = torch.from_numpy(rng.normal(size=(1, 16))).float()
    text_embeddings = torch.from_numpy(rng.normal(size=(10, 16))).float() * 0.2 + video_embedding * 0.05
    seen = {}

    class InternVideo2:
        def encode_video(self, video):
            seen["video"] = tuple(video.shape)
            return video_embedding

        def encode_text(self, input_ids, attention_mask):
            seen["tokens"] = tuple(input_ids.shape)
            return text_embeddings

    factory = fake_module(monkeypatch, "fake_internvideo2", build=lambda spec: InternVideo2())
    spec = BackendSpec(factory=f"{factory}:build", tokenizer=str(ensure_tiny_extractors()["tokenizer"]))
    descriptions = mtscore_descriptions(str(checkout), None)
    metric = chronomagic.MTScore(spec, CPU, descriptions)
    frames = np.random.default_rng(0).integers(0, 256, size=(16, 64, 64, 3), dtype=np.uint8)
    score = metric.score(VideoItem("v", "p", frames))["score"]
    v = video_embedding / video_embedding.norm(dim=-1, keepdim=True)
    t = text_embeddings / text_embeddings.norm(dim=-1, keepdim=True)
    probs, labels = (100.0 * v @ t.T).softmax(dim=-1).topk(5, dim=-1)
    expected = sum(float(p) for p, i in zip(probs[0], labels[0]) if int(i) >= 5)
    assert score == pytest.approx(expected, abs=1e-6)
    assert seen == {"video": (1, 4, 3, 224, 224), "tokens": (10, 40)}
    assert metric.fingerprint()["leaderboard_comparable"] is True


def test_mtscore_descriptions_come_from_the_checkout_or_are_marked(checkout):
    official = mtscore_descriptions(str(checkout), ["ignored"] * 10)
    assert official == OfficialText(tuple(FAKE_DESCRIPTIONS), str(checkout / "MTScore" / "step0-get_MTScore.py"), True)
    own = mtscore_descriptions(None, FAKE_DESCRIPTIONS[::-1])
    assert own.official is False and own.value == tuple(FAKE_DESCRIPTIONS[::-1])
    with pytest.raises(EvalError, match="chronomagic_repo"):
        mtscore_descriptions(None, None)
    with pytest.raises(EvalError, match="10 descriptions"):
        mtscore_descriptions(None, FAKE_DESCRIPTIONS[:9])
    with pytest.raises(EvalError, match="step0-get_MTScore.py"):
        mtscore_descriptions(str(checkout / "nowhere"), None)


def test_no_official_wording_is_shipped():
    """The metric module holds no description texts of its own (they come from a checkout or the config)."""
    assert not [name for name in vars(chronomagic) if "DESCRIPTION" in name and name != "MT_DESCRIPTION_COUNT"]


# ---------------------------------------------------------------- GPT4o-MTScore (no network)


def official_gpt4o_frames(frames: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    """step0-extract_video_frames.py: indices and the downscale-only area resize."""
    total = len(frames)
    wanted = {0, total - 1} | {i * ((total - 1) // 7) for i in range(1, 7)}
    out = []
    for index in sorted(wanted):
        frame = frames[index]
        h, w = frame.shape[:2]
        if min(h, w) > 256:
            scale = 256 / w if h > w else 256 / h
            frame = cv2.resize(frame, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        out.append(frame)
    return sorted(wanted), out


@pytest.mark.parametrize(("count", "height", "width"), [(16, 512, 512), (30, 300, 700), (9, 700, 301), (8, 120, 90)])
def test_gpt4o_frames_follow_the_official_script(count, height, width):
    frames = np.random.default_rng(count).integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)
    indices, expected = official_gpt4o_frames(frames)
    picked, names = gpt4o_frames(frames, "vid_01")
    assert gpt4o_indices(count) == indices and names == [f"vid_01_frame{i}.png" for i in indices]
    assert len(picked) == 8 and all(np.array_equal(a, b) for a, b in zip(picked, expected))


def test_gpt4o_refuses_videos_the_official_script_skips():
    with pytest.raises(EvalError, match="8 distinct"):
        gpt4o_indices(7)


def test_gpt4o_parser_reads_the_final_score_field():
    reply = 'Brief Reasoning Statement: 3 clouds drift, 2 cars pass; change is significant.\n"Score":{4}'
    assert parse_rating(reply) == 4.0  # not the first digit in the reply
    assert parse_rating('Brief Reasoning Statement: ok\n"Score": 5 ') == 5.0
    assert math.isnan(parse_rating('"Score":{4}'))  # no reasoning line: the official merge drops it
    assert math.isnan(parse_rating("Brief Reasoning Statement: fine\nfour"))


def test_gpt4o_sends_frames_names_and_the_checkout_rubric(checkout):
    received = {}

    def client(frames, names, rubric):
        received.update(frames=len(frames), names=names, rubric=rubric)
        return 'Brief Reasoning Statement: 1 thing.\n"Score":{3}'

    rubric = gpt4o_rubric(str(checkout), None)
    metric = GPT4oMTScore(client, "tests:client", rubric)
    frames = np.zeros((16, 64, 64, 3), np.uint8)
    assert metric.score(VideoItem("abc", "p", frames)) == {"score": 3.0}
    assert received["rubric"] == FAKE_RUBRIC and received["frames"] == 8 and received["names"][0] == "abc_frame0.png"
    assert metric.fingerprint()["leaderboard_comparable"] is True
    assert gpt4o_rubric(None, "my own rubric").official is False
