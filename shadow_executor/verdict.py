"""What the shadow executor concludes about each layer, and how it narrows a divergence."""

from dataclasses import dataclass, field
from typing import Any

import msgpack

VERIFIED = "verified"
DIVERGENCE = "divergence"
MISSING_CLAIM = "missing_claim"
LATE_CLAIM = "late_claim"
FOREIGN_CLAIM = "foreign_claim"


@dataclass(frozen=True)
class Difference:
    """One state record that differs: its key and both values (None: absent)."""

    key: bytes
    ours: bytes | None
    theirs: bytes | None


@dataclass(frozen=True)
class Verdict:
    layer: int
    kind: str
    block_id: bytes = b""
    claimed_root: bytes | None = None
    our_root: bytes | None = None
    tx_id: bytes | None = None
    reason: str = ""
    differences: tuple[Difference, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "kind": self.kind,
            "block_id": self.block_id,
            "claimed_root": self.claimed_root,
            "our_root": self.our_root,
            "tx_id": self.tx_id,
            "reason": self.reason,
            "differences": [
                {"key": d.key, "ours": d.ours, "theirs": d.theirs} for d in self.differences
            ],
        }


def encode_verdict(verdict: Verdict) -> bytes:
    return bytes(msgpack.packb(verdict.as_dict(), use_bin_type=True))


def decode_verdict(raw: bytes) -> Verdict:
    """A verdict as `encode_verdict` stored it."""
    d = msgpack.unpackb(raw, raw=False)
    return Verdict(
        layer=int(d["layer"]),
        kind=str(d["kind"]),
        block_id=bytes(d["block_id"]),
        claimed_root=d["claimed_root"],
        our_root=d["our_root"],
        tx_id=d["tx_id"],
        reason=str(d["reason"]),
        differences=tuple(Difference(x["key"], x["ours"], x["theirs"]) for x in d["differences"]),
    )


def first_receipt_difference(
    ours: list[dict[str, Any]], theirs: list[dict[str, Any]]
) -> tuple[bytes | None, str]:
    """The first transaction whose receipt differs between two runs of one layer."""
    fields = ("tx_id", "status", "gas_used", "fee", "output")
    for index in range(max(len(ours), len(theirs))):
        mine = ours[index] if index < len(ours) else None
        other = theirs[index] if index < len(theirs) else None
        if mine is None:
            assert other is not None
            return other["tx_id"], f"the executor ran transaction #{index} that the block lacks"
        if other is None or other.get("tx_id") != mine["tx_id"]:
            return mine["tx_id"], f"the executor did not run transaction #{index} of the block"
        for name in fields:
            if mine.get(name) != other.get(name):
                return mine["tx_id"], f"transaction #{index}: {name} differs"
    return None, "every receipt matches"
