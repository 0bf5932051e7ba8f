"""Run the alignment study: world data, a pretrained base, every method x seed, scores.

Every training run goes through ``seppo_video.train.train`` with a config
built from ``key=value`` overrides, exactly as a user would run it; the
world's clips enter as a latent cache, so no VAE is involved. Each finished
run leaves ``study_scores.json`` beside its outputs, so an interrupted study
resumes at the first unfinished run. Runs are independent, so ``parallel_runs``
of them can train side by side in spawned processes (each with its share of
the CPU threads and its output in ``seed<N>.log`` beside the run's folder).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from seppo_video.atomic import atomic_directory, atomic_write_json
from seppo_video.checkpoint import checkpoint_step, complete_checkpoints, read_trainable
from seppo_video.config import Config, ConfigError, ModelConfig, load_config, load_dataclass
from seppo_video.data import model_id_for, write_latent_cache
from seppo_video.models.adapters import VideoDiffusionAdapter, load_adapter
from seppo_video.models.tiny import ensure_tiny
from seppo_video.seppo.diagnostics import pool_precision
from seppo_video.seppo.pool import ReferencePool
from seppo_video.seppo.sampler import sample_latents
from seppo_video.study.world import DEFECTS, Prompt, WorldShape, bad_clip, good_clip, reward, split_prompts

# ---------------------------------------------------------------- configuration


@dataclass
class WorldConfig:
    frames: int = 8
    latent_size: int = 8
    clips_per_prompt: int = 4  # winners per training prompt
    held_out_prompts: int = 10  # of the 40 prompts; evaluation uses only these
    base_bad_fraction: float = 0.5  # share of defective clips in the base model's pretraining mix
    seed: int = 0


@dataclass
class MethodVariant:
    name: str
    overrides: list[str] = field(default_factory=list)  # training-config overrides, e.g. "seppo.aaf=none"


@dataclass
class EvalConfig:
    samples_per_prompt: int = 2
    num_inference_steps: int = 10
    guidance_scale: float = 3.0
    precision_methods: list[str] = field(default_factory=lambda: ["seppo"])
    precision_winners: int = 8
    precision_draws: int = 64
    confidence: float = 0.95
    n_boot: int = 2000


@dataclass
class StudyConfig:
    output_dir: str = "runs/study_cpu"
    report_dir: str = "docs/study"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    world: WorldConfig = field(default_factory=WorldConfig)
    base_steps: int = 400
    base_overrides: list[str] = field(default_factory=list)  # pretraining (SFT on the mixture)
    align_steps: int = 60
    eval_every: int = 20
    align_overrides: list[str] = field(default_factory=list)  # shared by every method
    methods: list[MethodVariant] = field(default_factory=list)
    eval: EvalConfig = field(default_factory=EvalConfig)
    parallel_runs: int = 1  # (method, seed) runs trained at once, each in its own process


def load_study_config(path: str | Path | None, overrides: list[str] = ()) -> StudyConfig:
    study = load_dataclass(StudyConfig, path, overrides)
    names = [m.name for m in study.methods]
    if not names:
        raise ConfigError("methods: list at least one {name, overrides} entry")
    if len(set(names)) != len(names):
        raise ConfigError(f"methods: names must be unique, got {names}")
    if "seppo" not in names:
        raise ConfigError("methods: the study compares every method with one named 'seppo'; add it")
    unknown = set(study.eval.precision_methods) - set(names)
    if unknown:
        raise ConfigError(f"eval.precision_methods: {sorted(unknown)} are not among methods ({', '.join(names)})")
    if study.align_steps % study.eval_every:
        raise ConfigError(f"eval_every: must divide align_steps ({study.align_steps}), got {study.eval_every}")
    if len(study.seeds) < 2:
        raise ConfigError("seeds: at least 2 are needed for a confidence interval over seeds")
    if study.parallel_runs < 1:
        raise ConfigError(f"parallel_runs: must be >= 1, got {study.parallel_runs}")
    return study


# ---------------------------------------------------------------- world data


MODEL = ["model.kind=modelscope", "model.trainable=full"]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # where scoring runs (training: accelerate decides)


def _training_config(study: StudyConfig, overrides: list[str]) -> Config:
    world = study.world
    fixed = [*MODEL, f"data.num_frames={world.frames}", "train.log_with=none", "sample.prompts=[]"]
    return load_config(None, [*fixed, *overrides])


def _world_clips(prompts: list[Prompt], shape: WorldShape, per_prompt: int, seed: int, bad_fraction: float):
    """Per item: (prompt, good clip, defective clip); the item's ``winner`` is bad with ``bad_fraction``."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for index in range(len(prompts) * per_prompt):
        prompt = prompts[index % len(prompts)]
        defect = DEFECTS[index % len(DEFECTS)]
        good, bad = good_clip(shape, prompt, generator), bad_clip(shape, prompt, defect, generator)
        shown = bad if torch.rand((), generator=generator).item() < bad_fraction else good
        items.append((prompt, shown, bad))
    return items


