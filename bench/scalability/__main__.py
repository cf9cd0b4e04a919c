"""``python -m fedledger.bench.scalability``: runs the study (see the package docstring)."""

import sys

from fedledger.bench.scalability.cli import main

sys.exit(main())
