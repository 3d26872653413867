"""``python -m vaekit``: the command line."""

import sys

from vaekit.cli import main

sys.exit(main())