def write_world_cache(out: Path, items, adapter: VideoDiffusionAdapter, model_id: str, resolution: int) -> Path:
    prompts = [prompt.text for prompt, _, _ in items]
    with torch.no_grad():
        embeds = adapter.encode_prompt(prompts)
    return write_latent_cache(
        out,
        {
            "latents": torch.stack([winner for _, winner, _ in items]),
            "loser_latents": torch.stack([loser for _, _, loser in items]),
            "prompt_embeds": embeds,
        },
        [f"clip{i:05d}" for i in range(len(items))],
        prompts,
        model_id=model_id,
        resolution=resolution,
        num_frames=items[0][1].shape[1],
        source="seppo_video.study.world",
    )


def _resolution(adapter: VideoDiffusionAdapter, latent_size: int) -> int:
    return latent_size * 2 ** (len(adapter.vae.config.block_out_channels) - 1)


# ---------------------------------------------------------------- base model


BASE_MARK = "seppo_study_base.json"


def pretrain_base(study: StudyConfig, out: Path, train_prompts: list[Prompt]) -> Path:
    """SFT on a good/bad mixture from the random-init tiny ModelScope model, saved as a pipeline folder.

    Cached: a finished base (same world and pretraining settings) is reused.
    """
    from seppo_video.train import train

    base_dir = out / "base_model"
    identity = {"world": asdict(study.world), "steps": study.base_steps, "overrides": study.base_overrides}
    if (base_dir / BASE_MARK).exists() and json.loads((base_dir / BASE_MARK).read_text()) == identity:
        return base_dir
    world, tiny = study.world, ensure_tiny("modelscope")
    tiny_model = ModelConfig(kind="modelscope")
    adapter = load_adapter(tiny_model, configure=False)
    resolution = _resolution(adapter, world.latent_size)
    items = _world_clips(train_prompts, _shape(world), world.clips_per_prompt, world.seed, world.base_bad_fraction)
    cache = write_world_cache(out / "data" / "base_mixture", items, adapter, model_id_for(tiny_model), resolution)
    run_dir = out / "base_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    train(_training_config(study, [
        f"output_dir={run_dir}", "seppo.method=sft", f"data.resolution={resolution}", f"data.latent_cache={cache}",
        f"train.max_steps={study.base_steps}", f"train.checkpoint_every={study.base_steps}",
        f"seed={world.seed}", *study.base_overrides,
    ]))
    with atomic_directory(base_dir) as tmp:
        shutil.copytree(tiny, tmp, dirs_exist_ok=True)
        shutil.rmtree(tmp / "unet")
        shutil.copytree(run_dir / "export" / "unet", tmp / "unet")
        (tmp / BASE_MARK).write_text(json.dumps(identity))
    return base_dir


def _shape(world: WorldConfig) -> WorldShape:
    return WorldShape(frames=world.frames, size=world.latent_size)


# ---------------------------------------------------------------- evaluation


