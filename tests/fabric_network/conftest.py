"""Network fixtures for this folder; the definitions live in fixtures.py so that the root
conftest may also load them as a plugin."""

from .fixtures import compat_cc, fabric_network, fabric_testbed

__all__ = ["compat_cc", "fabric_network", "fabric_testbed"]
