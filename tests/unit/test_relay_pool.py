"""The relay's mempool rules, on plain data: ordering, replacement, caps, eviction."""

import random

import blake3
import pytest

from relay.pool import (
    DUPLICATE,
    IN_FLIGHT,
    NONCE_TOO_HIGH,
    OVER_BALANCE,
    POOL_FULL,
    PRINCIPAL_FULL,
    REPLACEMENT_UNDERPRICED,
    STALE_NONCE,
    AccountView,
    Pool,
    PoolLimits,
    PoolRejection,
    PoolTx,
    admit,
    bundle_weight,
    lock,
    ready_chain,
    remove,
    revalidate,
    saturated,
    select,
    unlock,
)

RICH = AccountView(nonce=0, balance=10**18)


def principal(n: int) -> bytes:
    return bytes(4) + n.to_bytes(20, "big")


def make(p: int, nonce: int, price: int = 1, size: int = 100, cost: int = 1000, tag: int = 0):
    raw = bytes([tag]) + p.to_bytes(4, "big") + nonce.to_bytes(4, "big") + price.to_bytes(4, "big")
    raw = raw.ljust(size, b"\x00")
    return PoolTx(blake3.blake3(raw).digest(), raw, principal(p), nonce, price, 1000, cost)


def snapshot(pool: Pool) -> tuple[object, ...]:
    return (
        dict(pool.txs),
        {k: dict(v) for k, v in pool.nonces.items()},
        dict(pool.accounts),
        set(pool.locked),
        pool.total_bytes,
    )


def reject(pool: Pool, tx: PoolTx, account: AccountView, kind: str) -> PoolRejection:
    before = snapshot(pool)
    with pytest.raises(PoolRejection) as info:
        admit(pool, tx, account)
    assert info.value.kind == kind
    assert str(info.value).startswith(kind + ":")
    assert snapshot(pool) == before, "a rejection must change nothing"
    return info.value


def test_duplicate_is_stored_once() -> None:
    pool = Pool()
    tx = make(1, 0)
    admit(pool, tx, RICH)
    reject(pool, tx, RICH, DUPLICATE)
    assert len(pool) == 1 and pool.total_bytes == tx.size


def test_nonce_rules() -> None:
    pool = Pool(PoolLimits(max_per_principal=5))
    account = AccountView(nonce=3, balance=10**9)
    reject(pool, make(1, 2), account, STALE_NONCE)
    reject(pool, make(1, 8), account, NONCE_TOO_HIGH)
    admit(pool, make(1, 7), account)  # a gap is allowed: it waits for 3..6
    assert ready_chain(pool, principal(1)) == []
    for nonce in (3, 4, 5):
        admit(pool, make(1, nonce), account)
    assert [t.nonce for t in ready_chain(pool, principal(1))] == [3, 4, 5]


def test_replacement_needs_a_strictly_higher_gas_price() -> None:
    pool = Pool()
    old = make(1, 0, price=5)
    admit(pool, old, RICH)
    reject(pool, make(1, 0, price=5, tag=1), RICH, REPLACEMENT_UNDERPRICED)
    reject(pool, make(1, 0, price=4), RICH, REPLACEMENT_UNDERPRICED)
    new = make(1, 0, price=6)
    result = admit(pool, new, RICH)
    assert result.replaced == old
    assert old.id not in pool and new.id in pool and len(pool) == 1
    assert pool.total_bytes == new.size


def test_in_flight_transactions_cannot_be_replaced() -> None:
    pool = Pool()
    old = make(1, 0, price=5)
    admit(pool, old, RICH)
    lock(pool, [old.id])
    reject(pool, make(1, 0, price=50), RICH, IN_FLIGHT)


def test_per_principal_limit_counts_in_flight_ones() -> None:
    pool = Pool(PoolLimits(max_per_principal=3))
    txs = [make(1, n) for n in range(3)]
    for tx in txs:
        admit(pool, tx, RICH)
    reject(pool, make(1, 3), RICH, NONCE_TOO_HIGH)
    # Nonces 0 and 1 are in flight and already executed (the account moved on), but
    # until their outcome is known they still count.
    lock(pool, [txs[0].id, txs[1].id])
    reject(pool, make(1, 3), AccountView(2, 10**9), PRINCIPAL_FULL)
    admit(pool, make(2, 0), RICH)  # other principals are not affected


