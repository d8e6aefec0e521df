"""``python -m peer.simulate --scenario NAME [--peers N] [--size SIZE] [--seed S] [--json]``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
