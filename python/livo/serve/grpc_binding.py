"""Each Serve replica's inter-deployment gRPC server on the node's own address, not on every interface.

Ray Serve 2.60 starts a gRPC server in every replica (deployment handles call it) and binds it to
``[::]:0``, every interface, with no setting to change that (``ray/serve/_private/replica.py``; Ray
core moved its own servers from all interfaces to the node's address in ray-project/ray#59852, Serve's
replica server was left as it was). A replica's constructor runs before Serve starts that server, so
:func:`bind_replica_grpc_to_node` called there makes Serve bind it to the node's address instead:
127.0.0.1 on the loopback-only Ray that ``livo serve`` starts, the node's cluster address on a cluster
(where other nodes' handles must still reach it). ``tests/test_network_exposure.py`` fails if a
Ray upgrade makes this stop working.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("livo.serve")

_ALL_INTERFACES = "[::]:"


def bind_replica_grpc_to_node() -> bool:
    """Makes this replica process's Serve bind its gRPC server to the node's address; returns whether
    it could (False, with a warning, if this Ray no longer has the function it wraps)."""
    import ray
    from ray.serve._private import replica

    original: Callable[[Any, str], int] | None = getattr(replica, "add_port_to_grpc_server", None)
    if original is None:
        logger.warning("this Ray Serve has no replica.add_port_to_grpc_server: its gRPC server keeps Ray's binding")
        return False
    if getattr(original, "binds_to_node", False):
        return True
    node = ray.util.get_node_ip_address()
    host = f"[{node}]" if ":" in node else node

    def add_port_on_node(server: Any, address: str) -> int:
        if address.startswith(_ALL_INTERFACES):
            address = host + ":" + address[len(_ALL_INTERFACES) :]
        return original(server, address)

    add_port_on_node.binds_to_node = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port_on_node
    return True
