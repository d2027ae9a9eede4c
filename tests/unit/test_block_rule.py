"""The block rule: which Athena transactions a layer executes, and in what order.

The property tests draw random bundles of random signed transactions and check the
go-spacemesh rule against a small independent model: the winners (dedup by id, highest gas
price per (principal, nonce), ties to the lower id), the beneficiary (first bundle by id),
the per-principal nonce order, determinism, the seed, and the gas-limit cut.
"""

import random
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from devnet.block import Block, BlockTx, ordered_transactions
from devnet.bundle import Bundle
from devnet.keys import derive_test_key
from devnet.methods import spend
from devnet.transaction import Transaction

GENESIS = bytes(range(20))
USERS = [derive_test_key("block-rule/user", i) for i in range(3)]
PRINCIPALS = [bytes(4) + bytes([0xA0 + i]) * 20 for i in range(len(USERS))]
RELAYS = [derive_test_key("block-rule/relay", i) for i in range(3)]
UNLIMITED = 2**64 - 1

# (principal index, nonce, gas limit, gas price, amount)
TxSpec = tuple[int, int, int, int, int]


@cache
def make_tx(spec: TxSpec) -> Transaction:
    who, nonce, gas_limit, gas_price, amount = spec
    tx = Transaction(PRINCIPALS[who], nonce, gas_limit, gas_price, spend(bytes(24), amount))
    return tx.sign(USERS[who], GENESIS)


def make_bundle(
    txs: list[Transaction], relay: int = 0, nonce: int = 0, beneficiary: bytes | None = None
) -> Bundle:
    bundle = Bundle(
        RELAYS[relay].public_key,
        nonce,
        beneficiary if beneficiary is not None else bytes(4) + bytes([0xB0 + relay]) * 20,
        tuple(t.encode() for t in txs),
    )
    return bundle.sign(RELAYS[relay], GENESIS)


tx_specs = st.tuples(
    st.integers(0, len(USERS) - 1),
    st.integers(0, 4),
    st.integers(1, 40),
    st.integers(1, 3),
    st.integers(0, 2),
)


@st.composite
def bundle_sets(draw: st.DrawFn) -> list[Bundle]:
    """1..4 distinct bundles, each carrying a non-empty selection of a shared tx pool."""
    pool = [make_tx(s) for s in draw(st.lists(tx_specs, min_size=1, max_size=12))]
    count = draw(st.integers(1, 4))
    bundles = {}
    for index in range(count):
        picks = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=8))
        relay = draw(st.integers(0, len(RELAYS) - 1))
        bundle = make_bundle(picks, relay=relay, nonce=index)
        bundles[bundle.id] = bundle
    return list(bundles.values())


def winners(bundles: list[Bundle]) -> dict[bytes, tuple[Transaction, bytes]]:
    """The model: tx id -> (tx, beneficiary) of the transactions a block may execute."""
    first_carrier: dict[bytes, Bundle] = {}
    txs: dict[bytes, Transaction] = {}
    for bundle in bundles:
        for tx in bundle.transactions():
            txs[tx.id] = tx
            if tx.id not in first_carrier or bundle.id < first_carrier[tx.id].id:
                first_carrier[tx.id] = bundle
    best: dict[tuple[bytes, int], Transaction] = {}
    for tx in txs.values():
        key = (tx.principal, tx.nonce)
        if key not in best or (-tx.gas_price, tx.id) < (-best[key].gas_price, best[key].id):
            best[key] = tx
    return {tx.id: (tx, first_carrier[tx.id].beneficiary) for tx in best.values()}


def ids(items: list[BlockTx]) -> list[bytes]:
    return [item.tx.id for item in items]


def assert_nonces_ascending(items: list[BlockTx]) -> None:
    last: dict[bytes, int] = {}
    for item in items:
        principal = item.tx.principal
        assert item.tx.nonce > last.get(principal, -1)
        last[principal] = item.tx.nonce


