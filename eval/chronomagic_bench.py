#!/usr/bin/env python
"""ChronoMagic-Bench evaluation; the same as ``seppo-video eval``.

    python eval/chronomagic_bench.py run --config configs/eval_tiny.yaml
    python eval/chronomagic_bench.py --help
"""

import sys

from seppo_video.evaluation.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
