"""Forward-process noise and training targets: one ``(t, eps)`` per pair, shared by its two samples.

A forward process is one object (``NoiseProcess``) chosen from the backbone's scheduler config
(``noise_process``); the losses, the AAF diagnostics and the reference sampler only call its
methods, so a new process is a new class here, not a new branch in each of them:

- ``draw_timesteps`` the training timesteps for a batch of latents, ``add_noise`` ``q(x0, t, eps)``,
  ``target`` what the network regresses on, for the losses;
- ``sampler`` and ``step_options`` the scheduler that runs the reverse process, for the
  reference samples.

The processes:

- DDPM (``DDPMNoise``, the UNet backbones): ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` at
  an integer ``t ~ U{0..T-1}``; the target is read from the scheduler's ``prediction_type``: the
  noise ``eps``, the velocity ``v = sqrt(abar_t) * eps - sqrt(1 - abar_t) * x0``, or ``x0`` itself.
  Reference samples use DDIM.
- CogVideoX's DDPM (``CogVideoXNoise``): the same process on CogVideoX's own ``alphas_cumprod``
  (scaled-linear betas, SNR shift by ``snr_shift_scale``, then the zero-terminal-SNR rescale, as
  ``CogVideoXDDIMScheduler`` computes them), v-prediction; reference samples use
  ``CogVideoXDDIMScheduler``, the deterministic sampler ``CogVideoXPipeline`` ships with.
- Rectified flow (``FlowMatchingNoise``, Wan, LTX-Video): ``x_t = (1 - s) x0 + s eps`` with ``s``
  one of the scheduler's shifted training sigmas (LTX: shifted by the video's token count, as its
  pipeline shifts its sampling sigmas); the network sees the timestep ``t = s * T`` (as diffusers'
  Wan and LTX pipelines pass it) and the target is the velocity ``eps - x0``. Reference samples
  use flow-matching Euler.

Every loss (SePPO, Diffusion-DPO, SFT) and the AAF anchor compare the model's output with
``NoisedBatch.target``, so they run on any process unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from diffusers import CogVideoXDDIMScheduler, DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift
from diffusers.training_utils import compute_density_for_timestep_sampling

from seppo_video.config import PREDICTION_TYPES, NoiseSchedulerConfig, noise_family


@dataclass
class NoisedBatch:
    """Noised latents, their timesteps, and the target the model should predict for them."""

    noisy: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor


class DDPMNoise:
    """The DDPM forward process of a scheduler config, and DDIM as its reverse process.

    ``schedule`` is the backbone's scheduler config as a dict (``adapter.scheduler_config``): the
    sampler is built from it, not from the DDPM scheduler's config, which drops DDIM's keys
    (``set_alpha_to_one``, ``steps_offset``).
    """

    scheduler_class: ClassVar[type] = DDPMScheduler  # owns alphas_cumprod: add_noise, get_velocity
    sampler_class: ClassVar[type] = DDIMScheduler

    def __init__(self, schedule: dict[str, Any]):
        self.schedule = dict(schedule)
        self.scheduler = self.scheduler_class.from_config(schedule)

    @property
    def config(self):
        return self.scheduler.config

    def draw_timesteps(self, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.config.num_train_timesteps, (x0.shape[0],), generator=generator)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.scheduler.add_noise(x0, eps, t)

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The scheduler's own regression target for ``q(x0, t, eps)``: eps, v or x0."""
        kind = self.config.prediction_type
        if kind == "epsilon":
            return eps
        if kind == "v_prediction":
            return self.scheduler.get_velocity(x0, eps, t)
        if kind == "sample":
            return x0
        raise ValueError(f"prediction_type {kind!r} is not supported (allowed: {', '.join(PREDICTION_TYPES)})")

    def sampler(self, num_inference_steps: int, device: torch.device | str | None = None,
                latent_shape: tuple[int, ...] | None = None):
        """The reverse process's scheduler on this schedule, its timesteps set (for any latent shape)."""
        scheduler = self.sampler_class.from_config(self.schedule)
        scheduler.set_timesteps(num_inference_steps, device=device)
        return scheduler

    def step_options(self, eta: float, generators: list[torch.Generator]) -> dict[str, Any]:
        """Keyword arguments of the sampler's ``step``: DDIM with ``eta > 0`` draws per-sample noise."""
        return {"eta": eta, "generator": generators}


