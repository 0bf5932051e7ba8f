"""Text that defines the official metrics, read from a local checkout of the benchmark's repository.

MTScore's ten descriptions and GPT4o-MTScore's rubric are part of the
metrics' definitions, and they live only in the official scripts
(PKU-YuanGroup/ChronoMagic-Bench). This project ships no copy and no
paraphrase under the official name: it reads them from the checkout the
config names (``chronomagic_repo``). The scripts are parsed with :mod:`ast`
(never imported or executed); a literal assigned to a known variable is read.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from seppo_video.evaluation.errors import EvalError

# Where each text is in the official repository (relative path, variable name).
MTSCORE_DESCRIPTIONS = ("MTScore/step0-get_MTScore.py", "text_candidates")
GPT4O_RUBRIC = ("GPT4o_MTScore/step1-get_temp_results.py", "txt_prompt")
MT_DESCRIPTION_COUNT = 10  # the script labels indices 0-4 "general" and 5-9 "metamorphic"


@dataclass(frozen=True)
class OfficialText:
    """A text and where it came from (``official`` is False for the user's own wording)."""

    value: str | tuple[str, ...]
    source: str
    official: bool


def read_assigned_literal(script: Path, variable: str) -> object:
    """The literal value assigned to ``variable`` anywhere in ``script`` (the first assignment)."""
    if not script.is_file():
        raise EvalError(f"{script}: not found (is chronomagic_repo a checkout of PKU-YuanGroup/ChronoMagic-Bench?)")
    tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == variable for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError as err:
                raise EvalError(f"{script}: {variable} is not a plain literal") from err
    raise EvalError(f"{script}: no assignment to {variable!r} (has the official script changed?)")


def mtscore_descriptions(repo: str | None, own: list[str] | None) -> OfficialText:
    """MTScore's ten descriptions: the official ones from ``repo``, else the user's ``own`` ten."""
    if repo:
        script = Path(repo) / MTSCORE_DESCRIPTIONS[0]
        texts = read_assigned_literal(script, MTSCORE_DESCRIPTIONS[1])
        if not (isinstance(texts, list) and all(isinstance(t, str) for t in texts)):
            raise EvalError(f"{script}: {MTSCORE_DESCRIPTIONS[1]} is not a list of strings")
        return OfficialText(_ten(texts, str(script)), str(script), True)
    if own:
        return OfficialText(_ten(own, "mtscore_descriptions"), "mtscore_descriptions (config)", False)
    raise EvalError(
        "MTScore needs its ten descriptions: set chronomagic_repo to a checkout of PKU-YuanGroup/ChronoMagic-Bench "
        f"(read from {MTSCORE_DESCRIPTIONS[0]}), or mtscore_descriptions to ten texts of your own "
        "(five ordinary, then five time-lapse; such scores are not leaderboard-comparable)"
    )


def gpt4o_rubric(repo: str | None, own: str | None) -> OfficialText:
    """GPT4o-MTScore's rubric: the official one from ``repo``, else the user's ``own`` text."""
    if repo:
        script = Path(repo) / GPT4O_RUBRIC[0]
        text = read_assigned_literal(script, GPT4O_RUBRIC[1])
        if not isinstance(text, str):
            raise EvalError(f"{script}: {GPT4O_RUBRIC[1]} is not a string")
        return OfficialText(text, str(script), True)
    if own:
        return OfficialText(own, "gpt4o.rubric (config)", False)
    raise EvalError(
        "GPT4o-MTScore needs its rubric: set chronomagic_repo to a checkout of PKU-YuanGroup/ChronoMagic-Bench "
        f"(read from {GPT4O_RUBRIC[0]}), or gpt4o.rubric to a text of your own (not leaderboard-comparable)"
    )


def _ten(texts: list[str], where: str) -> tuple[str, ...]:
    if len(texts) != MT_DESCRIPTION_COUNT:
        raise EvalError(f"{where}: MTScore needs {MT_DESCRIPTION_COUNT} descriptions, got {len(texts)}")
    return tuple(texts)
