"""Reading run folders for the viewer: sample videos, training curves, exports, evaluation reports.

A folder may be a training run (the layout in ``docs/run_layout.md``), a
folder written by ``seppo-video sample`` (``index.json`` at its top), an
export folder (``seppo_export.json``) or an evaluation output
(``report.json``). Reading never fails on bad content: what cannot be read
becomes a message in ``Run.problems`` and the rest is still shown. Only a
path that is not a folder raises ``RunFolderError``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from seppo_video.export import EXPORT_INFO
from seppo_video.sample import BASE_SAMPLES

# The loss, the flipper, and the training-health figures (docs/training_health.md): the winner and
# second-sample terms apart, the saturated share, the inside term's size and spread, the winners' error.
PLOTTED_METRICS = ("loss", "flip_rate", "implicit_acc", "d_w_rel", "d_ref_rel", "saturated", "inside_abs",
                   "inside_std", "err_w")
EVAL_KEYS = ("metric", "mean", "ci_low", "ci_high")
MAX_MESSAGES_PER_FILE = 5
T = TypeVar("T")


class RunFolderError(ValueError):
    """A path given as a run folder is missing or not a folder."""


@dataclass(frozen=True)
class Sample:
    prompt: str
    seed: int
    path: Path


@dataclass(frozen=True)
class MetricPoint:
    step: int
    metric: str
    value: float


@dataclass(frozen=True)
class EvalRow:
    model: str
    metric: str
    mean: float
    ci_low: float
    ci_high: float


@dataclass
class Run:
    name: str
    path: Path
    samples: list[Sample] = field(default_factory=list)
    metrics: list[MetricPoint] = field(default_factory=list)
    export: Path | None = None
    evaluation: list[EvalRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{len(self.samples)} videos",
            f"{len({p.step for p in self.metrics})} logged steps",
            "export" if self.export else "no export",
            f"evaluation ({len(self.evaluation)} rows)" if self.evaluation else "no evaluation",
        ]
        return ", ".join(parts)

    def note(self, file: Path, value: T, problems: list[str]) -> T:
        """Keep ``problems`` found in ``file`` (named relative to the run folder); return ``value``."""
        shown = file.relative_to(self.path) if file.is_relative_to(self.path) else file
        self.problems += [f"{shown}: {problem}" for problem in problems]
        return value


def read_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Read every folder; raise ``RunFolderError`` naming all paths that are not folders.

    A run whose folder also holds the base model's samples (``base_samples/``, written by a run on
    the synthetic world) becomes two columns, ``<name>: before`` (the base) and ``<name>: after``.
    """
    folders = [Path(p).expanduser().resolve() for p in paths]
    missing = [str(p) for p, folder in zip(paths, folders, strict=True) if not folder.is_dir()]
    if missing:
        raise RunFolderError("not a folder: " + ", ".join(missing))
    runs = []
    for folder, name in zip(folders, unique_names(folders), strict=True):
        run = read_run(folder, name)
        before = folder / BASE_SAMPLES / "index.json"
        if before.is_file():
            base = Run(name=f"{name}: before", path=folder)
            base.samples = base.note(before, *read_samples(before))
            run.name = f"{name}: after"
            runs.append(base)
        runs.append(run)
    return runs


def unique_names(folders: Sequence[Path]) -> list[str]:
    """Folder names, with the parent folder prepended (and then a counter) where they clash."""
    names = [f.name or str(f) for f in folders]
    clashing = {n for n, count in Counter(names).items() if count > 1}
    names = [f"{f.parent.name}/{n}" if n in clashing else n for f, n in zip(folders, names, strict=True)]
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return unique


def read_run(folder: Path, name: str | None = None) -> Run:
    """Everything the viewer shows from one folder; problems are collected, not raised."""
    run = Run(name=name or folder.name, path=folder)
    index = _first_existing(folder / "index.json", folder / "samples" / "index.json")
    if index is not None:
        run.samples = run.note(index, *read_samples(index))
    metrics_file = folder / "metrics.jsonl"
    if metrics_file.is_file():
        run.metrics = run.note(metrics_file, *read_metrics(metrics_file))
    info = _first_existing(folder / "export" / EXPORT_INFO, folder / EXPORT_INFO)
    if info is not None:
        run.export = run.note(info, *read_export_info(info))
    report = _first_existing(folder / "eval" / "report.json", folder / "report.json")
    if report is not None:
        run.evaluation = run.note(report, *read_evaluation(report))
    if not any((index, metrics_file.is_file(), info, report)):
        run.problems.append(
            "nothing to show: no samples/index.json, metrics.jsonl, export/ or eval/report.json "
            "(see docs/run_layout.md)"
        )
    return run