def test_balance_covers_every_transaction_from_the_next_nonce() -> None:
    pool = Pool()
    account = AccountView(nonce=0, balance=2500)
    admit(pool, make(1, 0, cost=1000), account)
    admit(pool, make(1, 1, cost=1000), account)
    reject(pool, make(1, 2, cost=1000), account, OVER_BALANCE)
    # A replacement's cost replaces the old one's.
    admit(pool, make(1, 1, price=2, cost=1500), account)
    reject(pool, make(1, 1, price=3, cost=1501), account, OVER_BALANCE)


def test_select_orders_by_gas_price_and_keeps_nonces_in_order() -> None:
    pool = Pool()
    admit(pool, make(1, 0, price=1), RICH)
    admit(pool, make(1, 1, price=100), RICH)  # behind a cheap nonce 0
    admit(pool, make(2, 0, price=10), RICH)
    admit(pool, make(2, 1, price=9), RICH)
    admit(pool, make(3, 0, price=50), RICH)
    chosen = select(pool, 10**6, 10**9)
    assert [(int.from_bytes(t.principal, "big"), t.nonce) for t in chosen] == [
        (3, 0),
        (2, 0),
        (2, 1),
        (1, 0),
        (1, 1),
    ]
    # Ties go to the earlier arrival.
    tie = Pool()
    first, second = make(5, 0, price=7), make(4, 0, price=7)
    admit(tie, first, RICH)
    admit(tie, second, RICH)
    assert select(tie, 10**6, 10**9) == [tie.txs[first.id], tie.txs[second.id]]


def test_select_respects_byte_and_gas_budgets_and_stops_a_principal() -> None:
    pool = Pool()
    for n in range(5):
        admit(pool, make(1, n, price=10, size=200), RICH)
    admit(pool, make(2, 0, price=5, size=100), RICH)
    weight = bundle_weight(pool.txs[make(1, 0, price=10, size=200).id])
    chosen = select(pool, 2 * weight + 150, 10**9)
    assert [(t.principal[-1], t.nonce) for t in chosen] == [(1, 0), (1, 1), (2, 0)]
    chosen = select(pool, 10**6, 2500)  # gas limit 1000 each
    assert len(chosen) == 2


def test_select_skips_in_flight_nonces_and_stops_at_a_gap() -> None:
    pool = Pool()
    txs = [make(1, n) for n in (0, 1, 2, 4)]
    for tx in txs:
        admit(pool, tx, RICH)
    lock(pool, [txs[0].id])
    assert [t.nonce for t in select(pool, 10**6, 10**9)] == [1, 2]
    unlock(pool, [txs[0].id])
    assert [t.nonce for t in select(pool, 10**6, 10**9)] == [0, 1, 2]


def test_full_pool_evicts_the_cheapest_first_with_its_successors() -> None:
    pool = Pool(PoolLimits(max_txs=4))
    cheap0, cheap1 = make(1, 0, price=1), make(1, 1, price=9)
    mid = make(2, 0, price=5)
    rich = make(3, 0, price=8)
    for tx in (cheap0, cheap1, mid, rich):
        admit(pool, tx, RICH)
    # Not better than the cheapest (1): refused, nothing evicted.
    reject(pool, make(4, 0, price=1), RICH, POOL_FULL)
    result = admit(pool, make(4, 0, price=6), RICH)
    # The cheapest is principal 1's nonce 0; its nonce 1 could no longer run.
    assert {t.id for t in result.evicted} == {cheap0.id, cheap1.id}
    assert len(pool) == 3
    result = admit(pool, make(5, 0, price=7), RICH)
    assert result.evicted == ()
    result = admit(pool, make(6, 0, price=7), RICH)
    assert [t.id for t in result.evicted] == [mid.id]


