"""``python -m fedledger.bench.shares``: runs the study (see the package docstring)."""

import sys

from fedledger.bench.shares.cli import main

sys.exit(main())
