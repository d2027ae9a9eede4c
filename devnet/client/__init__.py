"""A client library to script a running devnet, async (trio) or plain.

    from devnet.client import Devnet

    with Devnet.connect() as net:            # finds ./data/devnet.json (see discovery)
        alice, bob = net.wallets[0], net.wallets[1]
        receipt = alice.spend(bob, 1_000)    # returns once executed
        assert net.proof(bob).verify()
        net.node("smesher-3").kill()

`AsyncDevnet` is the same in async form, for trio code.
"""

from devnet.client.account import AsyncAccount, Deployment, Signer
from devnet.client.discovery import DevnetInfo, NodeInfo, read_info
from devnet.client.errors import (
    ClientError,
    NotWithin,
    TransactionDropped,
    TransactionFailed,
    TransactionRejected,
)
from devnet.client.network import AsyncDevnet
from devnet.client.node import AsyncNode
from devnet.client.records import Account, Receipt, StateProof
from devnet.client.sync import Devnet, Node, Wallet

__all__ = [
    "Account",
    "AsyncAccount",
    "AsyncDevnet",
    "AsyncNode",
    "ClientError",
    "Deployment",
    "Devnet",
    "DevnetInfo",
    "Node",
    "NodeInfo",
    "NotWithin",
    "Receipt",
    "Signer",
    "StateProof",
    "TransactionDropped",
    "TransactionFailed",
    "TransactionRejected",
    "Wallet",
    "read_info",
]