@settings(max_examples=60)
@given(bundle_sets())
def test_unlimited_block_executes_exactly_the_winners(bundles: list[Bundle]) -> None:
    out = ordered_transactions(Block(3, tuple(bundles)), UNLIMITED)
    expected = winners(bundles)
    assert sorted(ids(out)) == sorted(expected)
    for item in out:
        tx, beneficiary = expected[item.tx.id]
        assert item.beneficiary == beneficiary
        assert item.raw == tx.encode()
        assert item.tx == tx
    assert_nonces_ascending(out)


@settings(max_examples=40)
@given(bundle_sets(), st.randoms(use_true_random=False))
def test_order_is_independent_of_the_bundle_order(
    bundles: list[Bundle], rnd: random.Random
) -> None:
    reference = ids(ordered_transactions(Block(0, tuple(bundles)), UNLIMITED))
    shuffled = list(bundles)
    rnd.shuffle(shuffled)
    assert ids(ordered_transactions(Block(0, tuple(shuffled)), UNLIMITED)) == reference
    # Neither the layer nor the certificate the block carries seeds the order.
    other = Block(9, tuple(sorted(bundles, key=lambda b: b.id)), (), b"cert")
    assert ids(ordered_transactions(other, UNLIMITED)) == reference


@settings(max_examples=60)
@given(bundle_sets(), st.integers(0, 150))
def test_gas_cut(bundles: list[Bundle], gas_limit: int) -> None:
    block = Block(1, tuple(bundles))
    full = ordered_transactions(block, UNLIMITED)
    cut = ordered_transactions(block, gas_limit)
    chosen = set(ids(cut))
    # The cut keeps the order of the full list and stays within the limit.
    assert ids(cut) == [i for i in ids(full) if i in chosen]
    assert sum(item.tx.gas_limit for item in cut) <= gas_limit
    assert_nonces_ascending(cut)
    # Each principal runs a prefix of its nonces: once one is cut, every later one is too.
    for principal in {item.tx.principal for item in full}:
        mine = [item.tx.id in chosen for item in full if item.tx.principal == principal]
        assert mine == sorted(mine, reverse=True)
    # Nothing is cut that fitted: a left-out tx either follows a cut nonce of its
    # principal or did not fit in what the chosen txs before it had left.
    used, stopped = 0, set()
    for item in full:
        if item.tx.id in chosen:
            used += item.tx.gas_limit
        elif item.tx.principal not in stopped:
            assert used + item.tx.gas_limit > gas_limit
            stopped.add(item.tx.principal)


def test_later_nonce_never_runs_after_a_cut_one() -> None:
    # Principal 0's nonce 0 is too big for the block; its nonce 1 is small but must not
    # run, while principal 1's small transaction does.
    big = make_tx((0, 0, 100, 1, 0))
    small_next = make_tx((0, 1, 1, 1, 0))
    other = make_tx((1, 0, 1, 1, 0))
    out = ordered_transactions(Block(0, (make_bundle([big, small_next, other]),)), 10)
    assert ids(out) == [other.id]


def test_highest_gas_price_wins_and_ties_go_to_the_lower_id() -> None:
    cheap = make_tx((0, 0, 5, 1, 0))
    dear = make_tx((0, 0, 5, 3, 0))
    out = ordered_transactions(Block(0, (make_bundle([cheap, dear]),)), UNLIMITED)
    assert ids(out) == [dear.id]

    same_a = make_tx((1, 0, 5, 2, 0))
    same_b = make_tx((1, 0, 5, 2, 1))  # same price, different payload: another id
    low, high = sorted([same_a, same_b], key=lambda t: t.id)
    for order in ([same_a, same_b], [same_b, same_a]):
        out = ordered_transactions(Block(0, (make_bundle(order),)), UNLIMITED)
        assert ids(out) == [low.id]
    # Across bundles too, whichever bundle id sorts first.
    bundles = (make_bundle([high], relay=0), make_bundle([low], relay=1))
    assert ids(ordered_transactions(Block(0, bundles), UNLIMITED)) == [low.id]


