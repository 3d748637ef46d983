"""``python -m brainloc <subcommand>``: see :mod:`brainloc.cli`."""

import sys

from brainloc.cli import main

if __name__ == "__main__":
    sys.exit(main())
