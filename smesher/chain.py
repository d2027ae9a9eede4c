"""The smesher's chain logic without networking: validating, building and committing blocks.

`Chain` owns the store and the pools of bundles and L1 transactions waiting for a block. It
decides what a valid block for the next layer is (the agreement's validity rule), builds
this node's candidate, and commits a certified block in one atomic batch.
"""

from dataclasses import dataclass

from devnet.block import Block, block_id
from devnet.bundle import Bundle, BundleError, check_bundle
from devnet.certificate import (
    Certificate,
    decode_certificate,
    encode_certificate,
    verify_certificate,
)
from devnet.config import DevnetConfig
from devnet.errors import DevnetError
from devnet.l1 import L1Tx, l1_address
from smesher.l1_state import L1Params, L1RuleError, apply_block, fits, state_hash
from smesher.store import ChainStore

MAX_POOL_BUNDLES = 10_000
MAX_POOL_BYTES = 256 * 1024 * 1024
MAX_POOL_L1_TXS = 10_000
MAX_BLOCK_BYTES = 8 * 1024 * 1024
MAX_CHECKED_BUNDLES = 4096


class ChainError(DevnetError):
    """A block, bundle or L1 transaction is refused; the message says why."""


@dataclass(frozen=True)
class Committed:
    layer: int
    block: Block
    certificate: bytes
    l1_hash: bytes