def test_duplicates_are_executed_once_and_pay_the_first_bundle_by_id() -> None:
    tx = make_tx((0, 0, 5, 1, 0))
    extra = make_tx((1, 0, 5, 1, 0))
    a = make_bundle([tx, tx], relay=0, beneficiary=bytes(4) + b"\x01" * 20)
    b = make_bundle([extra, tx], relay=1, beneficiary=bytes(4) + b"\x02" * 20)
    first, second = sorted([a, b], key=lambda x: x.id)
    out = ordered_transactions(Block(0, (second, first)), UNLIMITED)
    assert sorted(ids(out)) == sorted([tx.id, extra.id])
    by_id = {item.tx.id: item for item in out}
    assert by_id[tx.id].beneficiary == first.beneficiary
    assert by_id[extra.id].beneficiary == b.beneficiary


def test_nonces_stay_in_order_for_a_long_sequence() -> None:
    seq = [make_tx((0, n, 1, 1, 0)) for n in range(5)]
    others = [make_tx((1, n, 1, 1, 0)) for n in range(5)]
    for relay_nonce in range(5):
        bundle = make_bundle(list(reversed(seq)) + others, nonce=relay_nonce)
        out = ordered_transactions(Block(0, (bundle,)), UNLIMITED)
        assert len(out) == 10
        assert_nonces_ascending(out)


def test_order_depends_on_the_bundle_set() -> None:
    # The same candidate transactions under different bundle sets (seeds): the orders are
    # not all the same, though each is a permutation of the same ten transactions.
    # Distinct principals make the shuffle visible (nonce order pins a principal's txs).
    keys = [derive_test_key("block-rule/seed", i) for i in range(10)]
    txs = [
        Transaction(bytes(4) + bytes([i]) * 20, 0, 1, 1, spend(bytes(24), 0)).sign(k, GENESIS)
        for i, k in enumerate(keys)
    ]
    orders = set()
    for relay_nonce in range(6):
        out = ordered_transactions(Block(0, (make_bundle(txs, nonce=relay_nonce),)), UNLIMITED)
        assert sorted(ids(out)) == sorted(t.id for t in txs)
        orders.add(tuple(ids(out)))
    assert len(orders) > 1
    # Adding a bundle that brings no new transaction still changes the seed.
    base = make_bundle(txs)
    alone = ids(ordered_transactions(Block(0, (base,)), UNLIMITED))
    variants = {
        tuple(ids(ordered_transactions(Block(0, (base, make_bundle(txs[:1], 1, n))), UNLIMITED)))
        for n in range(6)
    }
    assert variants - {tuple(alone)}


def test_empty_block_and_malformed_bundle() -> None:
    assert ordered_transactions(Block(0), UNLIMITED) == []
    good = make_tx((0, 0, 1, 1, 0))
    bad = Bundle(RELAYS[0].public_key, 0, bytes(24), (b"not a transaction",)).sign(
        RELAYS[0], GENESIS
    )
    out = ordered_transactions(Block(0, (bad, make_bundle([good]))), UNLIMITED)
    assert ids(out) == [good.id]


def test_known_answer_order() -> None:
    # Every node must derive the same order: pin one, so a change to the id sort, the seed
    # or the shuffle shows up as the consensus change it is.
    txs = [make_tx((w, n, 10, 1 + (w + n) % 2, 0)) for w in range(3) for n in range(3)]
    block = Block(0, (make_bundle(txs[:6], relay=0), make_bundle(txs[3:], relay=1)))
    out = ordered_transactions(block, UNLIMITED)
    slots = [(PRINCIPALS.index(item.tx.principal), item.tx.nonce) for item in out]
    assert slots == [(1, 0), (0, 0), (2, 0), (2, 1), (0, 1), (2, 2), (1, 1), (1, 2), (0, 2)]
    assert len(ordered_transactions(block, 55)) == 5
