"""L1 state: bundle fees, L1 transactions, the reward split, `fits`, the state hash."""

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devnet.block import Block
from devnet.bundle import Bundle
from devnet.keys import derive_test_key
from devnet.l1 import Claim, L1Tx, Transfer, l1_address
from smesher.l1_state import (
    MAX_BALANCE,
    Account,
    Accounts,
    L1Params,
    L1RuleError,
    apply_block,
    fits,
    split_reward,
    state_hash,
)

GENESIS = bytes(range(20))
KEYS = [derive_test_key("l1-state", i) for i in range(4)]
ADDRS = [l1_address(k.public_key) for k in KEYS]
OUTSIDER = bytes(4) + b"\x77" * 20
PARAMS = L1Params(byte_price=2, layer_subsidy=1000)
RAW_TX = b"\x04" + bytes(60)  # bundles here are never decoded, only paid for


def bundle(who: int, nonce: int, size: int = 1) -> Bundle:
    key = KEYS[who]
    return Bundle(key.public_key, nonce, bytes(24), (RAW_TX * size,)).sign(key, GENESIS)


def transfer(who: int, nonce: int, to: bytes, amount: int) -> L1Tx:
    return L1Tx(KEYS[who].public_key, nonce, Transfer(to, amount)).sign(KEYS[who], GENESIS)


def claim(who: int, nonce: int, layer: int = 1) -> L1Tx:
    body = Claim(layer, bytes(20), b"\x01" * 32, b"\x02" * 32)
    return L1Tx(KEYS[who].public_key, nonce, body).sign(KEYS[who], GENESIS)


def l1_fee(tx: L1Tx) -> int:
    return len(tx.encode()) * PARAMS.byte_price


def funded(*balances: int) -> dict[bytes, Account]:
    return {ADDRS[i]: Account(b, 0) for i, b in enumerate(balances)}


def total(base: dict[bytes, Account], changed: dict[bytes, Account]) -> int:
    return sum({**base, **changed}[a].balance for a in {*base, *changed})


# --- bundles -------------------------------------------------------------------------


def test_bundle_fees_are_charged_in_payer_nonce_order() -> None:
    base = funded(10_000, 10_000)
    bundles = [bundle(0, 1), bundle(1, 0), bundle(0, 0), bundle(0, 2, size=3)]
    effects = apply_block(base, Block(0, tuple(bundles)), PARAMS, [], 0)
    fee0 = sum(b.fee(PARAMS.byte_price) for b in bundles if b.payer == ADDRS[0])
    fee1 = bundle(1, 0).fee(PARAMS.byte_price)
    assert effects.changed[ADDRS[0]] == Account(10_000 - fee0, 3)
    assert effects.changed[ADDRS[1]] == Account(10_000 - fee1, 1)
    assert effects.fees == fee0 + fee1
    assert effects.claims == ()
    assert base == funded(10_000, 10_000)  # the input table is not modified


def test_bundle_with_a_wrong_nonce_breaks_the_block() -> None:
    base = funded(10_000)
    for nonces in ([1], [0, 2], [0, 0]):
        block = Block(0, tuple(bundle(0, n, size=1 + i) for i, n in enumerate(nonces)))
        with pytest.raises(L1RuleError, match="nonce"):
            apply_block(base, block, PARAMS, [], 0)


def test_unpayable_bundle_breaks_the_block() -> None:
    b = bundle(0, 0)
    fee = b.fee(PARAMS.byte_price)
    apply_block(funded(fee), Block(0, (b,)), PARAMS, [], 0)
    with pytest.raises(L1RuleError, match="fee"):
        apply_block(funded(fee - 1), Block(0, (b,)), PARAMS, [], 0)
    with pytest.raises(L1RuleError):
        apply_block({}, Block(0, (b,)), PARAMS, [], 0)  # unknown payer: balance 0


# --- L1 transactions -----------------------------------------------------------------


def test_transfer_moves_coins() -> None:
    tx = transfer(0, 0, OUTSIDER, 500)
    effects = apply_block(funded(10_000), Block(0, (), (tx,)), PARAMS, [], 0)
    assert effects.changed[ADDRS[0]] == Account(10_000 - l1_fee(tx) - 500, 1)
    assert effects.changed[OUTSIDER] == Account(500, 0)
    assert effects.fees == l1_fee(tx)


