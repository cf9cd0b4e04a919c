"""Verifier-side modules must import without torch (the chaincode checks updates with numpy only)."""

from __future__ import annotations

import subprocess
import sys


def test_wire_and_aggregation_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import fedledger.tensors, fedledger.trainer.aggregate, fedledger.trainer.strategy, fedledger.trainer.rounds\n"
        "import fedledger.experiments.attacks, fedledger.trainer.data, fedledger.trainer.aggregator\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