def test_byte_cap_evicts_until_the_newcomer_fits() -> None:
    pool = Pool(PoolLimits(max_txs=100, max_bytes=1000))
    small = [make(p, 0, price=p, size=200) for p in range(1, 6)]
    for tx in small:
        admit(pool, tx, RICH)
    assert pool.total_bytes == 1000
    result = admit(pool, make(9, 0, price=10, size=450), RICH)
    assert [t.principal[-1] for t in result.evicted] == [1, 2, 3]
    assert pool.total_bytes == 850


def test_eviction_never_strands_the_newcomer_or_touches_in_flight() -> None:
    pool = Pool(PoolLimits(max_txs=2))
    base = make(1, 0, price=1)
    admit(pool, base, RICH)
    admit(pool, make(2, 0, price=3), RICH)
    # Evicting principal 1's nonce 0 would strand its own nonce 1.
    reject(pool, make(1, 1, price=50), RICH, POOL_FULL)
    lock(pool, [base.id])
    result = admit(pool, make(3, 0, price=4), RICH)
    assert [t.principal[-1] for t in result.evicted] == [2]
    lock(pool, [t.id for t in pool.txs.values()])
    reject(pool, make(4, 0, price=99), RICH, POOL_FULL)


def test_revalidate_drops_used_nonces_and_uncovered_costs() -> None:
    pool = Pool()
    txs = [make(1, n, cost=1000) for n in range(5)]
    for tx in txs:
        admit(pool, tx, AccountView(0, 10_000))
    lock(pool, [txs[1].id])
    removed = revalidate(pool, principal(1), AccountView(nonce=2, balance=2_500))
    reasons = {tx.nonce: reason for tx, reason in removed}
    assert reasons.keys() == {0, 4}  # 0 used; 1 in flight stays; 2, 3 covered; 4 not
    assert "used" in reasons[0] and "balance" in reasons[4]
    assert [t.nonce for t in pool.principal_txs(principal(1))] == [1, 2, 3]
    assert revalidate(pool, principal(9), RICH) == []


def test_remove_forgets_the_principal_and_keeps_totals() -> None:
    pool = Pool()
    tx = make(1, 0)
    admit(pool, tx, RICH)
    assert remove(pool, tx.id) == tx
    assert remove(pool, tx.id) is None
    assert len(pool) == 0 and pool.total_bytes == 0
    assert not pool.nonces and not pool.accounts


def test_random_operations_keep_the_invariants() -> None:
    """Bounded count and bytes, consistent indexes, whatever arrives in whatever order."""
    rng = random.Random(7)
    limits = PoolLimits(max_txs=40, max_bytes=6000, max_per_principal=8)
    pool = Pool(limits)
    for step in range(3000):
        p = rng.randrange(12)
        nonce = rng.randrange(10)
        tx = make(p, nonce, price=rng.randrange(1, 20), size=rng.randrange(60, 300), tag=step % 3)
        op = rng.random()
        try:
            if op < 0.8:
                admit(pool, tx, AccountView(0, 10**12))
            elif op < 0.9 and pool.txs:
                lock(pool, [rng.choice(list(pool.txs))])
            elif pool.locked:
                unlock(pool, [rng.choice(sorted(pool.locked))])
        except PoolRejection:
            pass
        assert len(pool) <= limits.max_txs
        assert pool.total_bytes <= limits.max_bytes
        assert pool.total_bytes == sum(t.size for t in pool.txs.values())
        assert sum(len(v) for v in pool.nonces.values()) == len(pool)
        assert all(len(v) <= limits.max_per_principal for v in pool.nonces.values())
        assert pool.locked <= pool.txs.keys()
        assert len(pool.cheapest) <= 2 * len(pool.txs) + 64 + 1000


def test_a_pool_full_of_in_flight_transactions_is_saturated() -> None:
    pool = Pool(PoolLimits(max_txs=2, max_bytes=10_000, max_per_principal=10))
    first, second = make(1, 0), make(1, 1)
    admit(pool, first, RICH)
    assert not saturated(pool, 100)
    admit(pool, second, RICH)
    assert not saturated(pool, 100)  # full, but a better newcomer could evict a pending one
    lock(pool, [first.id, second.id])
    assert saturated(pool, 100)
    unlock(pool, [second.id])
    assert not saturated(pool, 100)