def test_transfer_to_self_costs_only_the_fee() -> None:
    tx = transfer(0, 0, ADDRS[0], 500)
    effects = apply_block(funded(10_000), Block(0, (), (tx,)), PARAMS, [], 0)
    assert effects.changed[ADDRS[0]] == Account(10_000 - l1_fee(tx), 1)


def test_transfer_beyond_the_balance_fails() -> None:
    fee = l1_fee(transfer(0, 0, OUTSIDER, 1))
    ok = transfer(0, 0, OUTSIDER, 1000)
    apply_block(funded(1000 + fee), Block(0, (), (ok,)), PARAMS, [], 0)
    with pytest.raises(L1RuleError, match="exceeds"):
        apply_block(funded(999 + fee), Block(0, (), (ok,)), PARAMS, [], 0)
    with pytest.raises(L1RuleError, match="fee"):
        apply_block(funded(fee - 1), Block(0, (), (ok,)), PARAMS, [], 0)


def test_l1_nonces_and_bundles_share_the_account_nonce() -> None:
    # Bundles come first, so an L1 tx after a bundle of the same payer takes the next nonce.
    b = bundle(0, 0)
    tx = transfer(0, 1, OUTSIDER, 5)
    effects = apply_block(funded(10_000), Block(0, (b,), (tx,)), PARAMS, [], 0)
    assert effects.changed[ADDRS[0]].nonce == 2
    with pytest.raises(L1RuleError, match="nonce"):
        apply_block(funded(10_000), Block(0, (b,), (transfer(0, 0, OUTSIDER, 5),)), PARAMS, [], 0)


def test_l1_txs_apply_in_sender_nonce_order() -> None:
    # ADDRS sorted: the lower address's transfer funds the higher one's, whatever the order
    # the block lists them in.
    low, high = sorted(range(2), key=lambda i: ADDRS[i])
    pay = transfer(low, 0, ADDRS[high], 5_000)
    spend = transfer(high, 0, OUTSIDER, 4_000)
    base = funded(*[10_000 if i == low else 0 for i in range(2)])
    for order in ((pay, spend), (spend, pay)):
        effects = apply_block(base, Block(0, (), order), PARAMS, [], 0)
        assert effects.changed[OUTSIDER].balance == 4_000
    # The other way round the funding arrives too late.
    base = funded(*[0 if i == low else 10_000 for i in range(2)])
    late = transfer(high, 0, ADDRS[low], 5_000)
    early = transfer(low, 0, OUTSIDER, 4_000)
    with pytest.raises(L1RuleError):
        apply_block(base, Block(0, (), (late, early)), PARAMS, [], 0)


def test_claims_are_returned_in_effects() -> None:
    c1, c2 = claim(0, 0, layer=4), claim(1, 0, layer=5)
    t = transfer(0, 1, OUTSIDER, 1)
    effects = apply_block(funded(10_000, 10_000), Block(0, (), (t, c2, c1)), PARAMS, [], 0)
    expected = sorted(
        [(KEYS[0].public_key, c1), (KEYS[1].public_key, c2)], key=lambda x: l1_address(x[0])
    )
    assert effects.claims == tuple((k, c.body) for k, c in expected)
    assert effects.fees == l1_fee(c1) + l1_fee(c2) + l1_fee(t)
    assert effects.changed[ADDRS[0]].nonce == 2


# --- rewards -------------------------------------------------------------------------


def test_split_reward() -> None:
    assert split_reward(1000, []) == {}
    assert split_reward(0, [ADDRS[0]]) == {ADDRS[0]: 0}
    signers = ADDRS[:3]
    first = min(signers)
    shares = split_reward(1000, list(reversed(signers)))
    assert shares == {a: 333 + (1 if a == first else 0) for a in signers}
    assert split_reward(999, signers) == dict.fromkeys(signers, 333)


@given(st.integers(0, 2**40), st.lists(st.binary(min_size=24, max_size=24), unique=True))
def test_split_reward_property(amount: int, signers: list[bytes]) -> None:
    shares = split_reward(amount, signers)
    if not signers:
        assert shares == {}
        return
    assert set(shares) == set(signers)
    assert sum(shares.values()) == amount
    base = amount // len(signers)
    first = min(signers)
    assert all(v == base for a, v in shares.items() if a != first)
    assert shares[first] == base + amount % len(signers)


