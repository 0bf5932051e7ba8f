"""Reference pool: what it stores, what it keeps, and how it chooses."""

from __future__ import annotations

import pytest
import torch

from seppo_video.seppo.pool import ReferencePool, parse_strategy


def _state(value: float) -> dict[str, torch.Tensor]:
    return {"a.weight": torch.full((3, 2), value), "b.bias": torch.full((4,), value)}


def _filled(n: int, max_size: int = 8, **kwargs) -> ReferencePool:
    pool = ReferencePool(max_size=max_size, **kwargs)
    for i in range(n):
        pool.add(step=i * 10, trainable=_state(float(i)))
    return pool


def test_keeps_theta0_and_drops_oldest_snapshot_first():
    pool = _filled(6, max_size=4)
    assert pool.steps == [0, 30, 40, 50]
    assert pool.get(0)["a.weight"][0, 0].item() == 0.0


def test_strategies():
    pool = _filled(5)
    assert pool.select("initial", step=7) == 0
    assert pool.select("latest", step=7) == 4
    assert pool.select("fixed:2", step=7) == 2
    assert pool.select("fixed:-1", step=7) == 4
    with pytest.raises(IndexError):
        pool.select("fixed:9", step=7)
    with pytest.raises(ValueError, match="allowed"):
        parse_strategy("random")


def test_uniform_is_seeded_and_covers_the_pool():
    a, b = _filled(5, seed=3), _filled(5, seed=3)
    draws_a = [a.select("uniform", step) for step in range(400)]
    draws_b = [b.select("uniform", step) for step in range(400)]
    assert draws_a == draws_b  # what every rank of a distributed run computes independently
    counts = torch.bincount(torch.tensor(draws_a), minlength=5)
    assert (counts > 50).all(), counts  # each of 5 entries ~80 times
    other_seed = [_filled(5, seed=4).select("uniform", step) for step in range(400)]
    assert other_seed != draws_a


def test_snapshot_is_a_copy_off_the_module():
    live = {"w": torch.zeros(3)}
    pool = ReferencePool(max_size=4)
    pool.add(0, live)
    live["w"].add_(1.0)
    assert pool.get(0)["w"].sum().item() == 0.0


@pytest.mark.parametrize("dtype,bytes_per", [("float32", 4), ("float16", 2), ("bfloat16", 2)])
def test_memory_is_trainable_size_times_snapshots(dtype, bytes_per):
    pool = _filled(3, dtype=dtype)
    # theta_0 stays float32 (4 bytes); the two later snapshots take the pool's dtype
    assert pool.nbytes() == (6 + 4) * 4 + 2 * (6 + 4) * bytes_per


@pytest.mark.parametrize("storage", ["cpu", "disk"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_theta0_is_stored_exactly_in_a_half_precision_pool(dtype, storage, tmp_path):
    theta0 = {"w": torch.tensor([1.0 + 2**-20, 0.1, 3.3e-5])}  # not representable in 16 bits
    pool = ReferencePool(max_size=4, storage=storage, dtype=dtype, directory=tmp_path / "pool")
    pool.add(0, theta0)
    pool.add(10, theta0)
    assert torch.equal(pool.get(0)["w"], theta0["w"])
    assert pool.get(1)["w"].dtype == getattr(torch, dtype)
    assert not torch.equal(pool.get(1)["w"].float(), theta0["w"])
    pool.save(tmp_path / "ckpt")
    restored = ReferencePool(max_size=4, dtype=dtype)
    restored.load(tmp_path / "ckpt")
    assert torch.equal(restored.get(0)["w"], theta0["w"])


def test_disk_storage_round_trip(tmp_path):
    pool = _filled(3, storage="disk", directory=tmp_path / "pool")
    assert all(s.tensors is None and s.path.exists() for s in pool.snapshots)
    assert pool.get(2)["b.bias"][0].item() == 2.0
    pool.save(tmp_path / "ckpt")
    restored = ReferencePool(max_size=8, storage="cpu")
    restored.load(tmp_path / "ckpt")
    assert restored.steps == pool.steps
    assert torch.equal(restored.get(1)["a.weight"], pool.get(1)["a.weight"])


def test_rejects_bad_settings():
    with pytest.raises(ValueError):
        ReferencePool(max_size=1)
    with pytest.raises(ValueError):
        ReferencePool(max_size=4, storage="disk")
