"""Training data: (prompt, winner[, loser]) as pixels or cached latents.

``build_dataset`` is the one entry point the training loop needs: it reads a
``DataConfig`` and returns either decoded pixels (demo clips, annotated
videos, Pick-a-Pic style images), the synthetic world's latents, or, when
``data.latent_cache`` points at a built cache, the cached latents. Items are dicts; ``collate`` batches them.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from seppo_video.config import ConfigError, DataConfig, ModelConfig
from seppo_video.data.builders import build_pixel_dataset, collate
from seppo_video.data.latent_cache import (
    MANIFEST,
    CorruptCacheError,
    LatentCacheDataset,
    StaleCacheError,
    build_latent_cache,
    model_id_for,
)
from seppo_video.data.skips import DataError, logger
from seppo_video.data.world import COLOURS, WorldDataset, WorldShape
from seppo_video.models.adapters import latent_shape

__all__ = [
    "CorruptCacheError",
    "DataError",
    "LatentCacheDataset",
    "StaleCacheError",
    "build_dataset",
    "build_latent_cache",
    "build_pixel_dataset",
    "collate",
    "model_id_for",
    "world_dataset",
]


def build_dataset(config: DataConfig, model: ModelConfig, *, pairs: bool, seed: int = 0) -> Dataset:
    """The dataset a run trains on, for the backbone ``model``.

    ``pairs=True`` (Diffusion-DPO baseline) requires a loser for every item.
    With ``data.latent_cache`` set and built, the cache is used and checked
    against the model (see ``model_id_for``); set but not built, pixels
    are decoded on the fly and a warning says how to build it. The synthetic
    world (``data.kind: world``) is latents already.
    """
    if config.kind == "world":
        return world_dataset(config, model, pairs)
    cache = Path(config.latent_cache) if config.latent_cache else None
    if cache is None or not (cache / MANIFEST).is_file():
        if cache is not None:
            logger.warning(
                "latent cache %s not built yet; decoding on the fly (run `seppo-video cache-latents`)", cache
            )
        return build_pixel_dataset(config, model.kind, pairs=pairs, seed=seed)
    dataset = LatentCacheDataset(cache, model_id=model_id_for(model), resolution=config.resolution,
                                 num_frames=config.num_frames)
    if pairs and not dataset.pairs:
        raise DataError(
            f"latent cache {cache} has no loser latents, which the Diffusion-DPO baseline needs; "
            "rerun `seppo-video cache-latents` with seppo.method=dpo"
        )
    return dataset


def world_dataset(config: DataConfig, model: ModelConfig, pairs: bool) -> WorldDataset:
    """The world's training clips in the latent shape of ``model`` (one colour per latent channel)."""
    if config.latent_cache:
        raise ConfigError("data.latent_cache: the world (data.kind='world') is made of latents already; leave it null")
    channels, frames, height, width = latent_shape(model, config.num_frames, config.resolution)
    if channels != len(COLOURS) or height != width:
        raise ConfigError(
            f"data.kind: the world's clips are square latents with {len(COLOURS)} channels (one per colour); "
            f"{model.kind} at data.resolution={config.resolution} has {channels} channels of {height}x{width}"
        )
    return WorldDataset(config.world, WorldShape(channels, frames, height), pairs)
