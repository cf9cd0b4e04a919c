"""``python -m fedledger.bench.trust``: see the package docstring (or ``--help``)."""

from fedledger.bench.trust.cli import main

raise SystemExit(main())
