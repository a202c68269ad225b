"""``python -m minibertgen`` is the ``minibertgen`` command."""

import sys

from .cli import main

sys.exit(main())
