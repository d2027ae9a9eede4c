"""The executor's claim book: every claim is sent until a certified block carries it,
with no nonce gap left behind by a lost one."""

from devnet.block import Block
from devnet.execution.layer import LayerRecord
from devnet.keys import derive_test_key
from devnet.l1 import Claim, L1Tx
from executor.claims import MAX_PENDING, RESEND_LAYERS, ClaimBook

KEY = derive_test_key("claims", 0)
OTHER = derive_test_key("claims", 1)
GENESIS = bytes(20)


def record(layer: int) -> LayerRecord:
    return LayerRecord(layer, bytes(20), bytes([layer % 256]) * 32, bytes(32), ())


def sign(rec: LayerRecord, nonce: int) -> L1Tx:
    body = Claim(rec.layer, rec.block_id, rec.root, rec.receipts_root)
    return L1Tx(KEY.public_key, nonce, body).sign(KEY, GENESIS)


def block(*txs: L1Tx) -> Block:
    return Block(99, (), tuple(txs), b"")


def sent(book: ClaimBook, l1_layer: int, l1_nonce: int) -> list[tuple[int, int]]:
    return [
        (c.record.layer, c.tx.nonce) for c in book.due(l1_layer, l1_nonce, sign) if c.tx is not None
    ]


def test_new_claims_get_consecutive_nonces_from_the_l1s() -> None:
    book = ClaimBook(KEY.public_key)
    for layer in (3, 1, 2):
        book.add(record(layer))
    assert sent(book, 10, 7) == [(1, 7), (2, 8), (3, 9)]
    assert sent(book, 10, 7) == []  # just sent
    book.add(record(4))
    assert sent(book, 11, 7) == [(4, 10)]


def test_a_carried_claim_is_forgotten_and_others_are_resent_unchanged() -> None:
    book = ClaimBook(KEY.public_key)
    book.add(record(1))
    book.add(record(2))
    first = {c.record.layer: c.tx for c in book.due(5, 0, sign) if c.tx is not None}
    foreign = L1Tx(OTHER.public_key, 0, Claim(2, bytes(20), bytes(32), bytes(32))).sign(
        OTHER, GENESIS
    )
    assert book.carried(block(first[1], foreign)) == [1]  # another key's claim is not ours
    assert sent(book, 5 + RESEND_LAYERS - 1, 1) == []
    again = book.due(5 + RESEND_LAYERS, 1, sign)
    assert [c.tx for c in again] == [first[2]]  # same bytes: its nonce is still free


def test_a_claim_whose_nonce_was_taken_is_signed_again_after_the_others() -> None:
    """A restarted executor's claims collide with its predecessor's pooled ones."""
    book = ClaimBook(KEY.public_key)
    for layer in (1, 2, 3):
        book.add(record(layer))
    assert sent(book, 5, 0) == [(1, 0), (2, 1), (3, 2)]
    # nonces 0 and 1 went to other transactions of ours; nonce 2 is still pooled
    assert sent(book, 5 + RESEND_LAYERS, 2) == [(1, 3), (2, 4), (3, 2)]


def test_pending_claims_are_bounded() -> None:
    book = ClaimBook(KEY.public_key)
    for layer in range(MAX_PENDING + 5):
        book.add(record(layer))
    assert len(book.pending) == MAX_PENDING
    assert min(book.pending) == 5 and book.dropped == 5
