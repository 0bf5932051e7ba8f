"""ChronoMagic-Bench evaluation: generate, score, report.

The pipeline has three steps, each resumable and each a subcommand of
``seppo-video eval`` (see :mod:`seppo_video.evaluation.bench`):

1. :mod:`.generate` samples one video per (prompt, seed) into the
   benchmark's layout ``<root>/<model>/<set k>/<videoid>.mp4``.
2. :mod:`.score` computes per-video records (scores, or features for the
   Fréchet-distance metrics) for every set, written as JSON / ``.npy`` so an
   interrupted run continues where it stopped.
3. :mod:`.report` merges records (mean over videos, then over sets), adds
   bootstrap confidence intervals (:mod:`.stats`), and writes JSON, the
   leaderboard CSV and a markdown table.

No weights are ever downloaded: every model-backed metric loads a local file
named in the evaluation config (:mod:`.backends`; the benchmark's networks,
written here, load their released checkpoints: :mod:`.networks`), and is
skipped, with a message naming what it needs, when none is given.
:mod:`.doctor` checks every configured file before a run; texts that define
metrics come from a checkout of the benchmark (:mod:`.official`).
"""
