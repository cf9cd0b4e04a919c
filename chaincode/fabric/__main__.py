"""Starts one chaincode server: ``python -m fedledger.chaincode.fabric``.

Environment: CHAINCODE_ID (package ID), CHAINCODE_SERVER_ADDRESS (host:port); optional
CHAINCODE_TLS_KEY / CHAINCODE_TLS_CERT (server TLS), CHAINCODE_TLS_CLIENT_CA (require the peer's
client certificate), CHAINCODE_MAX_MESSAGE_BYTES, CHAINCODE_WORKERS, FEDLEDGER_LOG_LEVEL, and
FEDLEDGER_CONTRACT=module:Class to serve another contract (tests only).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import os
import sys

from fedledger.chaincode.fabric.server import Contract, ServerConfig, serve


def _contract() -> Contract:
    """FedLedgerContract, or FEDLEDGER_CONTRACT=module:Class / path/to/file.py:Class."""
    spec = os.environ.get("FEDLEDGER_CONTRACT") or "fedledger.chaincode.contract:FedLedgerContract"
    module_name, _, name = spec.rpartition(":")
    if module_name.endswith(".py"):
        file_spec = importlib.util.spec_from_file_location("fedledger_served_contract", module_name)
        if file_spec is None or file_spec.loader is None:
            raise ImportError(f"cannot load {module_name}")
        module = importlib.util.module_from_spec(file_spec)
        file_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    return getattr(module, name)()


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("FEDLEDGER_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = ServerConfig.from_env()
    except ValueError as err:
        print(f"fedledger chaincode: {err}", file=sys.stderr)
        return 2
    asyncio.run(serve(config, _contract()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
