"""The relay's mempool: plain data and pure functions, no I/O, no clock.

The pool holds every transaction the relay has accepted and not yet finished with: the
pending ones it may still bundle and the locked ones already in flight (in the outstanding
bundle, or included in a block and waiting for execution). In-flight transactions still
count against their principal's limit and balance, because they will still be charged.

Rules (go-spacemesh's mempool rules, plus bounds a public endpoint needs):

- the same transaction (same id) is stored once;
- a nonce below the principal's next nonce is stale; one `max_per_principal` or more ahead
  could never be bundled before the ones below it, so it is refused too;
- at most `max_per_principal` transactions per principal;
- the same (principal, nonce) is replaced only by a strictly higher gas price, and never
  while the old one is in flight;
- the principal's balance must cover the cost (max fee + max spend) of every one of its
  transactions from its next nonce on;
- beyond `max_txs` or `max_bytes` the lowest gas price is evicted first, together with the
  same principal's later nonces (which could no longer execute); a newcomer that does not
  pay more than what it would evict is refused instead.

Bundles take the highest gas price first, each principal's nonces in order from its next
nonce (skipping nonces already in flight), within a byte and a gas budget.
"""

import heapq
from dataclasses import dataclass, field

from devnet.errors import TransactionRejected

#: Rejection kinds: the first word of every refusal, stable for clients to match on.
DUPLICATE = "duplicate"
STALE_NONCE = "stale_nonce"
NONCE_TOO_HIGH = "nonce_too_high"
PRINCIPAL_FULL = "principal_limit"
REPLACEMENT_UNDERPRICED = "replacement_underpriced"
IN_FLIGHT = "in_flight"
OVER_BALANCE = "over_balance"
POOL_FULL = "pool_full"


class PoolRejection(TransactionRejected):
    """The pool refuses a transaction; `kind` says which rule, the message says why."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind


@dataclass(frozen=True, slots=True)
class PoolTx:
    """One pooled transaction, with what the rules need already extracted."""

    id: bytes
    raw: bytes
    principal: bytes
    nonce: int
    gas_price: int
    gas_limit: int
    #: The most it can take from the principal's balance: gas_limit × gas_price plus what
    #: its template's `max_spend` says the call can move.
    cost: int
    #: Arrival order, set by the pool: of two equal gas prices the earlier is preferred.
    seq: int = 0

    @property
    def size(self) -> int:
        return len(self.raw)


@dataclass(frozen=True, slots=True)
class AccountView:
    """A principal's account as the executor last reported it."""

    nonce: int
    balance: int


@dataclass(frozen=True, slots=True)
class PoolLimits:
    max_txs: int = 10_000
    max_bytes: int = 32 * 1024 * 1024
    max_per_principal: int = 100


@dataclass(frozen=True, slots=True)
class Admission:
    """What admitting one transaction did besides storing it."""

    tx: PoolTx
    replaced: PoolTx | None = None
    evicted: tuple[PoolTx, ...] = ()


@dataclass
class Pool:
    limits: PoolLimits = field(default_factory=PoolLimits)
    txs: dict[bytes, PoolTx] = field(default_factory=dict)
    #: principal -> nonce -> tx id
    nonces: dict[bytes, dict[int, bytes]] = field(default_factory=dict)
    accounts: dict[bytes, AccountView] = field(default_factory=dict)
    #: Ids in flight: not selectable, not replaceable, not evictable.
    locked: set[bytes] = field(default_factory=set)
    total_bytes: int = 0
    next_seq: int = 0
    #: (gas_price, -seq, id) of unlocked transactions, cheapest first; stale entries are
    #: skipped when met and the heap is rebuilt when they outnumber the live ones.
    cheapest: list[tuple[int, int, bytes]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.txs)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self.txs

    def principal_txs(self, principal: bytes) -> list[PoolTx]:
        """The principal's transactions in nonce order."""
        by_nonce = self.nonces.get(principal, {})
        return [self.txs[by_nonce[n]] for n in sorted(by_nonce)]

    def pending_count(self) -> int:
        return len(self.txs) - len(self.locked)


