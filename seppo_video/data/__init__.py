"""Training data: (prompt, winner[, loser]) as pixels or cached latents.

``build_dataset`` is the one entry point the training loop needs: it reads a
``DataConfig`` and returns either decoded pixels (demo clips, annotated
videos, Pick-a-Pic style images) or, when ``data.latent_cache`` points at a
built cache, the cached latents. Items are dicts; ``collate`` batches them.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from seppo_video.config import DataConfig
from seppo_video.data.builders import build_pixel_dataset, collate
from seppo_video.data.latent_cache import (
    MANIFEST,
    CorruptCacheError,
    LatentCacheDataset,
    StaleCacheError,
    build_latent_cache,
    model_id_for,
    write_latent_cache,
)
from seppo_video.data.skips import DataError, logger

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
    "write_latent_cache",
]


def build_dataset(
    config: DataConfig,
    model_kind: str,
    *,
    pairs: bool,
    model_id: str | None = None,
    seed: int = 0,
) -> Dataset:
    """The dataset a run trains on.

    ``pairs=True`` (Diffusion-DPO baseline) requires a loser for every item.
    With ``data.latent_cache`` set and built, the cache is used and checked
    against ``model_id`` (see ``model_id_for``); set but not built, pixels
    are decoded on the fly and a warning says how to build it.
    """
    cache = Path(config.latent_cache) if config.latent_cache else None
    if cache is None or not (cache / MANIFEST).is_file():
        if cache is not None:
            logger.warning(
                "latent cache %s not built yet; decoding on the fly (run `seppo-video cache-latents`)", cache
            )
        return build_pixel_dataset(config, model_kind, pairs=pairs, seed=seed)
    if model_id is None:
        raise ValueError("build_dataset: model_id is needed to check the latent cache (see model_id_for)")
    dataset = LatentCacheDataset(cache, model_id=model_id, resolution=config.resolution, num_frames=config.num_frames)
    if pairs and not dataset.pairs:
        raise DataError(
            f"latent cache {cache} has no loser latents, which the Diffusion-DPO baseline needs; "
            "rerun `seppo-video cache-latents` with seppo.method=dpo"
        )
    return dataset
