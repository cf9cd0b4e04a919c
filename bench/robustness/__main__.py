"""``python -m fedledger.bench.robustness``: see the package docstring (or ``--help``)."""

from fedledger.bench.robustness.cli import main

raise SystemExit(main())
