"""The executor's query RPC: accounts, storage, receipts, layers, proofs, estimates."""

from typing import TYPE_CHECKING, Any

from athena_vm.in_memory_host import Account
from devnet.errors import RpcError, TransactionError, WireError
from devnet.execution.ledger import receipt_record, transition_config
from devnet.execution.state import ACCOUNT_PREFIX, STORAGE_PREFIX, TEMPLATE_PREFIX, decode_account
from devnet.state_transition import apply_transaction
from devnet.state_tree import tree_key
from devnet.transaction import decode_transaction
from devnet.wire import RpcClient, RpcServer
from devnet.wire.subscription import EventSink

if TYPE_CHECKING:
    from executor.node import Executor

NOT_FOUND = 404
REFUSED = 400
#: The most gas one `estimate` may run. Nobody pays for an estimate and it runs on the
#: executor's only thread, between layers: a 100M-gas loop would stall block following and
#: every query for tens of seconds per call.
ESTIMATE_MAX_GAS = 10_000_000
MAX_LAYER = 2**64 - 1
MAX_RECEIPTS = 1024


def _address(address: bytes) -> bytes:
    if len(address) != 24:
        raise RpcError(REFUSED, "an address is 24 bytes")
    return address


def account_view(address: bytes, acct: Account | None) -> dict[str, Any]:
    return {
        "address": address,
        "exists": acct is not None,
        "balance": acct.balance if acct else 0,
        "nonce": acct.nonce if acct else 0,
        "template": acct.template if acct else None,
        "state": acct.state if acct else b"",
    }


def register(server: RpcServer, node: "Executor", client: RpcClient) -> None:
    store = node.store
    db = node.db

    def read_account(address: bytes) -> Account | None:
        raw = db.get(ACCOUNT_PREFIX + address)
        return None if raw is None else decode_account(raw)

    async def status() -> dict[str, Any]:
        applied = store.applied()
        l1 = node.l1_layer
        try:
            l1 = (await client.call("status", timeout=1))["last_certified"]
        except WireError:
            pass
        lag = None if l1 is None else l1 - (applied if applied is not None else -1)
        return {
            "name": node.name,
            "applied_layer": applied,
            "root": store.root(),
            "l1_layer": l1,
            "lag": lag,
        }

    async def get_account(address: bytes) -> dict[str, Any]:
        return account_view(address, read_account(_address(address)))

    async def get_storage(address: bytes, key: bytes) -> bytes:
        if len(key) != 32:
            raise RpcError(REFUSED, "a storage key is 32 bytes")
        value: bytes = db.get(STORAGE_PREFIX + _address(address) + key) or bytes(32)
        return value

    async def get_template(address: bytes) -> bytes:
        """A template's code, for a relay that runs its `verify` before admitting."""
        code: bytes | None = db.get(TEMPLATE_PREFIX + _address(address))
        if code is None:
            raise RpcError(NOT_FOUND, f"no template at 0x{address.hex()}")
        return code

    async def get_receipt(tx_id: bytes) -> dict[str, Any]:
        receipt = store.receipt(tx_id)
        if receipt is None:
            raise RpcError(NOT_FOUND, f"no receipt for transaction {tx_id.hex()}")
        return receipt

    async def get_receipts(tx_ids: list[bytes]) -> list[dict[str, Any] | None]:
        """Many receipts in one call (None where there is none): the relay collects a whole
        layer's outcomes this way instead of one round trip per transaction."""
        if len(tx_ids) > MAX_RECEIPTS:
            raise RpcError(REFUSED, f"at most {MAX_RECEIPTS} ids per call, got {len(tx_ids)}")
        return [store.receipt(tx_id) for tx_id in tx_ids]

    async def get_layer(layer: int) -> dict[str, Any]:
        record = store.layer(layer) if 0 <= layer <= MAX_LAYER else None
        if record is None:
            raise RpcError(NOT_FOUND, f"layer {layer} is not applied")
        return record.as_dict()

    async def get_proof(address: bytes, key: bytes | None = None) -> dict[str, Any]:
        db_key = ACCOUNT_PREFIX + _address(address)
        if key is not None:
            if len(key) != 32:
                raise RpcError(REFUSED, "a storage key is 32 bytes")
            db_key = STORAGE_PREFIX + address + key
        root = store.root()
        proof = store.tree.prove(root, tree_key(db_key))
        return {
            "layer": store.applied(),
            "root": root,
            "record_key": db_key,
            "value": db.get(db_key),
            "proof": proof.to_bytes(),
        }

    async def estimate(tx: bytes) -> dict[str, Any]:
        """Run `tx` on the current state without committing anything.

        Bytes that are not a transaction are refused; a transaction that would be rejected
        (signature, nonce, balance) gets its REJECTED receipt, which says why.
        """
        try:
            gas_limit = decode_transaction(tx).gas_limit
        except TransactionError as exc:
            raise RpcError(REFUSED, str(exc)) from None
        if gas_limit > ESTIMATE_MAX_GAS:
            raise RpcError(
                REFUSED,
                f"gas limit {gas_limit}: an estimate runs at most {ESTIMATE_MAX_GAS} gas",
            )
        host = node.host
        mark = host.snapshot()
        try:
            receipt = apply_transaction(host, tx, transition_config(node.config))
        finally:
            host.rollback(mark)
        return receipt_record(receipt, -1, -1)

    async def subscribe_receipts(sink: EventSink) -> None:
        await node.follow_receipts(sink)

    async def subscribe_layers(sink: EventSink, receipts: bool = False) -> None:
        """Each applied layer's record; with `receipts`, its receipts too (in tx_ids'
        order), so a follower needs no `get_receipts` call, which waits while the executor
        applies the next layer."""
        await (node.layers_with_receipts if receipts else node.layers).follow(sink)

    for name, fn in (
        ("status", status),
        ("get_account", get_account),
        ("get_storage", get_storage),
        ("get_template", get_template),
        ("get_receipt", get_receipt),
        ("get_receipts", get_receipts),
        ("get_layer", get_layer),
        ("get_proof", get_proof),
        ("estimate", estimate),
    ):
        server.add_method(name, fn)
    server.add_subscription("subscribe_receipts", subscribe_receipts)
    server.add_subscription("subscribe_layers", subscribe_layers)