class Chain:
    def __init__(self, config: DevnetConfig, store: ChainStore) -> None:
        self.config = config
        self.store = store
        self.genesis_id = config.network.genesis_id
        self.validators = config.validators()
        self.params = L1Params(config.l1.byte_price, config.l1.layer_subsidy)
        self.bundles: dict[bytes, Bundle] = {}
        self.l1_txs: dict[bytes, L1Tx] = {}
        self._pool_bytes = 0
        self._validity: dict[bytes, bool] = {}
        #: Ids of bundles whose signature and transactions were checked (see `_check_bundle`).
        self._checked: set[bytes] = set()
        store.init_genesis(self.genesis_id, config.l1.genesis)

    @property
    def next_layer(self) -> int:
        last = self.store.last_layer()
        return 0 if last is None else last + 1

    # --- pools -----------------------------------------------------------------------

    def admit_bundle(self, bundle: Bundle) -> bool:
        """Check a bundle and pool it; False if it was already known."""
        if bundle.id in self.bundles:
            return False
        if len(bundle.encoded) > self.config.l1.max_bundle_bytes:
            raise ChainError(
                f"bundle of {len(bundle.encoded)} bytes exceeds {self.config.l1.max_bundle_bytes}"
            )
        self._check_bundle(bundle, "")
        account = self.store.accounts.get(bundle.payer)
        nonce = account.nonce if account else 0
        balance = account.balance if account else 0
        if bundle.nonce < nonce:
            raise ChainError(f"stale bundle nonce {bundle.nonce}: the payer's next is {nonce}")
        if bundle.fee(self.params.byte_price) > balance:
            raise ChainError(
                f"the payer's L1 balance {balance} cannot pay the bundle fee "
                f"{bundle.fee(self.params.byte_price)}"
            )
        if len(self.bundles) >= MAX_POOL_BUNDLES or self._pool_bytes > MAX_POOL_BYTES:
            raise ChainError("bundle pool is full, retry later")
        self.bundles[bundle.id] = bundle
        self._pool_bytes += len(bundle.encoded)
        return True

    def admit_l1_tx(self, tx: L1Tx) -> bool:
        if tx.id in self.l1_txs:
            return False
        if not tx.verify(self.genesis_id):
            raise ChainError("bad L1 transaction signature")
        account = self.store.accounts.get(tx.address)
        if tx.nonce < (account.nonce if account else 0):
            raise ChainError(f"stale L1 nonce {tx.nonce}")
        if len(self.l1_txs) >= MAX_POOL_L1_TXS:
            raise ChainError("L1 transaction pool is full, retry later")
        self.l1_txs[tx.id] = tx
        return True

    def _check_bundle(self, bundle: Bundle, context: str) -> None:
        """`check_bundle`, once per bundle id. A bundle is admitted, then checked again in
        every candidate block that carries it, and each check decodes every transaction
        it carries; its verdict depends only on its bytes (which its id hashes) and the
        genesis id, so the first one stands."""
        if bundle.id in self._checked:
            return
        try:
            check_bundle(bundle, self.genesis_id)
        except BundleError as exc:
            raise ChainError(f"{context}{exc}") from None
        if len(self._checked) >= MAX_CHECKED_BUNDLES:
            self._checked.clear()
        self._checked.add(bundle.id)

    def _prune_pools(self) -> None:
        accounts = self.store.accounts
        for bid, bundle in list(self.bundles.items()):
            acct = accounts.get(bundle.payer)
            if acct is not None and bundle.nonce < acct.nonce:
                self._pool_bytes -= len(bundle.encoded)
                del self.bundles[bid]
        for tid, tx in list(self.l1_txs.items()):
            acct = accounts.get(tx.address)
            if acct is not None and tx.nonce < acct.nonce:
                del self.l1_txs[tid]

    # --- blocks ----------------------------------------------------------------------

    def build_block(self, layer: int) -> Block:
        """This node's candidate: what in the pools applies on top of the current state."""
        prev = self.store.certificate(layer - 1) if layer > 0 else b""
        bundles, l1_txs = fits(
            self.store.accounts,
            list(self.bundles.values()),
            list(self.l1_txs.values()),
            self.params,
        )
        size, chosen = 0, []
        for bundle in bundles:
            size += len(bundle.encoded)
            if size > MAX_BLOCK_BYTES:
                break
            chosen.append(bundle)
        # Dropping a bundle may break the nonce sequence of its payer: re-check the rest.
        chosen, l1_txs = fits(self.store.accounts, chosen, l1_txs, self.params)
        return Block(layer, tuple(sorted(chosen, key=lambda b: b.id)), tuple(l1_txs), prev or b"")

    def _reward_signers(self, block: Block) -> list[bytes]:
        if not block.prev_certificate:
            return []
        cert = decode_certificate(block.prev_certificate)
        return [l1_address(key) for key, _ in cert.signatures]

    def check_block(self, block: Block, layer: int) -> None:
        """Raise ChainError unless `block` is a valid block for `layer` on our state."""
        if block.layer != layer:
            raise ChainError(f"block is for layer {block.layer}, not {layer}")
        if layer != self.next_layer:
            raise ChainError(f"layer {layer} is not the next layer {self.next_layer}")
        if layer == 0:
            if block.prev_certificate:
                raise ChainError("the first layer's block carries no certificate")
        else:
            previous = self.store.block(layer - 1)
            if previous is None:
                raise ChainError(f"layer {layer - 1} is not committed here")
            try:
                cert = decode_certificate(block.prev_certificate)
            except DevnetError as exc:
                raise ChainError(f"malformed previous certificate: {exc}") from None
            if not verify_certificate(
                cert, self.validators, layer=layer - 1, value=(block_id(previous),)
            ):
                raise ChainError("the previous certificate does not certify our previous block")
        if len(block.encoded) > MAX_BLOCK_BYTES + 64 * 1024:
            raise ChainError("block too large")
        limit = self.config.l1.max_bundle_bytes
        for bundle in block.bundles:
            if len(bundle.encoded) > limit:
                raise ChainError(
                    f"invalid bundle in block: {len(bundle.encoded)} bytes exceeds {limit}"
                )
            self._check_bundle(bundle, "invalid bundle in block: ")
        for tx in block.l1_txs:
            if not tx.verify(self.genesis_id):
                raise ChainError("invalid L1 transaction signature in block")
        try:
            apply_block(
                self.store.accounts,
                block,
                self.params,
                self._reward_signers(block),
                self.store.pending_reward(),
            )
        except L1RuleError as exc:
            raise ChainError(str(exc)) from None

    def is_valid(self, block: Block, layer: int) -> bool:
        """`check_block`, cached per block id (the agreement asks repeatedly)."""
        cached = self._validity.get(block.id)
        if cached is None:
            try:
                self.check_block(block, layer)
                cached = True
            except ChainError:
                cached = False
            if len(self._validity) > 1024:
                self._validity.clear()
            self._validity[block.id] = cached
        return cached

    def commit(self, block: Block, certificate: Certificate) -> Committed:
        """Apply a certified block and persist the layer atomically."""
        layer = block.layer
        if layer != self.next_layer:
            raise ChainError(f"cannot commit layer {layer}: the next layer is {self.next_layer}")
        if not verify_certificate(certificate, self.validators, layer=layer, value=(block.id,)):
            raise ChainError(f"certificate for layer {layer} does not verify")
        effects = apply_block(
            self.store.accounts,
            block,
            self.params,
            self._reward_signers(block),
            self.store.pending_reward(),
        )
        previous = self.store.state_hash(layer - 1) if layer > 0 else self.genesis_id
        l1_hash = state_hash(previous, layer, block.id, effects.changed)
        encoded_cert = encode_certificate(certificate)
        self.store.commit_layer(
            layer,
            block.encoded,
            encoded_cert,
            effects.changed,
            l1_hash,
            self.params.layer_subsidy + effects.fees,
        )
        for bundle in block.bundles:
            if self.bundles.pop(bundle.id, None) is not None:
                self._pool_bytes -= len(bundle.encoded)
        for tx in block.l1_txs:
            self.l1_txs.pop(tx.id, None)
        self._prune_pools()
        self._validity.clear()
        return Committed(layer, block, encoded_cert, l1_hash)