class CogVideoXNoise(DDPMNoise):
    """CogVideoX's forward process: ``add_noise`` and ``get_velocity`` of ``CogVideoXDDIMScheduler``
    read its SNR-shifted, zero-terminal-SNR ``alphas_cumprod`` (DDPMScheduler would build plain
    ones from the same betas). ``CogVideoXDPMScheduler`` computes the same table, so either folder
    trains and samples alike.

    The v-prediction error is CogVideoX's own training loss: diffusers' CogVideoX LoRA script
    (examples/cogvideo/train_cogvideox_lora.py) turns the output into ``x0`` and weights its squared
    error by ``1 / (1 - abar_t)``, which is ``(v_pred - v)^2`` exactly.
    """

    scheduler_class = CogVideoXDDIMScheduler
    sampler_class = CogVideoXDDIMScheduler

    def step_options(self, eta: float, generators: list[torch.Generator]) -> dict[str, Any]:
        if eta:  # its step accepts eta and ignores it: refuse rather than sample something else
            raise ValueError(f"eta={eta}: CogVideoXDDIMScheduler samples deterministically (use eta 0)")
        return {}


@dataclass(frozen=True)
class FlowMatchingNoise:
    """The rectified-flow forward process of a ``FlowMatchEulerDiscreteScheduler`` config.

    ``scheduler`` holds the training tables: ``sigmas[i] = shift(1 - i / T)`` for ``i = 0..T-1``
    (descending from 1 to ``shift(1 / T)``, with ``shift(v) = k v / (1 + (k - 1) v)``) and
    ``timesteps = sigmas * T``. A draw takes an unshifted noise level ``u`` in [0, 1) from
    ``timestep_sampling`` (uniform, or SD3's logit-normal) and uses the table entry whose
    unshifted level is ``u`` rounded up to the grid, ``i = floor((1 - u) T)``: training sees the
    shifted sigmas the scheduler samples with, and a larger ``logit_mean`` means more noise, as in
    the SD3 paper. (diffusers' SD3 / Flux scripts index ``floor(u T)``, the same for the default,
    symmetric densities.)

    With ``use_dynamic_shifting`` (LTX-Video) the table holds the unshifted levels and the shift
    depends on the video: its exponent ``mu`` grows linearly with the latent token count ``F h w``
    from ``base_shift`` at ``base_image_seq_len`` to ``max_shift`` at ``max_image_seq_len``
    (LTXPipeline's ``calculate_shift``), and a level ``v`` becomes the scheduler's
    ``time_shift(mu, 1, v)`` (``e^mu / (e^mu + 1 / v - 1)``), at training as at sampling. The
    sampler's ``shift_terminal`` stretch fits the inference schedule's last step and is not applied
    to training draws.
    """

    scheduler: FlowMatchEulerDiscreteScheduler
    timestep_sampling: str = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0

    @property
    def config(self):
        return self.scheduler.config

    def draw_timesteps(self, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        u = compute_density_for_timestep_sampling(
            self.timestep_sampling, x0.shape[0], logit_mean=self.logit_mean, logit_std=self.logit_std,
            generator=generator,
        )
        steps = self.config.num_train_timesteps
        index = ((1 - u) * steps).long().clamp(max=steps - 1)
        if not self.config.use_dynamic_shifting:
            return self.scheduler.timesteps[index]
        levels = self.scheduler.timesteps[index] / steps  # unshifted
        return self.scheduler.time_shift(self.mu(x0.shape), 1.0, levels) * steps

    def mu(self, latent_shape: tuple[int, ...]) -> float:
        """The dynamic shift's exponent for latents ``[..., F, h, w]``, as LTXPipeline computes it."""
        frames, height, width = latent_shape[-3:]
        config = self.config
        return calculate_shift(frames * height * width, config.base_image_seq_len, config.max_image_seq_len,
                               config.base_shift, config.max_shift)

    def sigmas_of(self, timesteps: torch.Tensor) -> torch.Tensor:
        """``s = t / T``: the inverse of the pipeline's ``t = s * T``."""
        return timesteps.float() / self.config.num_train_timesteps

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.sigmas_of(t).view(-1, *[1] * (x0.ndim - 1)).to(x0.dtype)
        return (1 - s) * x0 + s * eps

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return eps - x0

    def sampler(self, num_inference_steps: int, device: torch.device | str | None = None,
                latent_shape: tuple[int, ...] | None = None):
        """Flow-matching Euler with the training shift; step ``i`` reads sigma ``i`` (as WanPipeline).

        With dynamic shifting, as LTXPipeline (and Flux) call it: sigmas ``1 .. 1 / n`` shifted by the
        ``mu`` of ``latent_shape``, which the scheduler then stretches to its ``shift_terminal``."""
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(self.config)
        if self.config.use_dynamic_shifting:
            sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
            scheduler.set_timesteps(sigmas=sigmas, mu=self.mu(latent_shape), device=device)
        else:
            scheduler.set_timesteps(num_inference_steps, device=device)
        scheduler.set_begin_index(0)  # no timestep look-up
        return scheduler

    def step_options(self, eta: float, generators: list[torch.Generator]) -> dict[str, Any]:
        if eta:
            raise ValueError(f"eta={eta}: flow-matching Euler sampling is deterministic (use eta 0)")
        return {}


NoiseProcess = DDPMNoise | CogVideoXNoise | FlowMatchingNoise
_DDPM_PROCESSES: dict[str, type[DDPMNoise]] = {"ddpm": DDPMNoise, "cogvideox": CogVideoXNoise}


def noise_process(scheduler_config: dict[str, Any], settings: NoiseSchedulerConfig | None = None) -> NoiseProcess:
    """The training forward process for a backbone's scheduler config (``adapter.scheduler_config``).

    ``settings`` (``model.noise_scheduler``) gives the flow-matching timestep density; the
    DDPM settings are already part of ``scheduler_config``.
    """
    family = noise_family(scheduler_config)
    if family in _DDPM_PROCESSES:
        return _DDPM_PROCESSES[family](scheduler_config)
    settings = settings or NoiseSchedulerConfig()
    return FlowMatchingNoise(
        FlowMatchEulerDiscreteScheduler.from_config(scheduler_config),
        timestep_sampling=settings.timestep_sampling or "uniform",
        logit_mean=0.0 if settings.logit_mean is None else settings.logit_mean,
        logit_std=1.0 if settings.logit_std is None else settings.logit_std,
    )


def draw_pair_noise(process: NoiseProcess, x_w: torch.Tensor, generator: torch.Generator):
    """One timestep and one noise tensor per pair (shared by the pair's two samples)."""
    t = process.draw_timesteps(x_w, generator).to(x_w.device)
    eps = torch.randn(x_w.shape, generator=generator).to(x_w.device, x_w.dtype)
    return t, eps


def noise_batch(process: NoiseProcess, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> NoisedBatch:
    """``q(x0, t, eps)`` and its target."""
    return NoisedBatch(process.add_noise(x0, eps, t), t, process.target(x0, eps, t))


def noise_winners(process: NoiseProcess, x_w: torch.Tensor, generator: torch.Generator) -> NoisedBatch:
    """One fresh ``(t, eps)`` per sample (SFT, and the AAF diagnostics)."""
    t, eps = draw_pair_noise(process, x_w, generator)
    return noise_batch(process, x_w, t, eps)


def noise_pairs(process: NoiseProcess, x_w: torch.Tensor, x_other: torch.Tensor,
                generator: torch.Generator) -> NoisedBatch:
    """``q(x, t, eps)`` for winners and second samples stacked ``[x_w; x_other]``.

    Both members of pair ``i`` get the same ``t_i`` and ``eps_i``: otherwise
    ``d_w - d_ref`` would mostly measure the difference between two noise draws.
    """
    t, eps = draw_pair_noise(process, x_w, generator)
    return noise_batch(process, torch.cat([x_w, x_other]), torch.cat([t, t]), torch.cat([eps, eps]))
