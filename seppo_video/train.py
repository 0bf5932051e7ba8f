"""The training recipe: SePPO and its baselines in one loop, on accelerate.

``setup`` builds everything from the config; ``train`` reads top to bottom:
pick a reference, get the second sample of each pair, draw one (t, eps) per
pair, compute policy errors with grad and reference errors without, step,
snapshot into the pool, log, checkpoint. Accelerate does devices, mixed
precision, gradient accumulation and distribution (DDP / DeepSpeed / FSDP
through ``accelerate launch --config_file``).
"""

from __future__ import annotations

import hashlib
import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from seppo_video.atomic import atomic_write_json, atomic_write_text
from seppo_video.checkpoint import (
    CheckpointSize,
    TrainerState,
    all_ranks_agree,
    checkpoint_step,
    estimate_checkpoint_size,
    find_checkpoint,
    load_checkpoint,
    read_ema_weights,
    read_trainable,
    register_trainable_only_hooks,
    save_checkpoint,
    warn_if_checkpoints_may_not_fit,
)
from seppo_video.config import Config, ConfigError, load_config
from seppo_video.export import export_weights
from seppo_video.models.adapters import VideoDiffusionAdapter, check_model_fits, load_adapter
from seppo_video.seppo.health import COLLAPSE_WINDOW, WATCHED, CollapseAlarm, collapse_alarm
from seppo_video.seppo.loss import per_sample_error, preference_loss, sft_loss
from seppo_video.seppo.methods import MethodSpec, resolve_method
from seppo_video.seppo.noise import NoisedBatch, NoiseProcess, noise_pairs, noise_process, noise_winners
from seppo_video.seppo.pool import ReferencePool
from seppo_video.seppo.reference import SwappedModule, inference_mode
from seppo_video.seppo.sampler import sample_latents


class NonFiniteLossError(RuntimeError):
    """Too many optimizer steps in a row had a NaN / inf loss or gradient."""


@dataclass
class Run:
    """Everything ``setup`` builds; the loop only reads it."""

    config: Config
    method: MethodSpec
    accelerator: Any
    adapter: VideoDiffusionAdapter
    unet: torch.nn.Module  # the prepared (possibly DDP-wrapped) policy UNet
    optimizer: Any
    lr_scheduler: Any
    ema: Any
    pool: ReferencePool | None
    dataset: Any
    noise: NoiseProcess  # the forward process: (t, eps) draws, q(x, t, eps), targets
    negative_embeds: torch.Tensor
    autocast_dtype: torch.dtype | None
    out: Path
    # The reference last swapped in, keyed by its snapshot's step: micro-batches of one
    # accumulation cycle (and repeated draws) reuse its device copy instead of reloading it.
    cached_reference: tuple[int, SwappedModule] | None = None


# ======================================================================== setup


