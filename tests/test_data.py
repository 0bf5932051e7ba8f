"""The data package: decoding, frame sampling, bad input, annotations, images, demo data, latent cache."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image

from seppo_video.config import ConfigError, DataConfig, ModelConfig
from seppo_video.data import (
    CorruptCacheError,
    DataError,
    LatentCacheDataset,
    StaleCacheError,
    build_dataset,
    build_latent_cache,
    collate,
)
from seppo_video.data import skips as reasons
from seppo_video.data import video as video_module
from seppo_video.data.annotations import VideoRecord, read_video_annotations
from seppo_video.data.demo import make_demo_data
from seppo_video.data.images import ImagePreferenceDataset, read_image_pairs
from seppo_video.data.latent_cache import cache_latents_from_config
from seppo_video.data.video import (
    VideoDataset,
    VideoInfo,
    frame_stride,
    probe_video,
    read_frames,
    resize_center_crop,
    sample_indices,
    uniform_indices,
    window_indices,
)
from seppo_video.sample import write_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def isolated_cache(tmp_path_factory):
    """Tiny models and the default demo data go to a private cache folder for this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEPPO_VIDEO_CACHE", str(tmp_path_factory.mktemp("seppo_cache")))
        yield


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return make_demo_data(tmp_path_factory.mktemp("demo") / "demo", num_clips=6, num_frames=16, size=64, seed=0)


@pytest.fixture(scope="module")
def adapter():
    from seppo_video.models.adapters import load_adapter

    return load_adapter(ModelConfig(kind="animatediff", trainable="motion"), configure=False)


def demo_records(demo: Path) -> list[VideoRecord]:
    return read_video_annotations(demo / "annotations.csv", demo / "videos")


def decode_all(path: Path) -> np.ndarray:
    """Every frame through imageio's ffmpeg reader: an expectation independent of the dataset code."""
    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        return np.stack([frame for frame in reader])  # list(reader) trips over its infinite len()


def skip_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping ")]


# ---------------------------------------------------------------- decoding and sampling


def test_decoded_clip_matches_the_frames_in_the_file(demo):
    records = [r for r in demo_records(demo) if r.is_transmit is False]
    dataset = VideoDataset(records, num_frames=4, resolution=64)
    item = dataset[0]
    assert item["id"] == records[0].id and item["prompt"] == records[0].prompt
    assert item["pixels"].shape == (3, 4, 64, 64) and item["pixels"].dtype == torch.float32
    # is_transmit=0: frames 0, 5, 10, 15 of 16; no resize at 64 px, so values are exact.
    frames = decode_all(records[0].path)[[0, 5, 10, 15]]
    expected = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(item["pixels"], expected)
    assert item["pixels"].min() >= -1 and item["pixels"].max() <= 1
    assert item["pixels"].std() > 0.05  # real content, not a constant


def test_resized_clip_has_the_requested_shape(demo):
    dataset = VideoDataset(demo_records(demo)[:2], num_frames=8, resolution=32, frame_stride=2)
    pixels = dataset[1]["pixels"]
    assert pixels.shape == (3, 8, 32, 32)
    assert -1 <= pixels.min() < -0.2 and 0.2 < pixels.max() <= 1


def test_resize_center_crop_keeps_the_centre():
    frame = torch.zeros(1, 3, 32, 64)
    frame[..., 12:52] = 1.0  # the centre 40 columns; the crop keeps columns 16..47
    out = resize_center_crop(frame, 16)
    assert out.shape == (1, 3, 16, 16)
    torch.testing.assert_close(out, torch.ones_like(out))


def test_uniform_sampling_picks_evenly_spaced_frames():
    assert uniform_indices(16, 4).tolist() == [0, 5, 10, 15]
    assert uniform_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert uniform_indices(8, 8).tolist() == list(range(8))
    info = VideoInfo(num_frames=31, fps=8.0)
    rng = np.random.default_rng(0)
    assert sample_indices(info, 4, stride=4, is_transmit=False, rng=rng).tolist() == [0, 10, 20, 30]


