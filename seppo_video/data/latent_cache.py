"""Encode the training data once: VAE latents and text embeddings on disk.

Every training step would otherwise decode mp4s and run the frozen VAE and
text encoder on the same clips again. The cache is a folder of safetensors
shards and a ``manifest.json`` saying what it was built from (model id,
resolution, frame count, how frames were sampled) and the sha256 of each
shard. Loading refuses a cache built for another model, resolution or frame
count (``StaleCacheError``) and a damaged shard (``CorruptCacheError``):
either would train silently on the wrong latents.

Caching fixes each clip's frame window: all epochs see the frames drawn at
build time, where decoding on the fly draws new random windows.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from seppo_video.atomic import atomic_directory, file_sha256
from seppo_video.config import Config, ConfigError, ModelConfig
from seppo_video.data.builders import build_pixel_dataset, collate
from seppo_video.data.skips import DataError, SkipLog, logger

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RERUN = "rerun `seppo-video cache-latents` to rebuild it"


class StaleCacheError(DataError):
    """The cache was built for another model, resolution or frame count."""


class CorruptCacheError(DataError):
    """A shard is missing or its checksum does not match the manifest."""


class PixelDataset(Protocol):
    """What the cache needs from a pixel dataset (``VideoDataset``, ``ImagePreferenceDataset``)."""

    resolution: int
    num_frames: int
    skips: SkipLog

    def __len__(self) -> int: ...
    def try_load(self, index: int) -> dict[str, Any] | None: ...
    @property
    def ids(self) -> list[str]: ...
    @property
    def prompts(self) -> list[str]: ...
    @property
    def pairs(self) -> bool: ...
    @property
    def sampling(self) -> dict[str, Any]: ...


def model_id_for(config: ModelConfig) -> str:
    """A string that changes whenever the VAE or text encoder could change."""
    if config.pretrained in ("tiny", "world"):  # the models built or shipped by the package
        return f"{config.pretrained}:{config.kind}"
    model_id = f"{config.kind}:{Path(config.pretrained).expanduser().resolve()}"
    if config.motion_adapter:
        model_id += f"+motion:{Path(config.motion_adapter).expanduser().resolve()}"
    return model_id


# ---------------------------------------------------------------- building


def build_latent_cache(
    dataset: PixelDataset,
    adapter: Any,
    out_dir: str | Path,
    *,
    model_id: str,
    batch_size: int = 4,
    shard_size: int = 256,
    num_workers: int = 0,
) -> Path:
    """Encode ``dataset`` with ``adapter`` into ``out_dir`` (atomically); reuse an identical cache.

    ``adapter`` provides ``encode_video`` and ``encode_prompt``. An existing
    cache is reused when it was built for the same model, resolution, frame
    count, frame sampling, items and prompts, and its shards are intact.
    """
    out_dir = Path(out_dir)
    expected = _identity(dataset, model_id)
    if _reusable(out_dir, expected):
        logger.info("latent cache %s is up to date; reusing it", out_dir)
        return out_dir
    with atomic_directory(out_dir) as tmp:
        shards, ids, prompts = _encode(dataset, adapter, tmp, batch_size, shard_size, num_workers)
        _write_manifest(tmp, expected, dataset.skips.source, ids, prompts, shards)
    if dataset.skips.counts:
        logger.warning(dataset.skips.summary())
    return out_dir


def _write_manifest(root: Path, identity: dict[str, Any], source: str, ids: list[str], prompts: list[str],
                    shards: list[dict[str, Any]]) -> None:
    manifest = {**identity, "source": source, "num_items": len(ids), "ids": ids, "prompts": prompts, "shards": shards}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def _identity(dataset: PixelDataset, model_id: str) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "resolution": dataset.resolution,
        "num_frames": dataset.num_frames,
        "has_losers": dataset.pairs,
        "sampling": dataset.sampling,
        "items_sha256": hashlib.sha256(json.dumps([dataset.ids, dataset.prompts]).encode()).hexdigest(),
    }


def _reusable(out_dir: Path, expected: dict[str, Any]) -> bool:
    if not (out_dir / MANIFEST).is_file():
        return False
    try:
        manifest = _read_manifest(out_dir)
        if any(manifest.get(key) != value for key, value in expected.items()):
            return False
        _verify_shards(out_dir, manifest)
    except CorruptCacheError:
        return False
    return True


class _Attempts(Dataset):
    """Each index's item or None, so a failed decode drops out instead of being replaced by a duplicate."""

    def __init__(self, dataset: PixelDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        return self.dataset.try_load(index)


def _present(items: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    return [item for item in items if item is not None]


def _encode(
    dataset: PixelDataset, adapter: Any, root: Path, batch_size: int, shard_size: int, num_workers: int
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    loader = DataLoader(_Attempts(dataset), batch_size=batch_size, num_workers=num_workers, collate_fn=_present)
    shards: list[dict[str, Any]] = []
    pending: dict[str, list[torch.Tensor]] = {}
    ids: list[str] = []
    prompts: list[str] = []
    with tqdm(total=len(dataset), desc="caching latents", unit="item") as progress:
        for items in loader:
            progress.update(min(batch_size, progress.total - progress.n))
            if not items:
                continue
            for key, tensor in _encode_batch(adapter, collate(items)).items():
                pending.setdefault(key, []).append(tensor)
            ids += [item["id"] for item in items]
            prompts += [item["prompt"] for item in items]
            if sum(len(t) for t in pending["latents"]) >= shard_size:
                shards.append(_write_shard(root, len(shards), pending))
                pending = {}
    if pending:
        shards.append(_write_shard(root, len(shards), pending))
    if not ids:
        raise DataError(f"nothing to cache: {dataset.skips.summary()}")
    return shards, ids, prompts


def _encode_batch(adapter: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    encoded = {
        "latents": adapter.encode_video(batch["pixels"]),
        "prompt_embeds": adapter.encode_prompt(batch["prompt"]),
    }
    if "loser_pixels" in batch:
        encoded["loser_latents"] = adapter.encode_video(batch["loser_pixels"])
    return {key: value.detach().float().cpu() for key, value in encoded.items()}


def _write_shard(root: Path, number: int, pending: dict[str, list[torch.Tensor]]) -> dict[str, Any]:
    from safetensors.torch import save_file

    name = f"shard-{number:05d}.safetensors"
    tensors = {key: torch.cat(parts).contiguous() for key, parts in pending.items()}
    save_file(tensors, str(root / name))
    return {"file": name, "num_items": len(tensors["latents"]), "sha256": file_sha256(root / name)}


def _read_manifest(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / MANIFEST).read_text())
    except json.JSONDecodeError as err:
        raise CorruptCacheError(f"latent cache {root}: {MANIFEST} is not valid JSON ({err}); {RERUN}") from None


def _verify_shards(root: Path, manifest: dict[str, Any]) -> None:
    for shard in manifest["shards"]:
        path = root / shard["file"]
        if not path.is_file():
            raise CorruptCacheError(f"latent cache {root}: shard {shard['file']} is missing; {RERUN}")
        if file_sha256(path) != shard["sha256"]:
            raise CorruptCacheError(f"latent cache {root}: shard {shard['file']} fails its checksum (damaged); {RERUN}")


# ---------------------------------------------------------------- loading


class LatentCacheDataset(Dataset):
    """Cached items as ``{"id", "prompt", "latents" [C, F, h, w], "prompt_embeds" [L, D], ("loser_latents")}``.

    The manifest is checked against the run's model, resolution and frame
    count, and every shard's checksum is verified once, here; items are then
    read lazily from memory-mapped shards.
    """

    def __init__(self, cache_dir: str | Path, *, model_id: str, resolution: int, num_frames: int):
        self.root = Path(cache_dir)
        if not (self.root / MANIFEST).is_file():
            raise DataError(f"no latent cache at {self.root} (no {MANIFEST}); run `seppo-video cache-latents`")
        self.manifest = _read_manifest(self.root)
        wanted = {
            "format_version": FORMAT_VERSION,
            "model_id": model_id,
            "resolution": resolution,
            "num_frames": num_frames,
        }
        stale = [
            f"{key} {self.manifest.get(key)!r} (this run: {value!r})"
            for key, value in wanted.items()
            if self.manifest.get(key) != value
        ]
        if stale:
            raise StaleCacheError(f"latent cache {self.root} was built for another setup: {', '.join(stale)}; {RERUN}")
        _verify_shards(self.root, self.manifest)
        self.locations = [(s["file"], row) for s in self.manifest["shards"] for row in range(s["num_items"])]
        self._handles: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.locations)

    @property
    def pairs(self) -> bool:
        return bool(self.manifest["has_losers"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        file, row = self.locations[index]
        shard = self._shard(file)
        item: dict[str, Any] = {"id": self.manifest["ids"][index], "prompt": self.manifest["prompts"][index]}
        for key in shard.keys():
            item[key] = shard.get_slice(key)[row : row + 1][0]
        return item

    def __getstate__(self) -> dict[str, Any]:
        # Open shard handles cannot be pickled to spawned DataLoader workers; they reopen lazily.
        return {**self.__dict__, "_handles": {}}

    def _shard(self, file: str) -> Any:
        from safetensors import safe_open

        if file not in self._handles:
            self._handles[file] = safe_open(str(self.root / file), framework="pt")
        return self._handles[file]


# ---------------------------------------------------------------- CLI entry


def cache_latents_from_config(config: Config, out: Path | None = None) -> Path:
    """``seppo-video cache-latents``: encode the configured data for the configured model.

    Losers are encoded too when the method is the Diffusion-DPO baseline. The frames and resolution
    are checked against the model first, as for training (a causal video VAE takes ``1 + 4k`` frames).
    """
    from seppo_video.models.adapters import check_model_fits, load_adapter

    target = out or config.data.latent_cache
    if target is None:
        raise ConfigError("data.latent_cache: set it (or pass --out) to say where the latent cache goes")
    check_model_fits(config)
    dataset = build_pixel_dataset(config.data, config.model.kind, pairs=config.seppo.method == "dpo", seed=config.seed)
    adapter = load_adapter(config.model, configure=False)
    adapter.to("cuda" if torch.cuda.is_available() else "cpu")
    return build_latent_cache(
        dataset,
        adapter,
        target,
        model_id=model_id_for(config.model),
        batch_size=config.data.batch_size,
        num_workers=config.data.num_workers,
    )