def setup(config: Config) -> Run:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler

    from seppo_video.data import build_dataset

    method = resolve_method(config.seppo)
    out = Path(config.output_dir)
    if config.train.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("train.mixed_precision: 'fp16' needs a CUDA GPU (accelerate then scales the loss with a "
                          "GradScaler); on a CPU use 'bf16' or 'no'")
    accelerator = Accelerator(
        cpu=_multi_process_without_gpu(),
        mixed_precision=config.train.mixed_precision,
        gradient_accumulation_steps=config.train.gradient_accumulation_steps,
        log_with=_tracker(config.train.log_with),
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    refuse_sharded_parameters(accelerator.state)
    # The global RNG drives dropout masks and new-layer (LoRA) init: seeded here, a run is a function
    # of its config, not of what ran before it in the process; checkpoints carry the RNG state on.
    set_seed(config.seed, device_specific=True)
    with accelerator.main_process_first():  # rank 0 builds the tiny model / demo data, the others wait
        # The model's config files, then the data: a wrong model folder, frames or a resolution the model
        # cannot take, bad annotations or bad videos all fail before the model is loaded.
        check_model_fits(config)
        dataset = build_dataset(config.data, config.model, pairs=method.needs_losers, seed=config.seed)
        adapter = load_adapter(config.model, seed=config.seed)
    adapter.unet.train(config.train.policy_dropout)  # references switch to eval mode themselves
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.train.mixed_precision)
    adapter.to(accelerator.device, dtype=weight_dtype)  # frozen VAE / text encoder in the inference dtype
    trainable = [p for _, p in adapter.named_trainable_parameters()]
    optimizer = make_optimizer(config, trainable)
    lr_scheduler = get_scheduler(
        config.train.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.train.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=config.train.max_steps * accelerator.num_processes,
    )
    unet, optimizer, lr_scheduler = accelerator.prepare(adapter.unet, optimizer, lr_scheduler)
    register_trainable_only_hooks(accelerator, {n for n, _ in adapter.named_trainable_parameters()})
    ema = _ema(config, trainable)  # checkpointed by save_checkpoint as safetensors (accelerate would pickle it)
    pool = None
    if method.uses_reference:
        pool = ReferencePool(
            config.seppo.pool_size,
            storage=config.seppo.pool_device,
            dtype=config.seppo.pool_dtype,
            directory=out / "pool_cache" / f"rank{accelerator.process_index}",
            seed=config.seed,
        )
    return Run(
        config=config,
        method=method,
        accelerator=accelerator,
        adapter=adapter,
        unet=unet,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        ema=ema,
        pool=pool,
        dataset=dataset,
        noise=noise_process(adapter.scheduler_config, config.model.noise_scheduler),
        negative_embeds=adapter.encode_prompt([""]),
        autocast_dtype=weight_dtype,
        out=out,
    )


def refuse_sharded_parameters(state) -> None:
    """FSDP and DeepSpeed ZeRO-3 shard the parameters across ranks; the pool's snapshots and the
    swapped-in reference assume each rank holds whole tensors, so those modes are refused here,
    before any model is loaded, instead of training against a wrong reference."""
    from accelerate.utils import DistributedType

    kind = getattr(state, "distributed_type", None)
    if kind == DistributedType.FSDP:
        raise ConfigError("accelerate config: FSDP shards the parameters, which the reference pool cannot snapshot or "
                          "swap; use DDP (configs/accelerate/ddp_4gpu.yaml) or DeepSpeed ZeRO-2 "
                          "(configs/accelerate/deepspeed_zero2.yaml), with LoRA or motion modules for large models")
    plugin = getattr(state, "deepspeed_plugin", None)
    if kind == DistributedType.DEEPSPEED and plugin is not None and plugin.zero_stage == 3:
        raise ConfigError("accelerate config: DeepSpeed ZeRO stage 3 shards the parameters, which the reference pool "
                          "cannot snapshot or swap; use zero_stage 2 (configs/accelerate/deepspeed_zero2.yaml) or DDP")


def _multi_process_without_gpu() -> bool:
    """``accelerate launch --multi_gpu`` on a machine without CUDA: run DDP on CPUs (gloo).

    Accelerate only sets up a CPU process group when told it is on the CPU;
    without this every process would believe it is rank 0 of 1.
    """
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def _tracker(name: str) -> list[str] | None:
    return None if name == "none" else [name]  # config.validate checked that the tracker is installed


def checkpoint_size(run: Run) -> CheckpointSize:
    """The estimated bytes of one of this run's checkpoints (its pool at full size)."""
    return estimate_checkpoint_size([p for _, p in run.adapter.named_trainable_parameters()], run.pool,
                                    ema=run.ema is not None, eight_bit_adam=run.config.train.use_8bit_adam)