def bundle_weight(tx: PoolTx) -> int:
    """Bytes the transaction adds to an encoded bundle: its SCALE length prefix and itself."""
    size = tx.size
    prefix = 1 if size < 1 << 6 else 2 if size < 1 << 14 else 4
    return prefix + size


# --- admission -----------------------------------------------------------------------------


def admit(pool: Pool, tx: PoolTx, account: AccountView) -> Admission:
    """Store `tx` under the rules above, or raise PoolRejection having changed nothing.

    `account` is the principal's account as the executor reports it now.
    """
    limits = pool.limits
    if tx.id in pool.txs:
        raise PoolRejection(DUPLICATE, f"transaction {tx.id.hex()} is already in the pool")
    if tx.nonce < account.nonce:
        raise PoolRejection(
            STALE_NONCE, f"stale nonce {tx.nonce}: the next nonce is {account.nonce}"
        )
    if tx.nonce >= account.nonce + limits.max_per_principal:
        raise PoolRejection(
            NONCE_TOO_HIGH,
            f"nonce {tx.nonce} is {limits.max_per_principal} or more ahead of the next "
            f"nonce {account.nonce}",
        )
    by_nonce = pool.nonces.get(tx.principal, {})
    replaced = _replaced(pool, tx, by_nonce)
    if replaced is None and len(by_nonce) >= limits.max_per_principal:
        raise PoolRejection(
            PRINCIPAL_FULL,
            f"the principal has {len(by_nonce)} transactions in the pool, the limit is "
            f"{limits.max_per_principal}",
        )
    _check_balance(pool, tx, account, replaced)
    evicted = _plan_eviction(pool, tx, replaced)
    # Everything is decided: from here on nothing can refuse.
    if replaced is not None:
        remove(pool, replaced.id)
    for victim in evicted:
        remove(pool, victim.id)
    pool.accounts[tx.principal] = account
    stored = _insert(pool, tx)
    return Admission(stored, replaced, evicted)


def saturated(pool: Pool, size: int) -> bool:
    """Whether no transaction of `size` bytes could enter, whatever it is: the pool is at
    a cap and everything in it is in flight (nothing to evict, nothing to replace). The
    relay refuses such a newcomer (`pool_full`) before checking its signature."""
    if pool.pending_count() > 0:
        return False
    limits = pool.limits
    return len(pool.txs) >= limits.max_txs or pool.total_bytes + size > limits.max_bytes


def _replaced(pool: Pool, tx: PoolTx, by_nonce: dict[int, bytes]) -> PoolTx | None:
    old_id = by_nonce.get(tx.nonce)
    if old_id is None:
        return None
    old = pool.txs[old_id]
    if old_id in pool.locked:
        raise PoolRejection(
            IN_FLIGHT,
            f"nonce {tx.nonce} is already in flight as {old_id.hex()} and cannot be replaced",
        )
    if tx.gas_price <= old.gas_price:
        raise PoolRejection(
            REPLACEMENT_UNDERPRICED,
            f"nonce {tx.nonce} is taken by {old_id.hex()} at gas price {old.gas_price}; a "
            f"replacement must pay more than that, not {tx.gas_price}",
        )
    return old


def _check_balance(pool: Pool, tx: PoolTx, account: AccountView, replaced: PoolTx | None) -> None:
    owed = tx.cost
    for other in pool.principal_txs(tx.principal):
        if other.nonce >= account.nonce and other is not replaced:
            owed += other.cost
    if owed > account.balance:
        raise PoolRejection(
            OVER_BALANCE,
            f"balance {account.balance} does not cover {owed}, the cost of this transaction "
            "and the principal's others in the pool",
        )


