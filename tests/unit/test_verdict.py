"""Narrowing a divergence to the first transaction whose receipts differ."""

from shadow_executor.verdict import (
    DIVERGENCE,
    Difference,
    Verdict,
    decode_verdict,
    encode_verdict,
    first_receipt_difference,
)


def receipt(tx: int, status: int = 0, gas: int = 10) -> dict[str, object]:
    return {"tx_id": bytes([tx]) * 32, "status": status, "gas_used": gas, "fee": gas, "output": b""}


def test_identical_receipts_have_no_difference() -> None:
    same = [receipt(1), receipt(2)]
    assert first_receipt_difference(same, list(same)) == (None, "every receipt matches")


def test_a_skipped_transaction_is_named() -> None:
    ours = [receipt(1), receipt(2), receipt(3)]
    theirs = [receipt(1), receipt(3)]
    tx, why = first_receipt_difference(ours, theirs)
    assert tx == bytes([2]) * 32 and "did not run transaction #1" in why


def test_an_extra_transaction_is_named() -> None:
    tx, why = first_receipt_difference([receipt(1)], [receipt(1), receipt(9)])
    assert tx == bytes([9]) * 32 and "ran transaction #1" in why


def test_a_different_outcome_is_named_with_its_field() -> None:
    tx, why = first_receipt_difference([receipt(1), receipt(2, gas=5)], [receipt(1), receipt(2)])
    assert tx == bytes([2]) * 32 and "gas_used differs" in why


def test_verdict_serializes_every_field() -> None:
    v = Verdict(
        4,
        DIVERGENCE,
        b"b" * 20,
        b"c" * 32,
        b"o" * 32,
        b"t" * 32,
        "why",
        (Difference(b"k", b"ours", None),),
    )
    d = v.as_dict()
    assert d["layer"] == 4 and d["kind"] == DIVERGENCE and d["tx_id"] == b"t" * 32
    assert d["differences"] == [{"key": b"k", "ours": b"ours", "theirs": None}]


def test_a_stored_verdict_reads_back_equal() -> None:
    full = Verdict(
        7,
        DIVERGENCE,
        b"\x01" * 32,
        claimed_root=b"\x02" * 32,
        our_root=b"\x03" * 32,
        tx_id=b"\x04" * 32,
        reason="transaction #0: status differs",
        differences=(Difference(b"A" + bytes(24), b"ours", None),),
    )
    assert decode_verdict(encode_verdict(full)) == full
    bare = Verdict(3, "missing_claim", reason="no claim for layer 3 by layer 14")
    assert decode_verdict(encode_verdict(bare)) == bare
