"""``python -m kanlens``: the ``kanlens`` command line (the same as ``python -m kanlens.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
