"""Run the alignment study: tune every method on validation prompts, then compare them on held-out ones.

1. **Base**: a world base model (``seppo-video make-world-base``; the study reads the world's
   frames, resolution and prompt split from its ``world_base.json``, so every run sees the world
   the base was trained on).
2. **Tuning**: each method trains once per point of its own hyperparameter grid (the same number
   of runs for every tuned method, one training seed), from the base, on the winners of the
   training prompts; each run's final policy is scored on the *validation* prompts, and the point
   with the highest mean reward is chosen. Ablations (``tuned_as``) reuse the chosen point of the
   method they ablate, so they differ from it in one setting only.
3. **Comparison**: each method with its chosen point, for every seed: the validation reward at
   every checkpoint (the curves), and the *held-out* prompts scored once, at the final step.

Every training run goes through ``seppo_video.train.train`` with a config built from
``key=value`` overrides, exactly as a user would run it, on ``data.kind: world``. Each finished
run leaves ``study_scores.json`` beside its outputs, so an interrupted study resumes at the first
unfinished run; ``parallel_runs`` of them train side by side in spawned processes (each with its
share of the CPU threads and its output in ``<run>.log``).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import threading
import time
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

from seppo_video.atomic import atomic_write_json
from seppo_video.checkpoint import checkpoint_step, complete_checkpoints
from seppo_video.config import Config, ConfigError, ModelConfig, load_config, load_dataclass
from seppo_video.data import world_dataset
from seppo_video.data.world import PromptSplit, split_prompts
from seppo_video.models.adapters import latent_shape, resolve_paths
from seppo_video.seppo.diagnostics import pool_precision
from seppo_video.seppo.pool import ReferencePool
from seppo_video.study.base import DENOISER, WORLD_BASE_INFO, build_world_base, world_base_config
from seppo_video.study.evaluate import DEVICE, WorldEvaluator, WorldSampling
from seppo_video.train import policy_weights

# ---------------------------------------------------------------- configuration


@dataclass
class MethodVariant:
    name: str
    overrides: list[str] = field(default_factory=list)  # training-config overrides, e.g. "seppo.aaf=none"
    # Hyperparameters tuned on the validation prompts: dotted key -> candidate values (every combination).
    grid: dict[str, list[Any]] = field(default_factory=dict)
    tuned_as: str | None = None  # an ablation: the chosen point of this other method, not a grid of its own


@dataclass
class TuningConfig:
    seed: int = 100  # the training seed of every tuning run (the comparison uses `seeds`)
    samples_per_prompt: int = 4


@dataclass
class EvalConfig:
    samples_per_prompt: int = 8
    num_inference_steps: int = 20
    guidance_scale: float = 1.0
    precision_methods: list[str] = field(default_factory=lambda: ["seppo"])
    precision_winners: int = 8
    precision_draws: int = 32
    confidence: float = 0.95
    n_boot: int = 2000


@dataclass
class StudyConfig:
    output_dir: str = "runs/study_cpu"
    report_dir: str = "docs/study"
    kind: str = "modelscope"  # the backbone: 'modelscope' (UNet) or 'wan' (flow-matching transformer)
    base: str = "world"  # model.pretrained of the base: 'world' (shipped for the kind) or a make-world-base folder
    # With a folder as ``base``: the make-world-base config that builds it there when it is missing.
    base_config: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    align_steps: int = 200
    eval_every: int = 25
    align_overrides: list[str] = field(default_factory=list)  # shared by every run (the winners' data too)
    methods: list[MethodVariant] = field(default_factory=list)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    parallel_runs: int = 1  # runs trained at once, each in its own process


def load_study_config(path: str | Path | None, overrides: list[str] = ()) -> StudyConfig:
    study = load_dataclass(StudyConfig, path, overrides)
    names = [m.name for m in study.methods]
    if not names:
        raise ConfigError("methods: list at least one {name, overrides, grid} entry")
    if len(set(names)) != len(names):
        raise ConfigError(f"methods: names must be unique, got {names}")
    if "seppo" not in names:
        raise ConfigError("methods: the study compares every method with one named 'seppo'; add it")
    for method in study.methods:
        if method.tuned_as is not None and (method.tuned_as not in names or method.grid):
            raise ConfigError(f"methods: {method.name}.tuned_as must name another method ({', '.join(names)}) "
                              "and comes instead of a grid")
        if any(not values for values in method.grid.values()):
            raise ConfigError(f"methods: {method.name}.grid: every key needs at least one value")
    budgets = {len(grid_points(m)) for m in study.methods if m.tuned_as is None}
    if len(budgets) > 1:
        sizes = ", ".join(f"{m.name} {len(grid_points(m))}" for m in study.methods if m.tuned_as is None)
        raise ConfigError(f"methods: every tuned method gets the same number of tuning runs, got {sizes}")
    unknown = set(study.eval.precision_methods) - set(names)
    if unknown:
        raise ConfigError(f"eval.precision_methods: {sorted(unknown)} are not among methods ({', '.join(names)})")
    if study.align_steps % study.eval_every:
        raise ConfigError(f"eval_every: must divide align_steps ({study.align_steps}), got {study.eval_every}")
    if len(study.seeds) < 2:
        raise ConfigError("seeds: at least 2 are needed for a confidence interval over seeds")
    if study.tuning.seed in study.seeds:
        raise ConfigError(f"tuning.seed: {study.tuning.seed} is also a comparison seed; use another")
    if study.parallel_runs < 1:
        raise ConfigError(f"parallel_runs: must be >= 1, got {study.parallel_runs}")
    if study.kind not in DENOISER:
        raise ConfigError(f"kind: the world bases are {sorted(DENOISER)}, got {study.kind!r}")
    if study.base_config is not None and study.base == "world":
        raise ConfigError("base_config: builds a base into the folder named by base; 'world' is the shipped one")
    return study


def grid_points(method: MethodVariant) -> list[dict[str, Any]]:
    """Every combination of the method's grid values (one point, ``{}``, without a grid)."""
    keys = list(method.grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(method.grid[k] for k in keys))]