def _plan_eviction(pool: Pool, tx: PoolTx, replaced: PoolTx | None) -> tuple[PoolTx, ...]:
    """The cheapest transactions to evict so that `tx` fits, or PoolRejection."""
    freed_count = 1 if replaced is not None else 0
    freed_bytes = replaced.size if replaced is not None else 0
    need_count = len(pool.txs) - freed_count + 1 - pool.limits.max_txs
    need_bytes = pool.total_bytes - freed_bytes + tx.size - pool.limits.max_bytes
    if need_count <= 0 and need_bytes <= 0:
        return ()
    if tx.size > pool.limits.max_bytes:
        raise PoolRejection(POOL_FULL, f"{tx.size} bytes exceed the pool's {pool.limits.max_bytes}")
    gone: set[bytes] = {replaced.id} if replaced is not None else set()
    victims: list[PoolTx] = []
    popped: list[tuple[int, int, bytes]] = []
    try:
        while need_count > 0 or need_bytes > 0:
            victim = _pop_cheapest(pool, gone, popped)
            if victim is None:
                raise PoolRejection(POOL_FULL, "the pool is full of transactions in flight")
            if tx.gas_price <= victim.gas_price or (
                victim.principal == tx.principal and victim.nonce < tx.nonce
            ):
                raise PoolRejection(
                    POOL_FULL,
                    f"the pool is full and gas price {tx.gas_price} does not beat the "
                    f"cheapest pending one ({victim.gas_price})",
                )
            for dropped in _with_successors(pool, victim, gone):
                gone.add(dropped.id)
                victims.append(dropped)
                need_count -= 1
                need_bytes -= dropped.size
    finally:
        for entry in popped:  # the heap must still list what stays (and may list the rest)
            heapq.heappush(pool.cheapest, entry)
    return tuple(victims)


def _pop_cheapest(
    pool: Pool, gone: set[bytes], popped: list[tuple[int, int, bytes]]
) -> PoolTx | None:
    while pool.cheapest:
        entry = heapq.heappop(pool.cheapest)
        tx_id = entry[2]
        if tx_id not in pool.txs or tx_id in pool.locked:
            continue  # stale entry: dropping it for good is right
        popped.append(entry)
        if tx_id not in gone:
            return pool.txs[tx_id]
    return None


def _with_successors(pool: Pool, victim: PoolTx, gone: set[bytes]) -> list[PoolTx]:
    """The victim and the principal's later unlocked nonces, which depend on it."""
    out = [victim]
    for other in pool.principal_txs(victim.principal):
        if other.nonce > victim.nonce and other.id not in pool.locked and other.id not in gone:
            out.append(other)
    return out


def _insert(pool: Pool, tx: PoolTx) -> PoolTx:
    stored = PoolTx(
        tx.id, tx.raw, tx.principal, tx.nonce, tx.gas_price, tx.gas_limit, tx.cost, pool.next_seq
    )
    pool.next_seq += 1
    restore(pool, stored)
    return stored


def restore(pool: Pool, tx: PoolTx, locked: bool = False) -> None:
    """Put back a transaction the pool accepted before (after a restart): no checks."""
    pool.txs[tx.id] = tx
    pool.nonces.setdefault(tx.principal, {})[tx.nonce] = tx.id
    pool.total_bytes += tx.size
    pool.next_seq = max(pool.next_seq, tx.seq + 1)
    if locked:
        pool.locked.add(tx.id)
    else:
        heapq.heappush(pool.cheapest, (tx.gas_price, -tx.seq, tx.id))


def remove(pool: Pool, tx_id: bytes) -> PoolTx | None:
    """Forget a transaction (executed, dropped, evicted, replaced); None if unknown."""
    tx = pool.txs.pop(tx_id, None)
    if tx is None:
        return None
    pool.locked.discard(tx_id)
    pool.total_bytes -= tx.size
    by_nonce = pool.nonces[tx.principal]
    if by_nonce.get(tx.nonce) == tx_id:
        del by_nonce[tx.nonce]
    if not by_nonce:
        del pool.nonces[tx.principal]
        pool.accounts.pop(tx.principal, None)
    if len(pool.cheapest) > 2 * len(pool.txs) + 64:
        pool.cheapest = [
            (t.gas_price, -t.seq, t.id) for t in pool.txs.values() if t.id not in pool.locked
        ]
        heapq.heapify(pool.cheapest)
    return tx