def make_optimizer(config: Config, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The configured optimizer over ``params`` (AdamW, or bitsandbytes' 8-bit AdamW)."""
    kwargs = dict(
        lr=config.train.learning_rate,
        betas=(config.train.adam_beta1, config.train.adam_beta2),
        weight_decay=config.train.weight_decay,
    )
    if config.train.use_8bit_adam:
        import bitsandbytes as bnb  # config.validate checked that it is installed

        return bnb.optim.AdamW8bit(params, **kwargs)
    return torch.optim.AdamW(params, **kwargs)


def _ema(config: Config, params: list[torch.nn.Parameter]):
    if not config.train.ema.enabled:
        return None
    from diffusers.training_utils import EMAModel

    return EMAModel(params, decay=config.train.ema.decay)


# ======================================================================== the loop


def train(config: Config, resume: str | None = None) -> Run:
    """Train, checkpoint, export and sample (outputs under ``config.output_dir``).

    Returns the ``Run`` (its ``adapter`` holds the trained policy) for callers
    that go on working in Python.
    """
    checkpoint = find_checkpoint(Path(config.output_dir), resume) if resume is not None else None  # fail fast
    run = setup(config)
    accelerator, out = run.accelerator, run.out
    state = TrainerState()
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint, run.pool, run.ema)
        accelerator.print(f"resumed from {checkpoint} at step {state.step}")
    elif run.pool is not None:
        run.pool.add(0, run.adapter.trainable_state())  # theta_0
    if accelerator.is_main_process:
        warn_if_checkpoints_may_not_fit(out, checkpoint_size(run), config.train.checkpoints_keep)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        accelerator.init_trackers("seppo-video", config=_flat(config.to_dict()))
    metrics = MetricsLog(out / "metrics.jsonl", keep_until=state.step, enabled=accelerator.is_main_process)
    ref_history: list[int] = []
    progress = tqdm(total=config.train.max_steps, initial=state.step, desc=config.seppo.method,
                    disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    started = time.perf_counter()
    step_start, cycle_nonfinite, cycle = time.perf_counter(), False, CycleMean()
    stop = False  # set when the collapse alarm ends the run (train.stop_on_collapse)
    for batch in iterate_batches(run, state):
        if state.step >= config.train.max_steps:  # also when resuming a finished run
            break
        loss, stats, ref_index, cycle_nonfinite = micro_step(run, batch, state, cycle_nonfinite)
        cycle.add(loss, stats)
        if not accelerator.sync_gradients:
            continue
        loss, stats = cycle.pop()
        state.step += 1
        _count_nonfinite(state, cycle_nonfinite)
        if run.ema is not None and not cycle_nonfinite:
            run.ema.step([p for _, p in run.adapter.named_trainable_parameters()])
        if run.method.grows_pool and state.step % config.seppo.ref_every == 0:
            run.pool.add(state.step, run.adapter.trainable_state())
        ref_history.append(ref_index)
        record = {
            "step": state.step,
            "method": config.seppo.method,
            "loss": loss,  # both the mean over the accumulation cycle's micro-batches
            **stats,
            "ref_index": ref_index,
            "skipped": cycle_nonfinite,
            "lr": run.lr_scheduler.get_last_lr()[0],
            "step_time": time.perf_counter() - step_start,
            "peak_mem_mb": _peak_memory_mb(accelerator.device),
        }
        if state.step % config.train.log_every == 0:
            metrics.write(record)
            accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=state.step)
        _stop_if_diverged(state, config.train.max_nonfinite_in_row)
        alarm = watch_health(run, state, stats)
        if alarm is not None and accelerator.is_main_process:
            tqdm.write(alarm.message(config.seppo.beta, config.seppo.num_train_timesteps, config.seppo.sft_weight,
                                     config.train.learning_rate))
        stop = alarm is not None and config.train.stop_on_collapse
        progress.update(1)
        progress.set_postfix(loss=f"{record['loss']:.4f}", **_health_postfix(stats))
        if state.step % config.train.checkpoint_every == 0 or state.step == config.train.max_steps or stop:
            save_checkpoint(accelerator, out, state, run.pool, config.train.checkpoints_keep, run.ema)
        if stop:
            break
        step_start, cycle_nonfinite = time.perf_counter(), False
    progress.close()
    finish(run, state, ref_history, time.perf_counter() - started, stopped_on_collapse=stop)
    return run


def watch_health(run: Run, state: TrainerState, stats: dict[str, float]) -> CollapseAlarm | None:
    """Feed one step's statistics to the collapse alarm; the alarm the step it first fires, else None.

    The watched figures are averaged over the ranks first, so that every rank takes the same
    decision (a rank stopping alone would hang the others).
    """
    if state.collapse_alarm is not None or "saturated" not in stats:  # fired already, or SFT (no pairs)
        return None
    values = torch.tensor([stats[key] for key in WATCHED], device=run.accelerator.device)
    values = run.accelerator.reduce(values, reduction="mean")
    state.health_window = [*state.health_window, dict(zip(WATCHED, values.tolist()))][-COLLAPSE_WINDOW:]
    alarm = collapse_alarm(state.step, state.health_window)
    if alarm is not None:
        state.collapse_alarm = alarm.as_dict()
    return alarm


def _health_postfix(stats: dict[str, float]) -> dict[str, str]:
    """The progress bar's view of a preference step: flip rate, the two terms apart, saturation."""
    if "saturated" not in stats:  # SFT: no flipper, no pairs
        return {}
    return {"flip": f"{stats['flip_rate']:.2f}", "d_w": f"{stats['d_w_rel']:+.2%}",
            "d_ref": f"{stats['d_ref_rel']:+.2%}", "sat": f"{stats['saturated']:.2f}"}


def micro_step(
    run: Run, batch: dict, state: TrainerState, cycle_nonfinite: bool = False
) -> tuple[torch.Tensor, dict[str, float], int, bool]:
    """Loss and backward on one micro-batch; the optimizer steps at the end of an accumulation cycle
    unless a loss or the gradients of the cycle (``cycle_nonfinite``, or this micro-batch) were non-finite.

    Returns the loss, its statistics, the reference index and the updated ``cycle_nonfinite``.
    """
    accelerator = run.accelerator
    with accelerator.accumulate(run.unet):
        loss, stats, ref_index = compute_loss(run, batch, state)
        state.batches_seen += 1
        # All ranks skip together, or DDP would hang waiting for a missing backward.
        finite = all_ranks_agree(accelerator, bool(torch.isfinite(loss.detach()).all()))
        if finite:
            accelerator.backward(loss)
        cycle_nonfinite |= not finite
        if accelerator.sync_gradients and not cycle_nonfinite:
            cycle_nonfinite = not optimizer_update(run)
        run.optimizer.zero_grad(set_to_none=True)
    return loss, stats, ref_index, cycle_nonfinite


def optimizer_update(run: Run) -> bool:
    """Clip and step; False when the step was skipped because the gradients were not finite.

    The clipped norm is the same on every rank (gradients are already reduced).
    Under fp16, accelerate's GradScaler decides: ``clip_grad_norm_`` unscales,
    and the scaler skips an overflowing step and lowers its scale, which it
    can only do if the step is called.
    """
    accelerator = run.accelerator
    norm = accelerator.clip_grad_norm_(run.unet.parameters(), run.config.train.max_grad_norm)
    if norm is not None and not torch.isfinite(norm) and accelerator.scaler is None:  # None: DeepSpeed clips itself
        return False
    run.optimizer.step()
    run.lr_scheduler.step()
    return not accelerator.optimizer_step_was_skipped


def compute_loss(run: Run, batch: dict, state: TrainerState) -> tuple[torch.Tensor, dict[str, float], int]:
    """The method's loss on one micro-batch, its statistics, and the reference index (-1: none)."""
    config = run.config
    if not run.method.uses_reference:
        generator = _batch_generator(config.seed, state.batches_seen, run.accelerator.process_index)
        x_w, embeds = winner_latents(run, batch)
        noised = noise_winners(run.noise, x_w, generator)
        prediction = run.adapter.predict(noised.noisy, noised.timesteps, embeds, unet=run.unet)
        error = per_sample_error(prediction, noised.target)
        return sft_loss(error), {"err_w": error.mean().item()}, -1
    errors = pair_errors(run, batch, state)
    loss, stats = preference_loss(
        errors.policy_w, errors.policy_ref, errors.ref_w, errors.ref_ref,
        beta=config.seppo.beta, num_train_timesteps=config.seppo.num_train_timesteps, aaf=run.method.aaf,
        sft_weight=config.seppo.sft_weight,
    )
    return loss, stats.as_dict(), errors.ref_index


@dataclass
class PairErrors:
    """Per-pair errors of one micro-batch: the policy's (with gradient) and the reference's, on the
    winner and on the second sample."""

    policy_w: torch.Tensor
    policy_ref: torch.Tensor
    ref_w: torch.Tensor
    ref_ref: torch.Tensor
    ref_index: int


def pair_errors(run: Run, batch: dict, state: TrainerState) -> PairErrors:
    """Pick the reference, get the second samples, draw one (t, eps) per pair (keyed by the state's
    batch counter), and measure both models."""
    generator = _batch_generator(run.config.seed, state.batches_seen, run.accelerator.process_index)
    x_w, embeds = winner_latents(run, batch)
    ref_index = run.pool.select(run.method.ref_strategy, state.step)
    reference = reference_module(run, ref_index)
    x_other = second_samples(run, batch, embeds, reference, state, x_w)
    pairs = noise_pairs(run.noise, x_w, x_other, generator)
    embeds2 = torch.cat([embeds, embeds])
    prediction = run.adapter.predict(pairs.noisy, pairs.timesteps, embeds2, unet=run.unet)
    policy_err = per_sample_error(prediction, pairs.target)
    ref_err = reference_errors(run.adapter, reference, pairs, embeds2, run.autocast_dtype,
                               run.config.seppo.ref_batch_chunk)
    size = x_w.shape[0]
    return PairErrors(policy_err[:size], policy_err[size:], ref_err[:size], ref_err[size:], ref_index)


def reference_module(run: Run, index: int) -> SwappedModule:
    """The policy module with pool entry ``index`` swapped in (reused while the entry is unchanged)."""
    step = run.pool.snapshots[index].step  # indices shift when the pool drops a snapshot; steps do not
    if run.cached_reference is None or run.cached_reference[0] != step:
        module = run.accelerator.unwrap_model(run.unet)
        run.cached_reference = (step, SwappedModule(module, run.pool.get(index)))
    return run.cached_reference[1]


def reference_errors(adapter, reference, noised: NoisedBatch, embeds, autocast_dtype, chunk: int | None):
    """Per-sample errors of the reference, without autograd, ``chunk`` rows per forward."""
    noisy = noised.noisy
    chunk = chunk or noisy.shape[0]
    errors = []
    with inference_mode(autocast_dtype, noisy.device):
        for rows in torch.arange(noisy.shape[0], device=noisy.device).split(chunk):
            prediction = adapter.predict(noisy[rows], noised.timesteps[rows], embeds[rows], unet=reference)
            errors.append(per_sample_error(prediction, noised.target[rows]))
    return torch.cat(errors)


def winner_latents(run: Run, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Winner latents and prompt embeddings: from the latent cache or the world, or encoded now."""
    device = run.accelerator.device
    latents = batch["latents"] if "latents" in batch else run.adapter.encode_video(batch["pixels"].to(device))
    embeds = batch["prompt_embeds"] if "prompt_embeds" in batch else run.adapter.encode_prompt(batch["prompt"])
    return latents.to(device).float(), embeds.to(device).float()


def second_samples(run: Run, batch: dict, embeds: torch.Tensor, reference, state: TrainerState, x_w: torch.Tensor):
    """Real losers (Diffusion-DPO) or samples generated by the reference in latent space."""
    if run.method.needs_losers:
        if "loser_latents" in batch:
            return batch["loser_latents"].to(x_w.device)
        return run.adapter.encode_video(batch["loser_pixels"].to(x_w.device)).float()
    seppo = run.config.seppo
    rank, batch_size = run.accelerator.process_index, x_w.shape[0]
    seeds = [_derive_seed(run.config.seed, "ref", state.batches_seen, rank, i) for i in range(batch_size)]
    with inference_mode(run.autocast_dtype, x_w.device):
        latents = sample_latents(
            run.adapter, embeds, run.negative_embeds.to(embeds.dtype), seeds=seeds,
            num_frames=x_w.shape[2], latent_size=tuple(x_w.shape[-2:]),
            num_inference_steps=seppo.ref_sample_steps, guidance_scale=seppo.ref_guidance_scale,
            eta=seppo.ref_eta, unet=reference,
        )
    return latents.float()


# ======================================================================== data order


def iterate_batches(run: Run, state: TrainerState):
    """Batches in a seeded per-epoch order, sharded by rank, resumable at ``state.position``.

    The order is a pure function of (seed, epoch), so a resumed run sees
    exactly the batches the interrupted one would have seen next.
    """
    from torch.utils.data import DataLoader

    from seppo_video.data import collate

    config, accelerator = run.config, run.accelerator
    size, world = len(run.dataset), accelerator.num_processes
    per_batch = config.data.batch_size * world
    per_epoch = size // per_batch
    if per_epoch == 0:
        raise ConfigError(
            f"data.batch_size: {size} usable samples cannot fill one batch of {config.data.batch_size} "
            f"on each of {world} processes"
        )
    while True:
        order = torch.arange(size)
        if config.data.shuffle:
            order = torch.randperm(size, generator=torch.Generator().manual_seed(config.seed * 100_003 + state.epoch))
        if hasattr(run.dataset, "set_epoch"):
            run.dataset.set_epoch(state.epoch)  # fresh random frame windows each epoch, reproducibly
        batches = order[: per_epoch * per_batch].view(per_epoch, world, config.data.batch_size)
        mine = [batches[i, accelerator.process_index].tolist() for i in range(state.position, per_epoch)]
        loader = DataLoader(run.dataset, batch_sampler=mine, collate_fn=collate, num_workers=config.data.num_workers)
        for batch in loader:
            state.position += 1
            yield batch
        state.epoch, state.position = state.epoch + 1, 0


def _derive_seed(*parts: Any) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def _batch_generator(seed: int, batches_seen: int, rank: int) -> torch.Generator:
    """RNG for (t, eps) keyed by the batch counter: resumed runs draw the same numbers."""
    return torch.Generator().manual_seed(_derive_seed(seed, "noise", batches_seen, rank))


# ======================================================================== bookkeeping


class MetricsLog:
    """Append-only JSONL of step records; on resume, records past the checkpoint are dropped."""

    def __init__(self, path: Path, keep_until: int, enabled: bool):
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            kept = [line for line in path.read_text().splitlines() if _step_of(line) <= keep_until]
            atomic_write_text(path, "".join(line + "\n" for line in kept))
        elif enabled and keep_until == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62


class CycleMean:
    """The loss and statistics of one accumulation cycle, averaged over its micro-batches
    (the optimizer step is their mean gradient, so that is what a step's record shows)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.stats: list[dict[str, float]] = []

    def add(self, loss: torch.Tensor, stats: dict[str, float]) -> None:
        self.losses.append(float(loss.detach()) if torch.isfinite(loss).all() else float("nan"))
        self.stats.append(stats)

    def pop(self) -> tuple[float, dict[str, float]]:
        loss = sum(self.losses) / len(self.losses)
        means = {key: sum(s[key] for s in self.stats) / len(self.stats) for key in self.stats[0]}
        self.losses, self.stats = [], []
        return loss, means


def _count_nonfinite(state: TrainerState, skipped: bool) -> None:
    state.nonfinite_total += skipped
    state.nonfinite_in_row = state.nonfinite_in_row + 1 if skipped else 0


def _stop_if_diverged(state: TrainerState, limit: int) -> None:
    if state.nonfinite_in_row >= limit:
        raise NonFiniteLossError(
            f"{state.nonfinite_in_row} optimizer steps in a row had a non-finite loss or gradient (step {state.step}); "
            "lower train.learning_rate or seppo.beta, or try train.mixed_precision='bf16' instead of 'fp16'"
        )


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def _weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def finish(run: Run, state: TrainerState, ref_history: list[int], wall_time: float,
           stopped_on_collapse: bool = False) -> None:
    """Per-rank consistency record, then (main process) export, samples and summary.

    A run stopped by the collapse alarm ends the same way (its export holds the policy of the
    stop step), and its summary says so.
    """
    accelerator, out, config = run.accelerator, run.out, run.config
    atomic_write_json(out / "ranks" / f"rank{accelerator.process_index}.json", {
        "ref_indices": ref_history, "weights_sha256": _weights_digest(run.adapter.trainable_state()),
    })
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        export_dir = _export(run, state)
        if config.sample.prompts:
            from seppo_video.sample import SampleSettings, sample_to_folder

            settings = SampleSettings(
                num_frames=config.data.num_frames, height=config.data.resolution, width=config.data.resolution,
                num_inference_steps=config.sample.num_inference_steps,
                guidance_scale=config.sample.guidance_scale, fps=config.sample.fps,
            )
            sample_to_folder(export_dir, config.sample.prompts, config.sample.seeds, settings, out / "samples",
                             device=str(accelerator.device))
        skips = getattr(run.dataset, "skips", None)  # pixel datasets count unreadable inputs; caches have none
        if skips is not None:
            accelerator.print(skips.summary())
        atomic_write_json(out / "summary.json", {
            "steps": state.step, "method": config.seppo.method, "nonfinite_skipped": state.nonfinite_total,
            "prediction_type": run.adapter.prediction_type, "noise_schedule": noise_schedule_summary(run.adapter),
            "data_skips": skips.as_dict() if skips is not None else None,
            "collapse_alarm": state.collapse_alarm, "stopped_on_collapse": stopped_on_collapse,
            "wall_time_s": wall_time, "export": str(export_dir),
        })
        if stopped_on_collapse:
            accelerator.print(f"stopped at step {state.step} by the collapse alarm (train.stop_on_collapse); "
                              "change the settings and continue with --resume latest")
        accelerator.print(f"done: {state.step} steps; export in {export_dir}; metrics in {out / 'metrics.jsonl'}")
    accelerator.end_training()


def _export(run: Run, state: TrainerState) -> Path:
    """Export the policy, never the reference: its EMA weights when EMA is on (``exported_weights``)."""
    params = [p for _, p in run.adapter.named_trainable_parameters()]
    if run.ema is not None:
        run.ema.store(params)
        run.ema.copy_to(params)
    try:
        return export_weights(run.adapter, run.out / "export", run.config.model, method=run.config.seppo.method,
                              steps=state.step, run_config=run.config.to_dict(),
                              weights=exported_weights(run.config))
    finally:
        if run.ema is not None:
            run.ema.restore(params)


def exported_weights(config: Config) -> str:
    """The one rule for what an export holds, at the end of a run and from ``seppo-video export``:
    the EMA of the policy when ``train.ema.enabled``, else the policy itself."""
    return "ema" if config.train.ema.enabled else "policy"


def export_checkpoint(run_dir: Path, which: str = "latest", out: Path | None = None) -> Path:
    """``seppo-video export``: a checkpoint's policy (its EMA when EMA was on) in diffusers format."""
    run_dir = Path(run_dir)
    config = load_config(run_dir / "config.yaml")
    checkpoint = find_checkpoint(run_dir, which)
    adapter = load_adapter(config.model)
    tensors = policy_weights(config, checkpoint, [name for name, _ in adapter.named_trainable_parameters()])
    missing, unexpected = adapter.unet.load_state_dict(tensors, strict=False)
    if unexpected:
        raise RuntimeError(f"{checkpoint}: tensors the model does not have, e.g. {unexpected[:3]}")
    steps = checkpoint_step(checkpoint)
    return export_weights(adapter, out or run_dir / "export", config.model, method=config.seppo.method,
                          steps=steps, run_config=config.to_dict(), weights=exported_weights(config))


def policy_weights(config: Config, checkpoint: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """The trainable tensors ``names`` an export of ``checkpoint`` holds (``exported_weights``)."""
    if exported_weights(config) == "ema":
        return read_ema_weights(checkpoint, names)
    return read_trainable(checkpoint)


def noise_schedule_summary(adapter: VideoDiffusionAdapter) -> dict[str, Any]:
    """The schedule settings that decide training targets and sampling (for summary.json)."""
    keys = ("beta_schedule", "beta_start", "beta_end", "num_train_timesteps", "prediction_type",
            "timestep_spacing", "rescale_betas_zero_snr", "snr_shift_scale", "shift", "use_dynamic_shifting",
            "base_shift", "max_shift", "base_image_seq_len", "max_image_seq_len", "shift_terminal")
    return {key: adapter.scheduler_config.get(key) for key in keys}
