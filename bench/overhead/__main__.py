"""``python -m fedledger.bench.overhead``: see the package docstring (or ``--help``)."""

from fedledger.bench.overhead.cli import main

raise SystemExit(main())
