"""``python -m platform_assets``: see :mod:`platform_assets.cli`."""

import sys

from platform_assets.cli import main

sys.exit(main())