def test_block_pays_the_previous_layers_reward() -> None:
    signers = [ADDRS[2], ADDRS[1]]
    effects = apply_block(funded(10_000, 0, 7), Block(1), PARAMS, signers, 1001)
    first = min(signers)
    other = max(signers)
    base = funded(10_000, 0, 7)
    assert effects.changed[first].balance == base[first].balance + 501
    assert effects.changed[other].balance == base[other].balance + 500
    assert ADDRS[0] not in effects.changed
    assert apply_block(base, Block(1), PARAMS, [], 1001).changed == {}


# --- fits ----------------------------------------------------------------------------


def test_fits_picks_the_applicable_subset() -> None:
    base = funded(10_000, bundle(1, 0).fee(PARAMS.byte_price), 10_000)
    bundles = [
        bundle(0, 0),
        bundle(0, 1),
        bundle(0, 3),  # gap: never fits
        bundle(1, 0),
        bundle(1, 1),  # payer 1 can pay only one bundle
        bundle(2, 1),  # wrong nonce
    ]
    txs = [
        transfer(0, 2, OUTSIDER, 10),  # after its two bundles
        transfer(0, 3, OUTSIDER, 10**9),  # beyond the balance
        transfer(2, 0, OUTSIDER, 10),
        transfer(2, 0, OUTSIDER, 11),  # the same nonce again
        claim(3, 0),  # unfunded sender
    ]
    chosen_b, chosen_t = fits(base, bundles, txs, PARAMS)
    assert set(chosen_b) == {bundles[0], bundles[1], bundles[3]}
    assert len(chosen_t) == 2
    assert txs[0] in chosen_t
    assert (txs[2] in chosen_t) != (txs[3] in chosen_t)
    apply_block(base, Block(0, tuple(chosen_b), tuple(chosen_t)), PARAMS, [], 0)
    assert fits(base, [], [], PARAMS) == ([], [])


@st.composite
def l1_blocks(draw: st.DrawFn) -> tuple[dict[bytes, Account], list[Bundle], list[L1Tx]]:
    balances = draw(st.lists(st.integers(0, 3_000), min_size=len(KEYS), max_size=len(KEYS)))
    base = {a: Account(b, draw(st.integers(0, 1))) for a, b in zip(ADDRS, balances, strict=True)}
    bundles = draw(
        st.lists(
            st.builds(bundle, st.integers(0, 3), st.integers(0, 3), st.integers(1, 3)),
            max_size=6,
            unique_by=lambda b: b.id,
        )
    )
    targets = st.sampled_from([*ADDRS, OUTSIDER])
    txs = draw(
        st.lists(
            st.one_of(
                st.builds(
                    transfer, st.integers(0, 3), st.integers(0, 4), targets, st.integers(0, 2_000)
                ),
                st.builds(claim, st.integers(0, 3), st.integers(0, 4)),
            ),
            max_size=6,
            unique_by=lambda t: t.id,
        )
    )
    return base, bundles, txs


@settings(max_examples=80)
@given(l1_blocks(), st.lists(st.integers(0, 3), unique=True), st.integers(0, 10_000))
def test_fits_is_exact_and_coins_are_conserved(
    case: tuple[dict[bytes, Account], list[Bundle], list[L1Tx]],
    signer_indexes: list[int],
    reward: int,
) -> None:
    base, bundles, txs = case
    chosen_b, chosen_t = fits(base, bundles, txs, PARAMS)
    signers = [ADDRS[i] for i in signer_indexes]
    effects = apply_block(base, Block(0, tuple(chosen_b), tuple(chosen_t)), PARAMS, signers, reward)
    # Conservation: fees leave the accounts (for the next reward); only the reward enters.
    minted = reward if signers else 0
    assert total(base, effects.changed) == total(base, {}) - effects.fees + minted
    fee_total = sum(b.fee(PARAMS.byte_price) for b in chosen_b) + sum(map(l1_fee, chosen_t))
    assert effects.fees == fee_total
    # Exact: adding anything `fits` left out makes the block invalid.
    for extra in bundles:
        if extra not in chosen_b:
            with pytest.raises(L1RuleError):
                block = Block(0, (*chosen_b, extra), tuple(chosen_t))
                apply_block(base, block, PARAMS, [], 0)
    for extra_tx in txs:
        if extra_tx not in chosen_t:
            with pytest.raises(L1RuleError):
                apply_block(base, Block(0, tuple(chosen_b), (*chosen_t, extra_tx)), PARAMS, [], 0)
    # Nonces: each account advanced by the number of its chosen objects.
    for address in ADDRS:
        count = sum(b.payer == address for b in chosen_b) + sum(
            t.address == address for t in chosen_t
        )
        after = effects.changed.get(address, base[address])
        assert after.nonce == base[address].nonce + count


