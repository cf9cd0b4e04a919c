"""``python -m fedledger.bench.privacy_utility``: see the package docstring (or ``--help``)."""

from fedledger.bench.privacy_utility.cli import main

raise SystemExit(main())
