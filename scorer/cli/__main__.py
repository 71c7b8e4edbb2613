"""``python -m scorer.cli``: the ``ocsf-anomaly`` command."""

import sys

from scorer.cli import main

if __name__ == "__main__":  # not in the worker processes `score` spawns, which import this module
    sys.exit(main())
