"""``python -m fedledger.bench.aggregation_latency``: runs the study (see the package docstring)."""

import sys

from fedledger.bench.aggregation_latency.cli import main

sys.exit(main())