def test_strided_window_and_target_fps():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(50):
        indices = window_indices(100, 4, 3, rng)
        assert np.diff(indices).tolist() == [3, 3, 3] and 0 <= indices[0] <= 100 - 10
        starts.add(int(indices[0]))
    assert len(starts) > 10  # the start is random
    # A window longer than the clip shrinks to the clip.
    assert window_indices(7, 4, 4, rng).tolist() == [0, 2, 4, 6]
    assert sample_indices(VideoInfo(13, 8.0), 4, 4, is_transmit=None, rng=rng).tolist() == [0, 4, 8, 12]
    assert frame_stride(VideoInfo(16, 24.0), 4, target_fps=8.0) == 3
    assert frame_stride(VideoInfo(16, 24.0), 4, target_fps=None) == 4


def test_random_windows_are_reproducible_and_change_with_the_epoch(demo):
    records = [r for r in demo_records(demo) if r.is_transmit][:1]
    dataset = VideoDataset(records, num_frames=4, resolution=16, frame_stride=2, seed=3)
    first = dataset[0]["pixels"]
    torch.testing.assert_close(dataset[0]["pixels"], first)
    assert VideoDataset(records, num_frames=4, resolution=16, frame_stride=2, seed=3)[0]["pixels"].equal(first)
    other_epochs = []
    for epoch in range(1, 6):
        dataset.set_epoch(epoch)
        other_epochs.append(dataset[0]["pixels"])
    assert any(not pixels.equal(first) for pixels in other_epochs)


@pytest.mark.skipif(video_module.BACKEND != "decord", reason="compares decord with the imageio fallback")
def test_imageio_fallback_decodes_the_same_frames(demo):
    path = demo_records(demo)[0].path
    assert probe_video(path, backend="imageio").num_frames == probe_video(path, backend="decord").num_frames == 16
    np.testing.assert_array_equal(read_frames(path, [1, 7, 15], backend="imageio"), read_frames(path, [1, 7, 15]))


def test_gif_clips_decode_with_their_frames_and_rate(tmp_path):
    """Neither decord nor ffmpeg-through-imageio reads GIFs; a .gif clip must still train, frame for frame."""
    frames = np.zeros((10, 32, 48, 3), np.uint8)
    for i, frame in enumerate(frames):  # a bar that widens by 4 px a frame: every frame differs
        frame[:, : 4 * (i + 1)] = (200, 40, 10)
    path = tmp_path / "bar.gif"
    pictures = [Image.fromarray(frame) for frame in frames]  # written by Pillow directly, not by our code
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=100, loop=0)

    info = probe_video(path)
    assert (info.num_frames, info.width, info.height, info.fps) == (10, 48, 32, 10.0)
    np.testing.assert_array_equal(read_frames(path, [0, 3, 9]), frames[[0, 3, 9]])
    item = VideoDataset([VideoRecord("bar", "a widening bar", path, is_transmit=False)], num_frames=4,
                        resolution=32)[0]
    expected = frames[[0, 3, 6, 9]][:, :, 8:40]  # uniform over the clip; centre crop to 32 x 32
    torch.testing.assert_close(item["pixels"], torch.from_numpy(expected).permute(3, 0, 1, 2).float() / 127.5 - 1)
    with pytest.raises(ValueError, match="frames \\[10\\]"):
        read_frames(path, [2, 10])


# ---------------------------------------------------------------- bad input


