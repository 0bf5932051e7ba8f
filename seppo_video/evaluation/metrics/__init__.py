"""The metrics: the benchmark's four (+ GPT4o-MTScore), the paper's five, and preference scores.

Every metric is one of two kinds (:mod:`.base`): a *video* metric turns one
video into a record with a ``score`` (averaged over videos, then sets); a
*distribution* metric turns one video into features, and a Fréchet distance
between generated and reference features is computed when reporting.
:mod:`.registry` builds the requested metrics from the eval config.
"""
