"""``python -m fedledger.bench.commit_latency``: runs the study (see the package docstring)."""

import sys

from fedledger.bench.commit_latency.cli import main

sys.exit(main())
