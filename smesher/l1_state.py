"""L1 state: SMH accounts, and how a certified block changes them.

Pure functions over an `Accounts` table; the smesher's store persists the result of each
layer in one atomic batch. Application order within a block is fixed: bundles by (payer,
nonce), then L1 transactions by (sender, nonce), then the previous layer's reward to the
signers of the certificate the block carries. A block whose bundles or L1 transactions do
not fit that order (a wrong nonce, a fee the payer cannot pay) is invalid, and honest
smeshers never vote for it; `build_block` assembles only what fits.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import blake3

from devnet.block import Block
from devnet.bundle import Bundle
from devnet.errors import DevnetError
from devnet.l1 import Claim, L1Tx, Transfer

MAX_BALANCE = 2**64 - 1


class L1RuleError(DevnetError):
    """A block, bundle or L1 transaction breaks an L1 rule."""


@dataclass(frozen=True)
class Account:
    balance: int = 0
    nonce: int = 0


@dataclass(frozen=True)
class L1Params:
    byte_price: int = 1
    layer_subsidy: int = 1_000_000


@dataclass
class Accounts:
    """A copy-on-write view of the account table, recording what changed."""

    base: Mapping[bytes, Account]
    changed: dict[bytes, Account] = field(default_factory=dict)

    def get(self, address: bytes) -> Account:
        return self.changed.get(address) or self.base.get(address) or Account()

    def set(self, address: bytes, account: Account) -> None:
        self.changed[address] = account

    def charge(self, address: bytes, nonce: int, fee: int, what: str) -> None:
        """Consume `nonce` and pay `fee` from `address`, or raise L1RuleError."""
        acct = self.get(address)
        if nonce != acct.nonce:
            raise L1RuleError(
                f"{what}: nonce {nonce}, account 0x{address.hex()} expects {acct.nonce}"
            )
        if fee > acct.balance:
            raise L1RuleError(f"{what}: fee {fee} exceeds the balance {acct.balance}")
        self.set(address, Account(acct.balance - fee, acct.nonce + 1))

    def credit(self, address: bytes, amount: int) -> None:
        acct = self.get(address)
        self.set(address, Account(min(acct.balance + amount, MAX_BALANCE), acct.nonce))


@dataclass(frozen=True)
class LayerEffects:
    """What applying one block did: the changed accounts and the fees it collected."""

    changed: dict[bytes, Account]
    fees: int
    claims: tuple[tuple[bytes, Claim], ...]


def _ordered_bundles(bundles: Iterable[Bundle]) -> list[Bundle]:
    return sorted(bundles, key=lambda b: (b.payer, b.nonce))


def _ordered_l1(txs: Iterable[L1Tx]) -> list[L1Tx]:
    return sorted(txs, key=lambda t: (t.address, t.nonce))


def apply_bundle(accounts: Accounts, bundle: Bundle, params: L1Params) -> int:
    fee = bundle.fee(params.byte_price)
    accounts.charge(bundle.payer, bundle.nonce, fee, f"bundle {bundle.id.hex()[:16]}")
    return fee


def apply_l1_tx(accounts: Accounts, tx: L1Tx, params: L1Params) -> int:
    fee = len(tx.encode()) * params.byte_price
    sender = tx.address
    accounts.charge(sender, tx.nonce, fee, f"L1 tx {tx.id.hex()[:16]}")
    if isinstance(tx.body, Transfer):
        acct = accounts.get(sender)
        if tx.body.amount > acct.balance:
            raise L1RuleError(f"L1 transfer of {tx.body.amount} exceeds the balance {acct.balance}")
        if tx.body.to != sender and accounts.get(tx.body.to).balance + tx.body.amount > MAX_BALANCE:
            raise L1RuleError(f"L1 transfer of {tx.body.amount} would overflow the recipient")
        accounts.set(sender, Account(acct.balance - tx.body.amount, acct.nonce))
        accounts.credit(tx.body.to, tx.body.amount)
    return fee


def split_reward(amount: int, signers: list[bytes]) -> dict[bytes, int]:
    """Equal shares by signer address order; the remainder goes to the first signer."""
    if not signers:
        return {}
    ordered = sorted(signers)
    share, rest = divmod(amount, len(ordered))
    shares = dict.fromkeys(ordered, share)
    shares[ordered[0]] += rest
    return shares


def apply_block(
    base: Mapping[bytes, Account],
    block: Block,
    params: L1Params,
    reward_signers: list[bytes],
    pending_reward: int,
) -> LayerEffects:
    """Apply a block to the table `base`; raises L1RuleError if the block breaks a rule.

    `reward_signers` are the L1 addresses that signed the previous layer's certificate
    (carried by this block) and `pending_reward` what that layer earned.
    """
    accounts = Accounts(base)
    fees = 0
    for bundle in _ordered_bundles(block.bundles):
        fees += apply_bundle(accounts, bundle, params)
    claims = []
    for tx in _ordered_l1(block.l1_txs):
        fees += apply_l1_tx(accounts, tx, params)
        if isinstance(tx.body, Claim):
            claims.append((tx.sender, tx.body))
    for address, share in split_reward(pending_reward, reward_signers).items():
        accounts.credit(address, share)
    return LayerEffects(accounts.changed, fees, tuple(claims))


def fits(
    base: Mapping[bytes, Account], bundles: list[Bundle], l1_txs: list[L1Tx], params: L1Params
) -> tuple[list[Bundle], list[L1Tx]]:
    """The bundles and L1 transactions that apply, in order, on top of `base`."""
    accounts = Accounts(base)
    chosen_bundles: list[Bundle] = []
    for bundle in _ordered_bundles(bundles):
        trial = Accounts(accounts.base, dict(accounts.changed))
        try:
            apply_bundle(trial, bundle, params)
        except L1RuleError:
            continue
        accounts = trial
        chosen_bundles.append(bundle)
    chosen_txs: list[L1Tx] = []
    for tx in _ordered_l1(l1_txs):
        trial = Accounts(accounts.base, dict(accounts.changed))
        try:
            apply_l1_tx(trial, tx, params)
        except L1RuleError:
            continue
        accounts = trial
        chosen_txs.append(tx)
    return chosen_bundles, chosen_txs


def state_hash(
    previous: bytes, layer: int, block_id: bytes, changed: Mapping[bytes, Account]
) -> bytes:
    """A per-layer L1 state hash chaining the previous one with this layer's changes."""
    h = blake3.blake3(previous + layer.to_bytes(8, "big") + block_id)
    for address in sorted(changed):
        acct = changed[address]
        h.update(address + acct.balance.to_bytes(8, "big") + acct.nonce.to_bytes(8, "big"))
    return h.digest()
