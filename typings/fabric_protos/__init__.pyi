# hyperledger-fabric-protos marks itself typed (py.typed) but ships no stubs, and protobuf builds its message
# classes at import time: to static tools every name in these modules is Any.
from typing import Any

def __getattr__(name: str) -> Any: ...
