"""Video clips as model input: decode, sample frames, resize, crop, scale.

Decoding uses decord (fast seeking); where decord is not installed or its
native library fails to load (it has no wheels for every platform), the
imageio-ffmpeg reader is used instead, which decodes sequentially. Neither
reads GIFs, so those go through imageio's Pillow plugin (whole file at once:
GIFs are short).

Frame sampling follows MagicTime's ChronoMagic loader: ``is_transmit = 0``
spreads the F frames evenly over the whole clip (the whole transformation
is seen); ``1`` (or no ``is_transmit`` column) takes F frames ``stride`` apart
from a random start. A window longer than the clip shrinks to the clip, so a
clip is usable as long as it has F distinct frames. Randomness comes from a
generator seeded by (seed, epoch, index): a run and its resume see the same
windows.
"""

from __future__ import annotations

import faulthandler
import math
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from seppo_video.data.annotations import VideoRecord
from seppo_video.data.skips import (
    CORRUPT_FILE,
    DECODE_FAILED,
    DUPLICATE_ID,
    EMPTY_FILE,
    FRAME_TOO_LARGE,
    MISSING_FILE,
    NO_LOSER,
    TOO_SHORT,
    DataError,
    SkipLog,
    SkippingDataset,
    caption_problem,
)

# Frames above this many pixels (4096 x 4096) are refused at the probe: decoding
# F of them would take gigabytes, and a forged header can claim any size.
MAX_FRAME_PIXELS = 4096 * 4096


def _import_decord() -> Any:
    try:
        import decord
    except Exception:  # absent, or present with a native library that fails to load
        return None
    # Bad files are reported by SkipLog, one line each; decord/ffmpeg's own
    # multi-line native logging would only bury those lines.
    decord.logging.set_level(decord.logging.QUIET)
    return decord


_DECORD = _import_decord()
BACKEND: str = "decord" if _DECORD is not None else "imageio"


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int = 0  # 0: not known
    height: int = 0


def probe_video(path: str | Path, backend: str | None = None) -> VideoInfo:
    """Frame count, frame rate and frame size; raises on a file that cannot be opened.

    decord indexes every packet when it opens a file, so a truncated mp4
    already fails here; it reports no frame size, so the first frame is
    decoded for it.
    """
    if _is_gif(path):
        return _probe_gif(path)
    if (backend or BACKEND) == "decord":
        reader = _DECORD.VideoReader(str(path), num_threads=1)
        height, width = reader[0].shape[:2] if len(reader) else (0, 0)
        return VideoInfo(len(reader), float(reader.get_avg_fps()), width, height)
    import imageio.v2 as imageio

    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        meta = reader.get_meta_data()
        width, height = meta.get("size") or (0, 0)
        return VideoInfo(reader.count_frames(), float(meta.get("fps") or 0.0), width, height)


def probe_videos(paths: Sequence[Path], chunk: int = 64) -> list[VideoInfo | str]:
    """``probe_video`` for each path, in child processes: a ``VideoInfo``, or why the file is unusable.

    A malformed header can make decord's native code abort the whole process
    (``std::bad_alloc`` on a forged sample table), which no ``except`` can
    catch. In a forked child that costs only the child; a chunk whose child
    dies is probed again one file per child, which names the culprit.
    """
    results: list[VideoInfo | str] = []
    starts = range(0, len(paths), chunk)
    for start in tqdm(starts, desc="checking videos", unit="chunk", disable=len(starts) < 8):
        part = list(paths[start : start + chunk])
        probed = _probe_in_child(part)
        if probed is None:
            probed = [(_probe_in_child([path]) or ["the decoder crashed the process reading it"])[0] for path in part]
        results += probed
    return results