def _as_overrides(point: dict[str, Any]) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in point.items()]


# ---------------------------------------------------------------- the world the base was trained on


@dataclass
class World:
    """What every run shares: the base model, the world's data settings and its prompt split."""

    base: ModelConfig
    data_overrides: list[str]  # frames, resolution, the prompt split
    split: PromptSplit
    frames: int
    size: int  # latent height = width


def world_of(study: StudyConfig) -> World:
    base = ModelConfig(kind=study.kind, pretrained=study.base, trainable="full")
    if study.base_config is not None and not (Path(study.base) / WORLD_BASE_INFO).is_file():
        build_world_base(Path(study.base_config), Path(study.base), threads=torch.get_num_threads())
    recipe = world_base_config(resolve_paths(base).pipeline)
    if recipe.model.kind != study.kind:
        raise ConfigError(f"kind: {study.kind!r}, but the base {study.base} is a {recipe.model.kind!r} model")
    data = recipe.data
    _, frames, size, _ = latent_shape(base, data.num_frames, data.resolution)
    world = data.world
    return World(
        base=base,
        data_overrides=[f"data.num_frames={data.num_frames}", f"data.resolution={data.resolution}",
                        f"data.world.split_seed={world.split_seed}",
                        f"data.world.validation_prompts={world.validation_prompts}",
                        f"data.world.held_out_prompts={world.held_out_prompts}"],
        split=split_prompts(world.validation_prompts, world.held_out_prompts, world.split_seed),
        frames=frames, size=size,
    )


def _training_config(study: StudyConfig, world: World, overrides: list[str]) -> Config:
    fixed = [f"model.kind={study.kind}", "model.trainable=full", "data.kind=world", f"model.pretrained={study.base}",
             *world.data_overrides, "train.log_with=none", "sample.prompts=[]"]
    return load_config(None, [*fixed, *study.align_overrides, *overrides])


# ---------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """One training run: a method at a grid point, for one seed; ``phase`` is 'tune' or 'final'."""

    phase: str
    method: MethodVariant
    point: tuple[tuple[str, Any], ...]
    seed: int
    index: int  # the grid point's number (tuning) or the seed (comparison): names the run folder

    @property
    def name(self) -> str:
        return f"{self.phase}/{self.method.name}/{'point' if self.phase == 'tune' else 'seed'}{self.index}"


def _run_dir(study: StudyConfig, job: Job) -> Path:
    return Path(study.output_dir) / "runs" / job.name


