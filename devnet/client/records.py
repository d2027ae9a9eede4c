"""Typed views of what the nodes serve: receipts, accounts and state proofs."""

from dataclasses import dataclass
from typing import Any

from devnet.address import encode_address
from devnet.state_tree import tree_key, verify_proof

SUCCESS = "SUCCESS"


@dataclass(frozen=True)
class Receipt:
    """An executed transaction, as the executor recorded it in its layer."""

    tx_id: bytes
    layer: int
    index: int
    status: str
    reason: str | None
    principal: bytes
    nonce: int
    gas_used: int
    fee: int
    output: bytes
    logs: tuple[str, ...]
    touched: tuple[bytes, ...]

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Receipt":
        return cls(
            tx_id=bytes(record["tx_id"]),
            layer=int(record["layer"]),
            index=int(record["index"]),
            status=str(record["status_name"]),
            reason=record.get("reason"),
            principal=bytes(record["principal"]),
            nonce=int(record["nonce"]),
            gas_used=int(record["gas_used"]),
            fee=int(record["fee"]),
            output=bytes(record["output"]),
            logs=tuple(record.get("logs") or ()),
            touched=tuple(bytes(a) for a in record.get("touched") or ()),
        )

    def as_json(self, hrp: str) -> dict[str, Any]:
        return {
            "tx_id": self.tx_id.hex(),
            "layer": self.layer,
            "index": self.index,
            "status": self.status,
            "reason": self.reason,
            "principal": encode_address(self.principal, hrp),
            "nonce": self.nonce,
            "gas_used": self.gas_used,
            "fee": self.fee,
            "output": self.output.hex(),
            "logs": list(self.logs),
            "touched": [encode_address(a, hrp) for a in self.touched],
        }


def checked(receipt: Receipt, check: bool = True) -> Receipt:
    """The receipt, or TransactionFailed when `check` and it is not SUCCESS."""
    if check and not receipt.ok:
        from devnet.client.errors import TransactionFailed

        raise TransactionFailed(receipt)
    return receipt


@dataclass(frozen=True)
class Account:
    """An Athena account as of the executor's latest applied layer."""

    address: bytes
    exists: bool
    balance: int
    nonce: int
    template: bytes | None
    state: bytes

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "Account":
        template = view.get("template")
        return cls(
            address=bytes(view["address"]),
            exists=bool(view["exists"]),
            balance=int(view["balance"]),
            nonce=int(view["nonce"]),
            template=None if template is None else bytes(template),
            state=bytes(view["state"]),
        )

    def as_json(self, hrp: str) -> dict[str, Any]:
        return {
            "address": encode_address(self.address, hrp),
            "exists": self.exists,
            "balance": self.balance,
            "nonce": self.nonce,
            "template": None if self.template is None else encode_address(self.template, hrp),
            "state": self.state.hex(),
        }


@dataclass(frozen=True)
class StateProof:
    """A Merkle proof that, under `root` (the state after `layer`), the record at
    `record_key` holds `value` (None: it is absent)."""

    layer: int | None
    root: bytes
    record_key: bytes
    value: bytes | None
    proof: bytes

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> "StateProof":
        value = reply.get("value")
        return cls(
            layer=reply.get("layer"),
            root=bytes(reply["root"]),
            record_key=bytes(reply["record_key"]),
            value=None if value is None else bytes(value),
            proof=bytes(reply["proof"]),
        )

    def verify(self, root: bytes | None = None) -> bool:
        """Whether the proof holds under `root` (by default the root it came with: pass a
        root you trust, such as one the shadow executor verified, to trust the answer)."""
        return verify_proof(root or self.root, tree_key(self.record_key), self.value, self.proof)

    def as_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "root": self.root.hex(),
            "record_key": self.record_key.hex(),
            "value": None if self.value is None else self.value.hex(),
            "proof": self.proof.hex(),
            "verified": self.verify(),
        }
