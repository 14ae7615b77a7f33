"""``python -m ironloop``: the same as the ``ironloop`` command."""

import sys

from ironloop.cli import main

sys.exit(main())