def lock(pool: Pool, ids: list[bytes]) -> None:
    """Mark transactions as in flight (bundled, or included by anyone)."""
    for tx_id in ids:
        if tx_id in pool.txs:
            pool.locked.add(tx_id)


def unlock(pool: Pool, ids: list[bytes]) -> None:
    """Make in-flight transactions pending again (their bundle failed or they were cut)."""
    for tx_id in ids:
        tx = pool.txs.get(tx_id)
        if tx is not None and tx_id in pool.locked:
            pool.locked.discard(tx_id)
            heapq.heappush(pool.cheapest, (tx.gas_price, -tx.seq, tx.id))


# --- revalidation --------------------------------------------------------------------------


def revalidate(pool: Pool, principal: bytes, account: AccountView) -> list[tuple[PoolTx, str]]:
    """Apply a newer account view: remove the pending transactions it invalidates.

    Returns each removed transaction with the reason. A pending transaction below the new
    nonce had its nonce used by something (maybe itself, included by another bundler: the
    caller checks for a receipt before calling it dropped). Pending transactions whose
    cost the balance no longer covers, counted in nonce order, go with their successors.
    In-flight transactions are never removed here: their own outcome decides.
    """
    if principal not in pool.nonces:
        return []
    pool.accounts[principal] = account
    removed: list[tuple[PoolTx, str]] = []
    owed = 0
    short = False
    for tx in pool.principal_txs(principal):
        in_flight = tx.id in pool.locked
        if tx.nonce < account.nonce:
            if not in_flight:
                remove(pool, tx.id)
                removed.append((tx, f"nonce {tx.nonce} was used by another transaction"))
            continue
        owed += tx.cost
        if not in_flight and (short or owed > account.balance):
            short = True
            owed -= tx.cost
            remove(pool, tx.id)
            removed.append((tx, f"the balance {account.balance} no longer covers this transaction"))
    return removed


# --- selection -----------------------------------------------------------------------------


def ready_chain(pool: Pool, principal: bytes) -> list[PoolTx]:
    """The principal's pending transactions that can run next, in nonce order: from its
    next nonce on, stepping over nonces in flight, up to the first missing nonce."""
    account = pool.accounts.get(principal)
    by_nonce = pool.nonces.get(principal)
    if account is None or not by_nonce:
        return []
    chain = []
    nonce = account.nonce
    while nonce in by_nonce:
        tx_id = by_nonce[nonce]
        if tx_id not in pool.locked:
            chain.append(pool.txs[tx_id])
        nonce += 1
    return chain


def select(pool: Pool, max_bytes: int, max_gas: int) -> list[PoolTx]:
    """Transactions for one bundle: highest gas price first (earlier arrival on a tie),
    each principal's nonces in order; a principal whose next one does not fit stops there.

    `max_bytes` bounds the sum of `bundle_weight`, `max_gas` the sum of gas limits.
    """
    chains: dict[bytes, list[PoolTx]] = {}
    heads: list[tuple[int, int, bytes, int]] = []
    for principal in pool.nonces:
        chain = ready_chain(pool, principal)
        if chain:
            chains[principal] = chain
            heads.append((-chain[0].gas_price, chain[0].seq, principal, 0))
    heapq.heapify(heads)
    chosen: list[PoolTx] = []
    used_bytes = used_gas = 0
    while heads:
        _, _, principal, index = heapq.heappop(heads)
        tx = chains[principal][index]
        weight = bundle_weight(tx)
        if used_bytes + weight > max_bytes or used_gas + tx.gas_limit > max_gas:
            continue
        chosen.append(tx)
        used_bytes += weight
        used_gas += tx.gas_limit
        if index + 1 < len(chains[principal]):
            nxt = chains[principal][index + 1]
            heapq.heappush(heads, (-nxt.gas_price, nxt.seq, principal, index + 1))
    return chosen
