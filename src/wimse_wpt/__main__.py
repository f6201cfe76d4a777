"""``python -m wimse_wpt``: the ``wimse-wpt`` command."""

import sys

from .cli import main

sys.exit(main())