class Evaluator:
    """Scores weights on the held-out prompts with the world's reward (fixed sample seeds)."""

    def __init__(self, model: ModelConfig, prompts: list[Prompt], settings: EvalConfig, world: WorldConfig):
        self.adapter = load_adapter(model)
        self.adapter.to(DEVICE)
        self.adapter.unet.to(DEVICE)
        self.base_state = {k: v.clone() for k, v in self.adapter.trainable_state().items()}
        self.prompts, self.settings, self.world = prompts, settings, world
        repeats = settings.samples_per_prompt
        with torch.no_grad():
            self.embeds = self.adapter.encode_prompt([p.text for p in prompts]).repeat_interleave(repeats, 0)
            self.negative = self.adapter.encode_prompt([""])
        self.seeds = [1000 * i + k for i in range(len(prompts)) for k in range(repeats)]

    def load(self, tensors: dict[str, torch.Tensor] | None) -> None:
        """Policy weights to score; ``None`` restores the base model."""
        self.adapter.unet.load_state_dict(tensors if tensors is not None else self.base_state, strict=False)

    def rewards(self) -> np.ndarray:
        """Mean reward per held-out prompt over its sample seeds: ``[prompts]``."""
        latents = sample_latents(
            self.adapter, self.embeds, self.negative, seeds=self.seeds, num_frames=self.world.frames,
            latent_size=(self.world.latent_size, self.world.latent_size),
            num_inference_steps=self.settings.num_inference_steps, guidance_scale=self.settings.guidance_scale,
        )
        repeats = self.settings.samples_per_prompt
        values = [reward(clip, self.prompts[i // repeats]) for i, clip in enumerate(latents)]
        return np.asarray(values).reshape(len(self.prompts), repeats).mean(axis=1)


def score_run(evaluator: Evaluator, run_dir: Path, config: Config, winners: dict[str, torch.Tensor] | None) -> dict:
    """Rewards (and, with ``winners``, AAF precision over the pool) at every checkpoint of a run."""
    record: dict[str, Any] = {"steps": [], "rewards": [], "precision": []}
    for checkpoint in complete_checkpoints(run_dir):
        step = checkpoint_step(checkpoint)
        evaluator.load(read_trainable(checkpoint))
        record["steps"].append(step)
        record["rewards"].append(evaluator.rewards().tolist())
        if winners is not None:
            pool = ReferencePool(config.seppo.pool_size)
            pool.load(checkpoint / "pool")
            record["precision"].append(pool_precision(
                evaluator.adapter, pool, winners["latents"], winners["prompt_embeds"],
                draws=evaluator.settings.precision_draws, policy_step=step,
            ))
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    record["flip_rate"] = [[m["step"], m["flip_rate"]] for m in metrics if "flip_rate" in m]
    # The step the collapse alarm fired at (docs/training_health.md), or None.
    alarm = json.loads((run_dir / "summary.json").read_text()).get("collapse_alarm")
    record["collapse_step"] = alarm["step"] if alarm else None
    return record


# ---------------------------------------------------------------- the study


@dataclass
class _Shared:
    """What every (method, seed) run needs, built once by the parent process."""

    study: StudyConfig
    base_dir: Path
    cache: Path
    resolution: int
    winners: dict[str, torch.Tensor]  # for the AAF sign precision


def run_study(study: StudyConfig) -> dict[str, Any]:
    """Train and score every (method, seed); returns the raw scores (see ``report``)."""
    out = Path(study.output_dir)
    world = study.world
    train_prompts, held_out = split_prompts(world.held_out_prompts, world.seed)
    base_dir = pretrain_base(study, out, train_prompts)
    evaluator = _evaluator(study, base_dir)
    resolution = _resolution(evaluator.adapter, world.latent_size)
    # Winners for alignment: fresh good clips; their defective twins are the DPO baseline's losers.
    items = _world_clips(train_prompts, _shape(world), world.clips_per_prompt, world.seed + 1, bad_fraction=0.0)
    model_id = model_id_for(_base_model(base_dir))
    cache = write_world_cache(out / "data" / "aligned", items, evaluator.adapter, model_id, resolution)
    winners = _precision_winners(items[: study.eval.precision_winners], evaluator.adapter)
    evaluator.load(None)
    scores: dict[str, Any] = {"base": evaluator.rewards().tolist(), "held_out": [p.text for p in held_out], "runs": {}}
    jobs = [(m, s) for m in study.methods for s in study.seeds]
    todo = [(m, s) for m, s in jobs if not (_run_dir(study, m, s) / "study_scores.json").exists()]
    _run_all(_Shared(study, base_dir, cache, resolution, winners), todo)
    for method, seed in jobs:
        done = _run_dir(study, method, seed) / "study_scores.json"
        scores["runs"].setdefault(method.name, {})[str(seed)] = json.loads(done.read_text())
    return scores


def _run_all(shared: _Shared, todo: list[tuple[MethodVariant, int]]) -> None:
    progress = tqdm(total=len(todo), desc="study runs", unit="run")
    if shared.study.parallel_runs == 1 or len(todo) <= 1:
        for method, seed in todo:
            _train_and_score(shared, method, seed)
            progress.update()
        return
    # Longest runs first (those measuring AAF precision), so no worker is left with one at the end.
    todo = sorted(todo, key=lambda job: job[0].name not in shared.study.eval.precision_methods)
    threads = max(1, (os.cpu_count() or 1) // shared.study.parallel_runs)
    pool = ProcessPoolExecutor(shared.study.parallel_runs, mp_context=get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))
    futures: dict[Future, tuple[MethodVariant, int]] = {
        pool.submit(_train_and_score_logged, shared, method, seed): (method, seed) for method, seed in todo
    }
    try:
        for future in as_completed(futures):
            method, seed = futures[future]
            try:
                future.result()
            except Exception as err:
                log = _log_path(shared.study, method, seed)
                raise RuntimeError(f"study run {method.name} seed {seed} failed: {err} (its output: {log})") from err
            progress.update()
    finally:
        pool.shutdown(cancel_futures=True)


def _run_dir(study: StudyConfig, method: MethodVariant, seed: int) -> Path:
    return Path(study.output_dir) / "runs" / method.name / f"seed{seed}"


def _train_and_score(shared: _Shared, method: MethodVariant, seed: int) -> None:
    """One alignment run from the base, then its scores in ``study_scores.json`` (which marks it finished)."""
    from seppo_video.train import train

    study, run_dir = shared.study, _run_dir(shared.study, method, seed)
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run restarts from its beginning
    config = _training_config(study, [
        f"output_dir={run_dir}", f"seed={seed}", f"model.pretrained={shared.base_dir}",
        f"data.resolution={shared.resolution}", f"data.latent_cache={shared.cache}",
        f"train.max_steps={study.align_steps}", f"train.checkpoint_every={study.eval_every}",
        f"train.checkpoints_keep={study.align_steps // study.eval_every}",
        *study.align_overrides, *method.overrides,
    ])
    train(config)
    measured = shared.winners if method.name in study.eval.precision_methods else None
    atomic_write_json(run_dir / "study_scores.json", score_run(_evaluator(study, shared.base_dir), run_dir, config,
                                                                 measured))


def _train_and_score_logged(shared: _Shared, method: MethodVariant, seed: int) -> None:
    """``_train_and_score`` in a worker process, its progress bars and warnings going to the run's log."""
    log = _log_path(shared.study, method, seed)
    log.parent.mkdir(parents=True, exist_ok=True)
    with _output_to(log):
        _train_and_score(shared, method, seed)


def _log_path(study: StudyConfig, method: MethodVariant, seed: int) -> Path:
    run_dir = _run_dir(study, method, seed)
    return run_dir.parent / f"{run_dir.name}.log"


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)  # the runs share the cores instead of each oversubscribing them


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Point this process's stdout and stderr (file descriptors, so C libraries too) at ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


_EVALUATORS: dict[tuple[Path, str, str], Evaluator] = {}  # per process: loading the model is the slow part


def _evaluator(study: StudyConfig, base_dir: Path) -> Evaluator:
    key = (base_dir, repr(study.eval), repr(study.world))
    if key not in _EVALUATORS:
        _, held_out = split_prompts(study.world.held_out_prompts, study.world.seed)
        _EVALUATORS[key] = Evaluator(_base_model(base_dir), held_out, study.eval, study.world)
    return _EVALUATORS[key]


def _base_model(base_dir: Path) -> ModelConfig:
    return ModelConfig(kind="modelscope", pretrained=str(base_dir), trainable="full")


def _precision_winners(items, adapter: VideoDiffusionAdapter) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        embeds = adapter.encode_prompt([prompt.text for prompt, _, _ in items])
    return {"latents": torch.stack([winner for _, winner, _ in items]).to(DEVICE), "prompt_embeds": embeds}