@pytest.fixture()
def messy(demo, tmp_path) -> tuple[list[VideoRecord], dict[str, Path]]:
    """Six good clips and six bad records, one of each kind of bad input."""
    good = demo_records(demo)
    source = good[0].path.read_bytes()
    bad = {
        "corrupt": tmp_path / "corrupt.mp4",
        "zero": tmp_path / "zero.mp4",
        "truncated": tmp_path / "truncated.mp4",
        "short": tmp_path / "short.mp4",
        "missing": tmp_path / "missing.mp4",
    }
    bad["corrupt"].write_bytes(np.random.default_rng(0).bytes(4000))
    bad["zero"].write_bytes(b"")
    bad["truncated"].write_bytes(source[: len(source) // 2])
    write_video(decode_all(good[0].path)[:3], bad["short"], fps=8)
    records = list(good)
    records += [VideoRecord(id=name, prompt=f"clip {name}", path=path) for name, path in bad.items()]
    records.append(VideoRecord(id="uncaptioned", prompt="", path=good[1].path))
    return records, bad


def test_each_kind_of_bad_input_is_skipped_once_and_counted(messy, caplog):
    records, bad = messy
    with caplog.at_level(logging.WARNING, logger="seppo_video.data"):
        dataset = VideoDataset(records, num_frames=8, resolution=32, max_bad_fraction=0.5, source="messy.csv")
    assert len(dataset) == 6
    assert set(dataset.ids) == {r.id for r in records[:6]}
    truncated_reason = dataset.skips.counts.copy()
    expected = Counter(
        {
            reasons.CORRUPT_FILE: 1,
            reasons.EMPTY_FILE: 1,
            reasons.TOO_SHORT: 1,
            reasons.MISSING_FILE: 1,
            reasons.EMPTY_CAPTION: 1,
        }
    )
    truncated_reason.subtract(expected)
    # decord rejects a cut mp4 when opening it; the imageio fallback sees too few frames.
    assert +truncated_reason in (Counter({reasons.CORRUPT_FILE: 1}), Counter({reasons.TOO_SHORT: 1}))
    lines = skip_lines(caplog)
    assert len(lines) == 6
    for path in bad.values():
        assert sum(str(path) in line for line in lines) == 1
    assert sum("empty caption" in line for line in lines) == 1
    assert "skipped 6 of 12" in dataset.skips.summary()
    assert all(dataset[i]["pixels"].shape == (3, 8, 32, 32) for i in range(len(dataset)))


def test_decode_failure_after_the_probe_is_skipped_and_replaced(demo, tmp_path, caplog):
    records = []
    for record in demo_records(demo)[:3]:
        copy = tmp_path / record.path.name
        shutil.copy(record.path, copy)
        records.append(VideoRecord(record.id, record.prompt, copy, record.is_transmit))
    dataset = VideoDataset(records, num_frames=4, resolution=16, max_bad_fraction=0.5)
    records[1].path.write_bytes(np.random.default_rng(1).bytes(3000))  # breaks after the probe
    with caplog.at_level(logging.WARNING, logger="seppo_video.data"):
        assert dataset[1]["id"] == records[2].id
        assert dataset[1]["id"] == records[2].id
    assert dataset.skips.counts == Counter({reasons.DECODE_FAILED: 1})
    assert len(skip_lines(caplog)) == 1 and str(records[1].path) in skip_lines(caplog)[0]


def test_too_much_bad_data_raises(demo, tmp_path):
    records = demo_records(demo)[:1] + [
        VideoRecord(f"gone{i}", "a caption", tmp_path / f"gone{i}.mp4") for i in range(3)
    ]
    with pytest.raises(DataError, match=r"3 of 4 records are unusable.*max_bad_fraction=0.2.*3 missing file"):
        VideoDataset(records, num_frames=4, resolution=16, max_bad_fraction=0.2)


def test_pairs_need_losers(demo, tmp_path):
    no_losers = [VideoRecord(r.id, r.prompt, r.path) for r in demo_records(demo)]
    with pytest.raises(DataError, match="loser"):
        VideoDataset(no_losers, num_frames=4, resolution=16, pairs=True)
    item = VideoDataset(demo_records(demo)[:2], num_frames=4, resolution=16, pairs=True)[0]
    assert item["loser_pixels"].shape == item["pixels"].shape
    assert not item["loser_pixels"].equal(item["pixels"])


# ---------------------------------------------------------------- annotations


def test_csv_json_and_jsonl_annotations_give_the_same_records(tmp_path):
    rows = [
        {"videoid": "a01", "name": "ice melting, time-lapse", "is_transmit": 0, "loser": "a01_bad"},
        {"videoid": "b02", "name": "clouds drifting, time-lapse", "is_transmit": 1, "loser": ""},
    ]
    with (tmp_path / "ann.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # The same data under the other accepted column names.
    json_rows = [
        {"path": f"{r['videoid']}.mp4", "caption": r["name"], "is_transmit": bool(r["is_transmit"])} for r in rows
    ]
    for json_row, row in zip(json_rows, rows, strict=True):
        json_row["loser"] = row["loser"]
    (tmp_path / "ann.json").write_text(json.dumps(json_rows))
    jsonl_rows = [
        {"video": f"{r['videoid']}.mp4", "text": r["name"], "is_transmit": f"{r['is_transmit']}"} for r in rows
    ]
    jsonl_rows[0]["loser"] = "a01_bad.mp4"
    (tmp_path / "ann.jsonl").write_text("".join(json.dumps(r) + "\n" for r in jsonl_rows))
    videos = tmp_path / "videos"
    expected = [
        VideoRecord("a01", "ice melting, time-lapse", videos / "a01.mp4", False, videos / "a01_bad.mp4"),
        VideoRecord("b02", "clouds drifting, time-lapse", videos / "b02.mp4", True, None),
    ]
    for name in ("ann.csv", "ann.json", "ann.jsonl"):
        assert read_video_annotations(tmp_path / name, videos) == expected, name


def test_annotations_without_an_id_or_caption_column_are_refused(tmp_path):
    (tmp_path / "no_id.csv").write_text("clip,name\nx,a caption\n")
    with pytest.raises(DataError, match=r"no_id\.csv: no video id/path column .*'videoid'.*found: clip, name"):
        read_video_annotations(tmp_path / "no_id.csv")
    (tmp_path / "no_caption.jsonl").write_text('{"videoid": "x", "label": 1}\n')
    with pytest.raises(DataError, match=r"no_caption\.jsonl: no caption column"):
        read_video_annotations(tmp_path / "no_caption.jsonl")


def test_example_annotation_files_parse():
    records = read_video_annotations(REPO / "data" / "chronomagic_train_example.csv", "/videos")
    assert len(records) == 5 and records[0].path == Path("/videos/example_ice_melting_0001.mp4")
    assert [r.is_transmit for r in records] == [False, False, True, False, True]
    pairs = read_image_pairs(REPO / "data" / "pickapic_example.jsonl")
    assert [p.label_0 for p in pairs] == [1.0, 0.0, 0.5] and pairs[0].prompt.startswith("a lighthouse")


# ---------------------------------------------------------------- images

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255)}


def png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), COLOURS[colour]).save(buffer, format="PNG")
    return buffer.getvalue()


