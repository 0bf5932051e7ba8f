"""A small synthetic time-lapse data set, so every path runs without downloads.

Clips are drawn with numpy: things that change a lot over the clip, as in
ChronoMagic (a shape growing, a sky going from day to night, ice melting, a
plant growing, clouds drifting, a flower opening). Each clip also gets a
degraded twin as its Diffusion-DPO loser: frozen (the time-lapse does not
happen) or jittered with noise. The layout is the one real data uses:

    out/videos/<videoid>.mp4, out/videos/<videoid>_loser.mp4
    out/annotations.csv        videoid,name,is_transmit,loser (ChronoMagic columns + loser)
    out/images/*.jpg, out/pickapic.jsonl   Pick-a-Pic style pairs (caption, jpg_0, jpg_1, label_0)
    out/demo.json              the parameters, written last
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from seppo_video.atomic import atomic_directory
from seppo_video.models.tiny import default_cache_dir

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.15, 0.1),
    "blue": (0.15, 0.3, 0.9),
    "yellow": (0.95, 0.85, 0.1),
    "purple": (0.6, 0.2, 0.8),
    "golden": (1.0, 0.75, 0.2),
    "pink": (1.0, 0.5, 0.7),
}
FPS = 8

Grid = tuple[np.ndarray, np.ndarray]  # y, x in [0, 1], shape [H, W]
Scene = Callable[[float, Grid, np.ndarray, np.random.Generator], np.ndarray]


def _disk(grid: Grid, cy: float, cx: float, radius: float) -> np.ndarray:
    """Soft-edged disk mask ``[H, W]`` in [0, 1]."""
    y, x = grid
    distance = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    return np.clip((radius - distance) * 40 + 0.5, 0, 1)


def _paint(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return canvas * (1 - mask[..., None]) + colour * mask[..., None]


def _growing_circle(t: float, grid: Grid, colour: np.ndarray, _rng: np.random.Generator) -> np.ndarray:
    canvas = np.ones(grid[0].shape + (3,)) * 0.95
    return _paint(canvas, _disk(grid, 0.5, 0.5, 0.05 + 0.4 * t), colour)


def _day_to_night(t: float, grid: Grid, _colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    y, _ = grid
    day, night = np.array([0.45, 0.7, 1.0]), np.array([0.03, 0.03, 0.15])
    sky = (1 - t) * day + t * night
    canvas = sky * (1.1 - 0.3 * y[..., None])
    canvas = _paint(canvas, _disk(grid, 0.2 + 0.7 * t, 0.7, 0.1), np.array([1.0, 0.9 - 0.5 * t, 0.3]))
    stars = (rng.random(y.shape) > 0.985) * max(0.0, 2 * t - 1)
    return _paint(canvas, stars, np.ones(3))


def _melting_ice(t: float, grid: Grid, _colour: np.ndarray, _rng: np.random.Generator) -> np.ndarray:
    y, x = grid
    canvas = np.broadcast_to(np.array([0.35, 0.25, 0.2]), y.shape + (3,)).copy()
    height, half_width = 0.5 * (1 - t) + 0.04, 0.2 + 0.25 * t
    block = (y > 0.9 - height) & (y < 0.9) & (np.abs(x - 0.5) < half_width)
    return _paint(canvas, block.astype(float), np.array([0.8, 0.92, 1.0]))


def _growing_plant(t: float, grid: Grid, colour: np.ndarray, _rng: np.random.Generator) -> np.ndarray:
    y, x = grid
    canvas = np.broadcast_to(np.array([0.75, 0.88, 1.0]), y.shape + (3,)).copy()
    canvas = _paint(canvas, (y > 0.8).astype(float), np.array([0.4, 0.25, 0.1]))
    top = 0.8 - 0.65 * t
    stem = (np.abs(x - 0.5) < 0.025) & (y > top) & (y <= 0.8)
    canvas = _paint(canvas, stem.astype(float), np.array([0.1, 0.6, 0.15]))
    leaf = np.maximum(_disk(grid, top + 0.05, 0.43, 0.06 * t), _disk(grid, top + 0.05, 0.57, 0.06 * t))
    return _paint(_paint(canvas, leaf, np.array([0.2, 0.75, 0.2])), _disk(grid, top, 0.5, 0.07 * t**2), colour)


def _drifting_clouds(t: float, grid: Grid, _colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    y, x = grid
    canvas = np.broadcast_to(np.array([0.3, 0.55, 0.95]), y.shape + (3,)).copy()
    # The generator is re-seeded per frame by the caller, so cloud positions are shared by all frames.
    for cy, cx, speed in rng.random((4, 3)):
        centre = (cx - 0.3 + (0.4 + speed) * t) % 1.3 - 0.15
        cloud = np.exp(-(((x - centre) / 0.15) ** 2 + ((y - 0.15 - 0.5 * cy) / 0.07) ** 2))
        canvas = _paint(canvas, np.clip(cloud * 1.5, 0, 1), np.ones(3))
    return canvas


def _blooming_flower(t: float, grid: Grid, colour: np.ndarray, _rng: np.random.Generator) -> np.ndarray:
    y, x = grid
    canvas = np.broadcast_to(np.array([0.2, 0.45, 0.2]), y.shape + (3,)).copy()
    angle, radius = np.arctan2(y - 0.5, x - 0.5), np.sqrt((y - 0.5) ** 2 + (x - 0.5) ** 2)
    petals = (radius < (0.08 + 0.32 * t) * (0.6 + 0.4 * np.abs(np.cos(2.5 * angle)))).astype(float)
    return _paint(_paint(canvas, petals, colour), _disk(grid, 0.5, 0.5, 0.06), np.array([0.95, 0.8, 0.1]))


SCENES: dict[str, tuple[Scene, str]] = {
    "growing_circle": (_growing_circle, "a {colour} circle growing on a white background, time-lapse"),
    "day_to_night": (_day_to_night, "the sky turning from day to night as the sun sets, time-lapse"),
    "melting_ice": (_melting_ice, "a block of ice melting into a puddle on a table, time-lapse"),
    "growing_plant": (_growing_plant, "a plant growing from the soil and opening a {colour} bud, time-lapse"),
    "drifting_clouds": (_drifting_clouds, "white clouds drifting across a blue sky, time-lapse"),
    "blooming_flower": (_blooming_flower, "a {colour} flower blooming, time-lapse"),
}


def render_clip(scene: str, colour: str, num_frames: int, size: int, seed: int) -> np.ndarray:
    """One clip ``uint8 [F, size, size, 3]``; the scene's randomness is fixed per clip."""
    draw = SCENES[scene][0]
    axis = np.linspace(0, 1, size)
    grid = np.meshgrid(axis, axis, indexing="ij")
    frames = [
        draw(t, grid, np.array(COLOURS[colour]), np.random.default_rng(seed)) for t in np.linspace(0, 1, num_frames)
    ]
    return (np.clip(np.stack(frames), 0, 1) * 255).round().astype(np.uint8)