def _probe_in_child(paths: list[Path]) -> list[VideoInfo | str] | None:
    """Results from a forked child, or None when it died (or in-process where fork is unavailable)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return [_probe_or_reason(path) for path in paths]
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_send_probes, args=(paths, sender), daemon=True)
    child.start()
    sender.close()  # the child's end: once it exits, recv() sees EOF instead of blocking
    try:
        return receiver.recv()
    except EOFError:
        return None
    finally:
        child.join()
        receiver.close()


def _send_probes(paths: list[Path], sender) -> None:
    faulthandler.disable()  # an abort here is handled by the parent: no Python traceback dump
    sender.send([_probe_or_reason(path) for path in paths])
    sender.close()


def _probe_or_reason(path: Path) -> VideoInfo | str:
    try:
        return probe_video(path)
    except Exception as err:  # decord/ffmpeg raise several unrelated types for bad files
        return _first_line(err)


def read_frames(path: str | Path, indices: Sequence[int], backend: str | None = None) -> np.ndarray:
    """The frames at ``indices`` as ``uint8 [F, H, W, 3]``."""
    indices = [int(i) for i in indices]
    if _is_gif(path):
        return _read_gif_frames(path, indices)
    if (backend or BACKEND) == "decord":
        reader = _DECORD.VideoReader(str(path), num_threads=1)
        return reader.get_batch(indices).asnumpy()
    import imageio.v2 as imageio

    wanted, last = set(indices), max(indices)
    kept: dict[int, np.ndarray] = {}
    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        for i, frame in enumerate(reader):
            if i in wanted:
                kept[i] = frame
            if i >= last:
                break
    missing = wanted - kept.keys()
    if missing:
        raise ValueError(f"{path}: frames {sorted(missing)} could not be decoded")
    return np.stack([kept[i] for i in indices])


def _is_gif(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".gif"


def _probe_gif(path: str | Path) -> VideoInfo:
    import imageio.v3 as iio

    num_frames, height, width = iio.improps(path, index=None).shape[:3]
    frame_ms = iio.immeta(path).get("duration") or 0  # GIFs store a per-frame delay, not a rate
    return VideoInfo(num_frames, 1000.0 / frame_ms if frame_ms else 0.0, width, height)


def _read_gif_frames(path: str | Path, indices: list[int]) -> np.ndarray:
    import imageio.v3 as iio

    frames = iio.imread(path, index=None, mode="RGB")  # palette frames come back as RGB
    missing = sorted(i for i in set(indices) if not 0 <= i < len(frames))
    if missing:
        raise ValueError(f"{path}: frames {missing} could not be decoded")
    return frames[indices]


# ---------------------------------------------------------------- frame sampling


def uniform_indices(num_available: int, num_frames: int) -> np.ndarray:
    """``num_frames`` indices spread evenly from the first to the last frame (rounded)."""
    return np.linspace(0, num_available - 1, num_frames).round().astype(np.int64)


def window_indices(num_available: int, num_frames: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """``num_frames`` indices ``stride`` apart from a random start (shrunk to fit a short clip)."""
    span = min(num_available, (num_frames - 1) * stride + 1)
    start = int(rng.integers(0, num_available - span + 1))
    return start + uniform_indices(span, num_frames)


def frame_stride(info: VideoInfo, stride: int, target_fps: float | None) -> int:
    """The stride that resamples the clip to ``target_fps`` when set (and the rate is known)."""
    if target_fps and info.fps > 0 and math.isfinite(info.fps):
        return max(1, round(info.fps / target_fps))
    return stride


def sample_indices(
    info: VideoInfo,
    num_frames: int,
    stride: int,
    is_transmit: bool | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """MagicTime's rule: ``is_transmit=0`` uniform over the clip, otherwise a strided window."""
    if is_transmit is False:
        return uniform_indices(info.num_frames, num_frames)
    return window_indices(info.num_frames, num_frames, stride, rng)


# ---------------------------------------------------------------- pixels


def resize_center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``[N, C, H, W]`` so the short side is ``size``, then crop the centre square."""
    height, width = frames.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return frames[..., top : top + size, left : left + size]


def to_model_pixels(frames: np.ndarray, resolution: int) -> torch.Tensor:
    """``uint8 [F, H, W, 3]`` to the models' input ``float [3, F, res, res]`` in [-1, 1]."""
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    pixels = resize_center_crop(pixels, resolution) / 127.5 - 1.0
    return pixels.clamp(-1.0, 1.0).permute(1, 0, 2, 3).contiguous()


# ---------------------------------------------------------------- dataset


@dataclass(frozen=True)
class _Clip:
    record: VideoRecord
    info: VideoInfo
    loser_info: VideoInfo | None