def _first_existing(*files: Path) -> Path | None:
    return next((f for f in files if f.is_file()), None)


def _load_json(file: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(file.read_text()), None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return None, f"cannot be read as JSON ({err})"


def read_samples(index: Path) -> tuple[list[Sample], list[str]]:
    """The videos listed in a ``seppo-video sample`` ``index.json`` that exist inside its folder."""
    data, error = _load_json(index)
    if error:
        return [], [error]
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, list):
        return [], ["expected an object with a 'videos' list"]
    samples, problems = [], []
    for number, record in enumerate(videos):
        sample, problem = _read_sample(index.parent, record)
        if sample:
            samples.append(sample)
        else:
            problems.append(f"video {number}: {problem}")
    return samples, _capped(problems)


def _read_sample(root: Path, record: Any) -> tuple[Sample | None, str]:
    if not isinstance(record, dict):
        return None, "not an object"
    prompt, seed, mp4 = record.get("prompt"), record.get("seed"), record.get("mp4")
    if not isinstance(prompt, str) or not isinstance(seed, int) or not isinstance(mp4, str):
        return None, "needs a string 'prompt', an integer 'seed' and a string 'mp4'"
    path = (root / mp4).resolve()
    if not path.is_relative_to(root.resolve()):
        return None, f"{mp4!r} is outside the samples folder"
    if not path.is_file():
        return None, f"missing file {mp4}"
    return Sample(prompt, seed, path), ""


def read_metrics(file: Path) -> tuple[list[MetricPoint], list[str]]:
    """The plotted metrics of each ``metrics.jsonl`` record; bad lines are reported and skipped."""
    points, problems = [], []
    try:
        lines = file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        return [], [f"cannot be read ({err})"]
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record_points, problem = _parse_metrics_line(line)
        points += record_points
        if problem:
            problems.append(f"line {number}: {problem}")
    return points, _capped(problems)


def _parse_metrics_line(line: str) -> tuple[list[MetricPoint], str]:
    try:
        record = json.loads(line)
    except ValueError:
        return [], "not valid JSON"
    if not isinstance(record, dict):
        return [], "not a JSON object"
    step = record.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        return [], "no integer 'step'"
    points = [
        MetricPoint(step, name, float(record[name]))
        for name in PLOTTED_METRICS
        if _is_finite_number(record.get(name))
    ]
    return points, ""


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_export_info(info: Path) -> tuple[Path | None, list[str]]:
    """The export folder holding ``info`` (a ``seppo_export.json``) if that names a ``kind``."""
    data, error = _load_json(info)
    if error:
        return None, [error]
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        return None, ["expected an object with a 'kind'"]
    return info.parent, []


def read_evaluation(report: Path) -> tuple[list[EvalRow], list[str]]:
    """Rows with ``metric``, ``run``/``model``, ``mean``, ``ci_low``, ``ci_high`` from a ``report.json``."""
    data, error = _load_json(report)
    if error:
        return [], [error]
    rows = [row for row in map(_eval_row, _candidate_rows(data)) if row is not None]
    if not rows:
        return [], [f"no rows with {', '.join(EVAL_KEYS)} and run or model"]
    return rows, []


def _candidate_rows(data: Any) -> list[Any]:
    """The report's ``rows`` list, or else the first list of objects among its values."""
    if not isinstance(data, dict):
        return []
    if isinstance(data.get("rows"), list):
        return data["rows"]
    lists = (v for v in data.values() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v))
    return next(lists, [])


def _eval_row(row: Any) -> EvalRow | None:
    if not isinstance(row, dict):
        return None
    model = row.get("run", row.get("model"))
    if not isinstance(row.get("metric"), str) or not isinstance(model, str):
        return None
    if not all(_is_finite_number(row.get(key)) for key in EVAL_KEYS[1:]):
        return None
    return EvalRow(model, row["metric"], float(row["mean"]), float(row["ci_low"]), float(row["ci_high"]))


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_MESSAGES_PER_FILE:
        return problems
    hidden = len(problems) - MAX_MESSAGES_PER_FILE
    return problems[:MAX_MESSAGES_PER_FILE] + [f"... and {hidden} more like these"]
