"""One layer of Athena execution, shared by the executor and the shadow executor.

`execute_block` runs a certified block's transactions, in the block rule's order, through
the state transition against a LevelDB-backed host, and returns the receipts and every
LevelDB write the layer makes. The state root covers exactly those writes: each key
`A‖address`, `S‖address‖slot`, `T‖template` is a leaf blake3(key) of the state tree.
"""

from dataclasses import dataclass
from typing import Any

import blake3
import msgpack
import plyvel

from athena_vm.in_memory_host import InMemoryHost
from athena_vm.status import StatusCode
from devnet.block import Block, ordered_transactions
from devnet.builtin_templates import builtin_templates, template
from devnet.config import DevnetConfig
from devnet.execution.signature_ahead import SignaturesAhead, wallet_signatures
from devnet.execution.state import changes
from devnet.state_transition import Receipt, TransitionConfig, apply_decoded

EMPTY_ROOT = bytes(32)


#: `StatusCode.name` is a descriptor lookup; a receipt per transaction reads it.
_STATUS_NAMES = {status: status.name for status in StatusCode}


def receipt_record(receipt: Receipt, layer: int, index: int) -> dict[str, Any]:
    """A receipt as stored, served and hashed (msgpack of this map, keys in this order)."""
    return {
        "tx_id": receipt.tx_id,
        "layer": layer,
        "index": index,
        "status": int(receipt.status),
        "status_name": _STATUS_NAMES[receipt.status],
        "reason": receipt.reason,
        "principal": receipt.principal,
        "nonce": receipt.nonce,
        "gas_used": receipt.gas_used,
        "fee": receipt.fee,
        "relay_fee": receipt.relay_fee,
        "executor_fee": receipt.executor_fee,
        "burnt": receipt.burnt,
        "output": receipt.output,
        "logs": list(receipt.logs),
        "touched": list(receipt.touched),
    }


def encode_receipt(record: dict[str, Any]) -> bytes:
    """msgpack of the record: what is stored and what the receipts root hashes."""
    encoded: bytes = msgpack.packb(record, use_bin_type=True)
    return encoded


def merkle_root(leaves: list[bytes]) -> bytes:
    """A binary Merkle root of blake3 leaf hashes (odd nodes are promoted unchanged)."""
    if not leaves:
        return EMPTY_ROOT
    level = [blake3.blake3(b"\x00" + leaf).digest() for leaf in leaves]
    while len(level) > 1:
        nxt = [
            blake3.blake3(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def transition_config(config: DevnetConfig) -> TransitionConfig:
    executor_key = config.network.test_key(config.executor.name)
    return TransitionConfig(
        genesis_id=config.network.genesis_id,
        executor=executor_key.wallet_address(template("wallet").address),
        executor_share_bps=config.executor.fee_share_bps,
    )


def apply_genesis(host: InMemoryHost, config: DevnetConfig) -> None:
    """The built-in templates and the spawned, funded test wallets of genesis."""
    for tpl in builtin_templates().values():
        host.add_template(tpl.code)
    wallet = template("wallet")
    for i in range(config.athena.test_wallets):
        key = config.network.test_key(f"user-{i}")
        address = key.wallet_address(wallet.address)
        acct = host.account(address)
        acct.template, acct.state = wallet.address, key.public_key
        host.set_balance(address, config.athena.test_wallet_balance)
    executor = transition_config(config).executor
    assert executor is not None
    acct = host.account(executor)
    acct.template, acct.state = (
        wallet.address,
        config.network.test_key(config.executor.name).public_key,
    )


@dataclass(frozen=True)
class LayerOutcome:
    receipts: list[dict[str, Any]]
    #: `encode_receipt` of each receipt, made once for the root and for storage.
    encoded_receipts: list[bytes]
    receipts_root: bytes
    writes: dict[bytes, bytes | None]


def execute_block(
    host: InMemoryHost,
    db: plyvel.DB,
    block: Block,
    config: DevnetConfig,
    *,
    skip_tx: bytes | None = None,
    ahead: SignaturesAhead | None = None,
) -> LayerOutcome:
    tconfig = transition_config(config)
    receipts: list[dict[str, Any]] = []
    items = ordered_transactions(block, config.l1.block_gas_limit)
    if ahead is not None:
        ahead.submit(wallet_signatures(items, host, tconfig.genesis_id))
    for item in items:
        if skip_tx is not None and item.tx.id == skip_tx:
            continue  # test-only fault: a cheating executor drops this transaction
        # The block rule has decoded the transaction already: apply that, not the bytes.
        receipt = apply_decoded(host, item.tx, tconfig, relay=item.beneficiary)
        receipts.append(receipt_record(receipt, block.layer, len(receipts)))
    encoded = [encode_receipt(r) for r in receipts]
    return LayerOutcome(receipts, encoded, merkle_root(encoded), changes(host, db))