def run_study(study: StudyConfig) -> dict[str, Any]:
    """Tune, choose, compare; returns every score (see ``report.summarise_study``)."""
    world = world_of(study)
    base_scores = _base_scores(study, world)
    tuned = [m for m in study.methods if m.tuned_as is None]
    tuning_jobs = [Job("tune", m, tuple(p.items()), study.tuning.seed, i)
                   for m in tuned for i, p in enumerate(grid_points(m))]
    _run_all(study, world, tuning_jobs, "tuning runs")
    tuning = {m.name: [] for m in tuned}
    for job in tuning_jobs:
        record = json.loads((_run_dir(study, job) / "study_scores.json").read_text())
        tuning[job.method.name].append({"point": dict(job.point), "validation": record["validation"]})
    chosen = {name: max(rows, key=lambda row: np.mean(row["validation"]))["point"] for name, rows in tuning.items()}
    chosen.update({m.name: chosen[m.tuned_as] for m in study.methods if m.tuned_as is not None})
    final_jobs = [Job("final", m, tuple(chosen[m.name].items()), seed, seed) for m in study.methods for seed in study.seeds]
    _run_all(study, world, final_jobs, "comparison runs")
    runs: dict[str, dict[str, Any]] = {}
    for job in final_jobs:
        runs.setdefault(job.method.name, {})[str(job.seed)] = json.loads(
            (_run_dir(study, job) / "study_scores.json").read_text())
    return {
        "prompts": {"validation": [p.text for p in world.split.validation],
                    "held_out": [p.text for p in world.split.held_out]},
        "base": base_scores, "tuning": tuning, "chosen": chosen, "runs": runs,
    }


def _base_scores(study: StudyConfig, world: World) -> dict[str, list[list[float]]]:
    """The base model's rewards ``[prompts, samples]`` on both evaluation splits (cached like a run)."""
    path = Path(study.output_dir) / "base_scores.json"
    identity = {"base": study.base, "eval": asdict(study.eval), "tuning": asdict(study.tuning)}
    if path.is_file() and json.loads(path.read_text())["identity"] == identity:
        return json.loads(path.read_text())["scores"]
    scores = {name: _evaluator(study, world, split, samples).rewards().tolist() for name, split, samples in
              (("validation", "validation", study.eval.samples_per_prompt),
               ("held_out", "held_out", study.eval.samples_per_prompt),
               ("validation_tuning", "validation", study.tuning.samples_per_prompt))}
    atomic_write_json(path, {"identity": identity, "scores": scores})
    return scores