def degrade(frames: np.ndarray, index: int, rng: np.random.Generator) -> np.ndarray:
    """A worse clip for the same caption: frozen (nothing happens) or buried in noise."""
    if index % 2 == 0:
        frozen = np.repeat(frames[len(frames) // 2][None], len(frames), axis=0)
        return np.clip(frozen.astype(int) + rng.integers(-6, 7, frozen.shape), 0, 255).astype(np.uint8)
    return np.clip(frames.astype(int) + rng.integers(-70, 71, frames.shape), 0, 255).astype(np.uint8)


def make_demo_data(
    out: str | Path,
    num_clips: int = 12,
    num_frames: int = 16,
    size: int = 64,
    seed: int = 0,
    *,
    overwrite: bool = True,
) -> Path:
    """Write the demo data set to ``out`` atomically (deterministic given the arguments)."""
    from seppo_video.data.video import write_video

    if num_clips < 1 or num_frames < 2 or size < 8:
        raise ValueError("make_demo_data needs num_clips >= 1, num_frames >= 2 and size >= 8")
    size -= size % 2  # H.264 yuv420p needs even sizes
    out, rng = Path(out), np.random.default_rng(seed)
    rows, pairs = [], []
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for index in range(num_clips):
            scene = list(SCENES)[index % len(SCENES)]
            colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
            videoid, caption = f"{scene}_{index:03d}", SCENES[scene][1].format(colour=colour)
            frames = render_clip(scene, colour, num_frames, size, seed * 1000 + index)
            loser = degrade(frames, index, rng)
            write_video(frames, tmp / "videos" / f"{videoid}.mp4", fps=FPS)
            write_video(loser, tmp / "videos" / f"{videoid}_loser.mp4", fps=FPS)
            rows.append({"videoid": videoid, "name": caption, "is_transmit": index % 2, "loser": f"{videoid}_loser"})
            pairs.append(_image_pair(tmp, videoid, caption, frames[-1], loser[-1], index))
        _write_csv(tmp / "annotations.csv", rows)
        (tmp / "pickapic.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
        params = {"num_clips": num_clips, "num_frames": num_frames, "size": size, "seed": seed}
        (tmp / "demo.json").write_text(json.dumps(params))
    return out


def _image_pair(root: Path, videoid: str, caption: str, good: np.ndarray, bad: np.ndarray, index: int) -> dict:
    """A Pick-a-Pic record; labels cycle through 1, 0 and 0.5 (a tie) so all cases occur."""
    label_0 = (1.0, 0.0, 0.5)[index % 3]
    first, second = (good, bad) if label_0 != 0.0 else (bad, good)
    names = [f"images/{videoid}_0.jpg", f"images/{videoid}_1.jpg"]
    (root / "images").mkdir(exist_ok=True)
    for name, image in zip(names, (first, second), strict=True):
        Image.fromarray(image).save(root / name, quality=95)
    return {"ranking_id": videoid, "caption": caption, "jpg_0": names[0], "jpg_1": names[1], "label_0": label_0}


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def ensure_demo_data() -> Path:
    """The default demo data set under the cache folder, built on first use."""
    path = default_cache_dir() / "demo_data"
    if not (path / "demo.json").exists():
        try:
            make_demo_data(path, overwrite=False)
        except FileExistsError:  # another process finished first, or a stray folder is in the way
            if not (path / "demo.json").exists():
                make_demo_data(path)
    return path
