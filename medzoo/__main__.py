"""``python -m medzoo``: the ``medzoo`` command line (see :mod:`medzoo.cli`)."""

import sys

from medzoo.cli import main

sys.exit(main())
