"""``python -m seppo_video <command> ...`` (also how ``accelerate launch -m seppo_video train ...`` starts ranks)."""

import sys

from seppo_video.cli import main

sys.exit(main())