class VideoDataset(SkippingDataset):
    """Annotated clips as ``{"id", "prompt", "pixels" [3, F, H, W], ("loser_pixels")}``.

    Where bad input is caught: at construction every record is checked with
    a cheap metadata probe (file exists, non-empty, opens, has at least
    ``num_frames`` frames; caption non-empty), so nearly all bad files are
    found, logged once and counted before training starts, and a data set
    that is mostly bad fails at once with ``DataError``. A file that passes
    the probe but fails to decode later is caught in ``__getitem__``: it is
    logged, counted, never tried again, and the next good index is returned
    instead, so a DataLoader never crashes mid-run. With ``num_workers > 0``
    such late failures are counted in the worker process that met them.

    ``pairs=True`` (the Diffusion-DPO baseline) also loads each record's
    loser; a record without one is skipped, and data with no loser at all
    is refused. Otherwise losers are ignored (SePPO trains on winners only).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        *,
        num_frames: int,
        resolution: int,
        frame_stride: int = 4,
        target_fps: float | None = None,
        pairs: bool = False,
        max_bad_fraction: float = 0.2,
        seed: int = 0,
        source: str = "video data",
    ):
        if not records:
            raise DataError(f"{source}: no records")
        if pairs and not any(r.loser for r in records):
            raise DataError(
                f"{source}: the Diffusion-DPO baseline needs pairs, but no record has a loser "
                "(add a 'loser' column with a video id or path)"
            )
        self.num_frames, self.resolution = num_frames, resolution
        self.stride, self.target_fps = frame_stride, target_fps
        self.pairs, self.seed, self.epoch = pairs, seed, 0
        self.skips = SkipLog(source, len(records), max_bad_fraction)
        self._seen_ids: set[str] = set()
        self._probed = self._probe_files(records)
        self.clips = [clip for clip in map(self._probe, records) if clip is not None]
        self._failed: set[int] = set()
        self.skips.conclude(len(self.clips), "no usable records")

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def ids(self) -> list[str]:
        return [clip.record.id for clip in self.clips]

    @property
    def prompts(self) -> list[str]:
        return [clip.record.prompt for clip in self.clips]

    @property
    def sampling(self) -> dict[str, Any]:
        """How frames are chosen: recorded in a latent cache, which is stale when it changes."""
        return {"kind": "video", "frame_stride": self.stride, "target_fps": self.target_fps, "seed": self.seed}

    def set_epoch(self, epoch: int) -> None:
        """Draw new random windows for a new epoch (reproducibly: same epoch, same windows)."""
        self.epoch = epoch

    def try_load(self, index: int) -> dict[str, Any] | None:
        """Item ``index``, or None (logged and counted once) when its video fails to decode."""
        if index in self._failed:
            return None
        clip = self.clips[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        item: dict[str, Any] = {"id": clip.record.id, "prompt": clip.record.prompt}
        for key, path, info in self._videos(clip):
            try:
                item[key] = self._load(path, info, clip.record.is_transmit, rng)
            except Exception as err:  # any decoder failure means: this file is unusable
                self._failed.add(index)
                self.skips.skip(str(path), DECODE_FAILED, _first_line(err))
                self.skips.check()
                return None
        return item

    def _videos(self, clip: _Clip) -> list[tuple[str, Path, VideoInfo]]:
        videos = [("pixels", clip.record.path, clip.info)]
        if self.pairs:
            videos.append(("loser_pixels", clip.record.loser, clip.loser_info))
        return videos

    def _load(self, path: Path, info: VideoInfo, is_transmit: bool | None, rng: np.random.Generator) -> torch.Tensor:
        stride = frame_stride(info, self.stride, self.target_fps)
        indices = sample_indices(info, self.num_frames, stride, is_transmit, rng)
        return to_model_pixels(read_frames(path, indices), self.resolution)

    def _probe_files(self, records: Sequence[VideoRecord]) -> dict[Path, VideoInfo | str]:
        """Every existing, non-empty video of ``records`` probed (in child processes, see ``probe_videos``)."""
        paths = {r.path for r in records} | ({r.loser for r in records if r.loser} if self.pairs else set())
        files = sorted(path for path in paths if path.is_file() and path.stat().st_size > 0)
        return dict(zip(files, probe_videos(files), strict=True))

    def _probe(self, record: VideoRecord) -> _Clip | None:
        problem = caption_problem(record.prompt)
        if problem:
            self.skips.skip(f"{record.path} (id {record.id!r})", problem)
            return None
        if record.id in self._seen_ids:
            self.skips.skip(f"{record.path} (id {record.id!r})", DUPLICATE_ID, "an earlier record has it")
            return None
        self._seen_ids.add(record.id)
        if self.pairs and record.loser is None:
            self.skips.skip(f"{record.path} (id {record.id!r})", NO_LOSER)
            return None
        info = self._inspect(record.path)
        if info is None:
            return None
        loser_info = self._inspect(record.loser) if self.pairs else None
        if self.pairs and loser_info is None:
            return None
        return _Clip(record, info, loser_info)

    def _inspect(self, path: Path) -> VideoInfo | None:
        """Probe one file; a bad one is skipped (logged and counted) and gives None."""
        if not path.is_file():
            self.skips.skip(str(path), MISSING_FILE)
            return None
        if path.stat().st_size == 0:
            self.skips.skip(str(path), EMPTY_FILE)
            return None
        info = self._probed[path]
        if isinstance(info, str):
            self.skips.skip(str(path), CORRUPT_FILE, info)
            return None
        if info.width * info.height > MAX_FRAME_PIXELS:
            self.skips.skip(str(path), FRAME_TOO_LARGE, f"{info.width}x{info.height}, limit {MAX_FRAME_PIXELS} pixels")
            return None
        if info.num_frames < self.num_frames:
            self.skips.skip(str(path), TOO_SHORT, f"{info.num_frames} frames, need {self.num_frames}")
            return None
        return info


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


# ---------------------------------------------------------------- writing


def write_video(frames: np.ndarray, path: str | Path, fps: int = 8) -> Path:
    """Write ``uint8 [F, H, W, 3]`` as mp4 (H.264 via imageio-ffmpeg) or gif, by suffix."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    if path.suffix == ".gif":
        imageio.mimsave(tmp, list(frames), duration=1000 / fps, loop=0)
    elif path.suffix == ".mp4":
        _write_mp4(tmp, frames, fps)
    else:
        raise ValueError(f"{path}: unsupported video suffix (use .mp4 or .gif)")
    tmp.replace(path)
    return path


def _write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    import imageio.v2 as imageio

    # yuv420p needs even sizes; browsers play H.264 yuv420p everywhere.
    height, width = frames.shape[1:3]
    frames = frames[:, : height - height % 2, : width - width % 2]
    with imageio.get_writer(
        path, format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=1,
        pixelformat="yuv420p", output_params=["-movflags", "+faststart"],
    ) as writer:
        for frame in frames:
            writer.append_data(frame)