def _run_all(study: StudyConfig, world: World, jobs: list[Job], label: str) -> None:
    todo = [job for job in jobs if not (_run_dir(study, job) / "study_scores.json").exists()]
    progress = tqdm(total=len(todo), desc=label, unit="run")
    if study.parallel_runs == 1 or len(todo) <= 1:
        for job in todo:
            _train_and_score(study, world, job)
            progress.update()
        return
    # Longest runs first (those measuring AAF precision), so no worker is left with one at the end.
    todo = sorted(todo, key=lambda job: not _measures_precision(study, job))
    threads = max(1, (os.cpu_count() or 1) // study.parallel_runs)
    pool = ProcessPoolExecutor(study.parallel_runs, mp_context=get_context("spawn"),
                               initializer=_init_worker, initargs=(threads, os.getpid()))
    futures: dict[Future, Job] = {pool.submit(_train_and_score_logged, study, world, job): job for job in todo}
    try:
        for future in as_completed(futures):
            job = futures[future]
            try:
                future.result()
            except Exception as err:
                raise RuntimeError(f"study run {job.name} failed: {err} (its output: {_log_path(study, job)})") from err
            progress.update()
    finally:
        pool.shutdown(cancel_futures=True)


def _measures_precision(study: StudyConfig, job: Job) -> bool:
    return job.phase == "final" and job.method.name in study.eval.precision_methods


def _train_and_score(study: StudyConfig, world: World, job: Job) -> None:
    """One run from the base, then its scores in ``study_scores.json`` (which marks it finished)."""
    from seppo_video.train import train

    run_dir = _run_dir(study, job)
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run restarts from its beginning
    final = job.phase == "final"
    config = _training_config(study, world, [
        f"output_dir={run_dir}", f"seed={job.seed}", f"train.max_steps={study.align_steps}",
        f"train.checkpoint_every={study.eval_every if final else study.align_steps}",
        f"train.checkpoints_keep={study.align_steps // study.eval_every}",
        *job.method.overrides, *_as_overrides(dict(job.point)),
    ])
    train(config)
    scores = (score_run(study, world, run_dir, config, _measures_precision(study, job)) if final
              else _tuning_score(study, world, run_dir, config))
    atomic_write_json(run_dir / "study_scores.json", scores)


def _tuning_score(study: StudyConfig, world: World, run_dir: Path, config: Config) -> dict[str, Any]:
    evaluator = _evaluator(study, world, "validation", study.tuning.samples_per_prompt)
    checkpoint = complete_checkpoints(run_dir)[-1]
    evaluator.load(policy_weights(config, checkpoint, list(evaluator.base_state)))
    return {"step": checkpoint_step(checkpoint), "validation": evaluator.rewards().tolist()}


def score_run(study: StudyConfig, world: World, run_dir: Path, config: Config, measure: bool) -> dict[str, Any]:
    """Validation rewards at every checkpoint, held-out rewards at the last, and with ``measure`` the
    AAF sign precision of each checkpoint against its pool."""
    validation = _evaluator(study, world, "validation", study.eval.samples_per_prompt)
    record: dict[str, Any] = {"steps": [], "validation": [], "precision": []}
    winners = _precision_winners(study, world, validation) if measure else None
    checkpoints = complete_checkpoints(run_dir)
    for checkpoint in checkpoints:
        step = checkpoint_step(checkpoint)
        validation.load(policy_weights(config, checkpoint, list(validation.base_state)))
        record["steps"].append(step)
        record["validation"].append(validation.rewards().tolist())
        if winners is not None:
            pool = ReferencePool(config.seppo.pool_size)
            pool.load(checkpoint / "pool")
            record["precision"].append(pool_precision(
                validation.adapter, pool, winners["latents"], winners["prompt_embeds"],
                draws=study.eval.precision_draws, policy_step=step,
            ))
    held_out = _evaluator(study, world, "held_out", study.eval.samples_per_prompt)
    held_out.load(policy_weights(config, checkpoints[-1], list(held_out.base_state)))
    record["held_out"] = held_out.rewards().tolist()
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    record["flip_rate"] = [[m["step"], m["flip_rate"]] for m in metrics if "flip_rate" in m]
    # The step the collapse alarm fired at (docs/training_health.md), or None.
    alarm = json.loads((run_dir / "summary.json").read_text()).get("collapse_alarm")
    record["collapse_step"] = alarm["step"] if alarm else None
    return record


def _train_and_score_logged(study: StudyConfig, world: World, job: Job) -> None:
    """``_train_and_score`` in a worker process, its progress bars and warnings going to the run's log."""
    log = _log_path(study, job)
    log.parent.mkdir(parents=True, exist_ok=True)
    with _output_to(log):
        _train_and_score(study, world, job)


def _log_path(study: StudyConfig, job: Job) -> Path:
    run_dir = _run_dir(study, job)
    return run_dir.parent / f"{run_dir.name}.log"


def _init_worker(threads: int, parent: int) -> None:
    torch.set_num_threads(threads)  # the runs share the cores instead of each oversubscribing them
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int, poll_seconds: float = 2.0) -> None:
    """A killed study (SIGKILL, or SIGTERM, which skips the pool's shutdown) would leave its workers
    training on, writing into runs the next launch restarts; a worker whose parent is gone exits."""
    while os.getppid() == parent:
        time.sleep(poll_seconds)
    os._exit(1)


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


# ---------------------------------------------------------------- evaluators

_EVALUATORS: dict[tuple[str, str, int, str], WorldEvaluator] = {}  # per process: loading the model is the slow part


def _evaluator(study: StudyConfig, world: World, split: str, samples: int) -> WorldEvaluator:
    """The evaluator of one prompt split (``validation`` or ``held_out``), ``samples`` per prompt, base weights loaded."""
    key = (study.base, split, samples, repr(study.eval))
    if key not in _EVALUATORS:
        prompts = getattr(world.split, split)
        sampling = WorldSampling(samples, study.eval.num_inference_steps, study.eval.guidance_scale)
        _EVALUATORS[key] = WorldEvaluator(world.base, prompts, sampling, world.frames, world.size)
    evaluator = _EVALUATORS[key]
    evaluator.load(None)
    return evaluator


def _precision_winners(study: StudyConfig, world: World, evaluator: WorldEvaluator) -> dict[str, torch.Tensor]:
    """The first winners of the training data, for the AAF sign precision."""
    config = _training_config(study, world, [])
    dataset = world_dataset(config.data, config.model, pairs=False)
    items = [dataset[i] for i in range(study.eval.precision_winners)]
    with torch.no_grad():
        embeds = evaluator.adapter.encode_prompt([item["prompt"] for item in items])
    return {"latents": torch.stack([item["latents"] for item in items]).to(DEVICE), "prompt_embeds": embeds}