# caption, image 0, image 1, label_0: the winner is image 0 when label_0 == 1.
PAIRS = [
    ("a red square", "red", "blue", 1.0),
    ("a green square", "white", "green", 0.0),
    ("a tie", "red", "green", 0.5),
    ("a blue square", "blue", "white", 1.0),
]


@pytest.fixture()
def pickapic(tmp_path) -> dict[str, Path]:
    """The same pairs as JSONL with image files and as parquet with image bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "images").mkdir()
    lines = []
    for n, (caption, first, second, label) in enumerate(PAIRS):
        for k, colour in enumerate((first, second)):
            (tmp_path / "images" / f"{n}_{k}.png").write_bytes(png(colour))
        record = {"ranking_id": n, "caption": caption, "jpg_0": f"images/{n}_0.png", "jpg_1": f"images/{n}_1.png"}
        lines.append(json.dumps({**record, "label_0": label}))
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    table = pa.table(
        {
            "ranking_id": [n for n in range(len(PAIRS))],
            "caption": [p[0] for p in PAIRS],
            "jpg_0": [png(p[1]) for p in PAIRS],
            "jpg_1": [png(p[2]) for p in PAIRS],
            "label_0": [p[3] for p in PAIRS],
        }
    )
    pq.write_table(table, tmp_path / "pairs.parquet")
    return {"jsonl": tmp_path / "pairs.jsonl", "parquet": tmp_path / "pairs.parquet"}


def solid(colour: str, size: int = 8) -> torch.Tensor:
    return (torch.tensor(COLOURS[colour], dtype=torch.float32) / 127.5 - 1).view(3, 1, 1, 1).expand(3, 1, size, size)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_pickapic_winners_only_and_pairs_drop_ties(pickapic, fmt):
    pairs = read_image_pairs(pickapic[fmt])
    winners = ImagePreferenceDataset(pairs, resolution=8, keep="winners")
    assert winners.num_ties == 1 and len(winners) == 3
    assert winners.prompts == ["a red square", "a green square", "a blue square"]
    for i, colour in enumerate(["red", "green", "blue"]):
        item = winners[i]
        assert "loser_pixels" not in item
        torch.testing.assert_close(item["pixels"], solid(colour))
    both = ImagePreferenceDataset(pairs, resolution=8, keep="pairs")
    assert len(both) == 3
    for i, (winner, loser) in enumerate([("red", "blue"), ("green", "white"), ("blue", "white")]):
        torch.testing.assert_close(both[i]["pixels"], solid(winner))
        torch.testing.assert_close(both[i]["loser_pixels"], solid(loser))


def test_unreadable_images_are_skipped_and_counted(pickapic, caplog):
    import dataclasses

    pairs = read_image_pairs(pickapic["jsonl"])
    broken = [
        dataclasses.replace(pairs[0], images=(np.random.default_rng(0).bytes(500), pairs[0].images[1])),
        dataclasses.replace(pairs[1], images=(pairs[1].images[0], Path("/nonexistent/x.png"))),
        *pairs[2:],
    ]
    with caplog.at_level(logging.WARNING, logger="seppo_video.data"):
        dataset = ImagePreferenceDataset(broken, resolution=8, max_bad_fraction=0.5)
    assert dataset.prompts == ["a blue square"]
    assert dataset.skips.counts == Counter({reasons.CORRUPT_FILE: 1, reasons.MISSING_FILE: 1})
    assert len(skip_lines(caplog)) == 2
    with pytest.raises(DataError, match="2 of 4"):
        ImagePreferenceDataset(broken, resolution=8, max_bad_fraction=0.25)


# ---------------------------------------------------------------- demo data and builders


def test_demo_data_is_deterministic(tmp_path):
    a = make_demo_data(tmp_path / "a", num_clips=3, num_frames=6, size=32, seed=1)
    b = make_demo_data(tmp_path / "b", num_clips=3, num_frames=6, size=32, seed=1)
    c = make_demo_data(tmp_path / "c", num_clips=3, num_frames=6, size=32, seed=2)
    assert (a / "annotations.csv").read_text() == (b / "annotations.csv").read_text()
    assert (a / "pickapic.jsonl").read_text() == (b / "pickapic.jsonl").read_text()
    with (a / "annotations.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["videoid", "name", "is_transmit", "loser"]
    assert all(r["name"].endswith("time-lapse") for r in rows)
    for row in rows:
        clip = decode_all(a / "videos" / f"{row['videoid']}.mp4")
        assert clip.shape == (6, 32, 32, 3)
        np.testing.assert_array_equal(clip, decode_all(b / "videos" / f"{row['videoid']}.mp4"))
        assert np.abs(clip[-1].astype(int) - clip[0]).mean() > 5  # something changes over time
        assert (a / "videos" / f"{row['loser']}.mp4").is_file()
    first_c = decode_all(c / "videos" / f"{rows[0]['videoid']}.mp4")
    assert not np.array_equal(decode_all(a / "videos" / f"{rows[0]['videoid']}.mp4"), first_c)


def test_build_dataset_demo_video_and_image():
    videos = build_dataset(DataConfig(kind="demo", num_frames=8, resolution=32), ModelConfig(kind="animatediff"), pairs=False)
    assert isinstance(videos, VideoDataset) and len(videos) == 12
    batch = collate([videos[0], videos[1]])
    assert batch["pixels"].shape == (2, 3, 8, 32, 32) and "loser_pixels" not in batch
    assert isinstance(batch["prompt"], list) and len(batch["id"]) == 2
    images = build_dataset(DataConfig(kind="demo", num_frames=1, resolution=32), ModelConfig(kind="sd"), pairs=True)
    assert isinstance(images, ImagePreferenceDataset) and images.num_ties == 4 and len(images) == 8
    assert collate([images[0]])["loser_pixels"].shape == (1, 3, 1, 32, 32)
    # Image data without annotations falls back to the demo pairs; video data never does.
    assert build_dataset(DataConfig(kind="image", num_frames=1), ModelConfig(kind="sd"), pairs=False).prompts == images.prompts
    with pytest.raises(ConfigError, match="data.annotations"):
        build_dataset(DataConfig(kind="video"), ModelConfig(kind="animatediff"), pairs=False)
    with pytest.raises(ConfigError, match="data.num_frames"):
        build_dataset(DataConfig(kind="demo", num_frames=32), ModelConfig(kind="animatediff"), pairs=False)


def test_collate_refuses_mixed_items():
    with pytest.raises(ValueError, match="disagree"):
        collate([{"pixels": torch.zeros(1)}, {"pixels": torch.zeros(1), "loser_pixels": torch.zeros(1)}])


# ---------------------------------------------------------------- latent cache


@pytest.fixture(scope="module")
def small_clips(demo) -> VideoDataset:
    return VideoDataset(demo_records(demo)[:3], num_frames=4, resolution=32, pairs=True)


@pytest.fixture(scope="module")
def cache(small_clips, adapter, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("latents") / "cache"
    return build_latent_cache(small_clips, adapter, out, model_id="tiny:animatediff", batch_size=2, shard_size=2)


def test_latent_cache_holds_the_encoded_items(cache, small_clips, adapter):
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["num_items"] == 3 and len(manifest["shards"]) == 2
    assert manifest["ids"] == small_clips.ids and manifest["prompts"] == small_clips.prompts
    loaded = LatentCacheDataset(cache, model_id="tiny:animatediff", resolution=32, num_frames=4)
    assert len(loaded) == 3
    for i in range(3):
        item, pixels = loaded[i], small_clips[i]
        assert item["id"] == pixels["id"] and item["prompt"] == pixels["prompt"]
        assert item["latents"].shape == (4, 4, 8, 8)  # the tiny VAE downsamples by 4
        torch.testing.assert_close(item["latents"], adapter.encode_video(pixels["pixels"][None])[0])
        torch.testing.assert_close(item["loser_latents"], adapter.encode_video(pixels["loser_pixels"][None])[0])
        torch.testing.assert_close(item["prompt_embeds"], adapter.encode_prompt([pixels["prompt"]])[0])
    assert collate([loaded[0], loaded[1]])["latents"].shape == (2, 4, 4, 8, 8)


class RefusingAdapter:
    def encode_video(self, pixels):
        raise AssertionError("an up-to-date cache must not be encoded again")

    encode_prompt = encode_video


def test_an_up_to_date_cache_is_reused(cache, small_clips, adapter):
    before = {p.name: p.read_bytes() for p in cache.iterdir()}
    assert build_latent_cache(small_clips, RefusingAdapter(), cache, model_id="tiny:animatediff") == cache
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before
    # Another frame stride is another data set: the cache is rebuilt.
    restrided = VideoDataset(demo_records_of(small_clips), num_frames=4, resolution=32, frame_stride=1, pairs=True)
    with pytest.raises(AssertionError, match="must not be encoded"):
        build_latent_cache(restrided, RefusingAdapter(), cache, model_id="tiny:animatediff")
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before  # a failed build leaves it untouched


def demo_records_of(dataset: VideoDataset) -> list[VideoRecord]:
    return [clip.record for clip in dataset.clips]


@pytest.mark.parametrize(
    ("change", "named"),
    [({"resolution": 64}, "resolution"), ({"model_id": "sd:/x"}, "model_id"), ({"num_frames": 8}, "num_frames")],
)
def test_a_stale_cache_is_refused(cache, change, named):
    settings = {"model_id": "tiny:animatediff", "resolution": 32, "num_frames": 4, **change}
    with pytest.raises(StaleCacheError, match=rf"{named} .*cache-latents"):
        LatentCacheDataset(cache, **settings)


def test_a_corrupted_shard_is_refused(cache, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(cache, damaged)
    shard = damaged / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptCacheError, match=r"shard-00001\.safetensors .*checksum.*cache-latents"):
        LatentCacheDataset(damaged, model_id="tiny:animatediff", resolution=32, num_frames=4)


def test_build_dataset_uses_the_cache(cache):
    config = DataConfig(num_frames=4, resolution=32, latent_cache=str(cache))
    dataset = build_dataset(config, ModelConfig(kind="animatediff"), pairs=True)
    assert isinstance(dataset, LatentCacheDataset)
    with pytest.raises(StaleCacheError):
        build_dataset(config, ModelConfig(kind="modelscope"), pairs=False)


def test_cache_latents_from_config_then_train_from_it(tmp_path):
    from seppo_video.config import load_config

    config = load_config(None, ["data.num_frames=4", "data.resolution=32", f"data.latent_cache={tmp_path / 'c'}"])
    out = cache_latents_from_config(config, None)
    assert out == tmp_path / "c"
    dataset = build_dataset(config.data, config.model, pairs=False)
    assert isinstance(dataset, LatentCacheDataset) and len(dataset) == 12
    assert "loser_latents" not in dataset[0]
    with pytest.raises(DataError, match="no loser latents"):
        build_dataset(config.data, config.model, pairs=True)
