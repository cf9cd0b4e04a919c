"""``python -m fedledger.bench.aggregate_check``: runs the study (see the package docstring)."""

import sys

from fedledger.bench.aggregate_check.cli import main

sys.exit(main())