# --- accounts and the state hash -----------------------------------------------------


def test_accounts_view_is_copy_on_write() -> None:
    base = funded(100)
    view = Accounts(base)
    assert view.get(OUTSIDER) == Account()
    view.charge(ADDRS[0], 0, 40, "test")
    view.credit(OUTSIDER, 5)
    assert view.get(ADDRS[0]) == Account(60, 1)
    assert view.changed == {ADDRS[0]: Account(60, 1), OUTSIDER: Account(5, 0)}
    assert base == funded(100)
    # A zero balance in `changed` must not fall through to the base table.
    view.charge(ADDRS[0], 1, 60, "test")
    assert view.get(ADDRS[0]) == Account(0, 2)


def test_state_hash() -> None:
    prev, block_id = b"\x09" * 32, b"\x05" * 20
    changed = {ADDRS[0]: Account(10, 1), ADDRS[1]: Account(20, 0)}
    h = state_hash(prev, 3, block_id, changed)
    assert len(h) == 32
    reordered = dict(reversed(list(changed.items())))
    assert state_hash(prev, 3, block_id, reordered) == h
    variants = [
        state_hash(b"\x08" * 32, 3, block_id, changed),
        state_hash(prev, 4, block_id, changed),
        state_hash(prev, 3, b"\x06" * 20, changed),
        state_hash(prev, 3, block_id, {**changed, ADDRS[0]: Account(11, 1)}),
        state_hash(prev, 3, block_id, {**changed, ADDRS[0]: Account(10, 2)}),
        state_hash(prev, 3, block_id, {**changed, ADDRS[2]: Account(0, 0)}),
        state_hash(prev, 3, block_id, {ADDRS[0]: Account(10, 1)}),
        state_hash(prev, 3, block_id, {ADDRS[2]: Account(10, 1), ADDRS[1]: Account(20, 0)}),
    ]
    assert len({h, *variants}) == len(variants) + 1


@given(
    st.dictionaries(
        st.binary(min_size=24, max_size=24),
        st.builds(Account, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
        max_size=6,
    ),
    st.randoms(use_true_random=False),
    st.binary(min_size=24, max_size=24),
    st.integers(0, 2**64 - 1),
)
def test_state_hash_order_independent_and_change_sensitive(
    changed: dict[bytes, Account], rnd: random.Random, address: bytes, balance: int
) -> None:
    h = state_hash(bytes(32), 1, bytes(20), changed)
    items = list(changed.items())
    rnd.shuffle(items)
    assert state_hash(bytes(32), 1, bytes(20), dict(items)) == h
    acct = changed.get(address, Account())
    updated = {**changed, address: replace(acct, balance=balance)}
    if updated != changed:
        assert state_hash(bytes(32), 1, bytes(20), updated) != h


@settings(max_examples=60)
@given(
    st.lists(st.integers(2**64 - 2**20, 2**64 - 1), min_size=2, max_size=2),
    st.integers(0, 2**19),
)
def test_transfers_never_destroy_coins_near_the_balance_limit(
    balances: list[int], amount: int
) -> None:
    base = {ADDRS[0]: Account(balances[0], 0), ADDRS[1]: Account(balances[1], 0)}
    tx = transfer(0, 0, ADDRS[1], amount)
    _, chosen_t = fits(base, [], [tx], PARAMS)
    effects = apply_block(base, Block(0, (), tuple(chosen_t)), PARAMS, [], 0)
    assert total(base, effects.changed) == total(base, {}) - effects.fees
    if balances[1] + amount > MAX_BALANCE:
        assert chosen_t == []
        with pytest.raises(L1RuleError, match="overflow"):
            apply_block(base, Block(0, (), (tx,)), PARAMS, [], 0)
