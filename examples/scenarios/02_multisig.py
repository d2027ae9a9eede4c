"""A 2-of-3 multisig spends with any two signatures and never with one."""

from devnet.builtin_templates import template
from devnet.client import TransactionRejected, Wallet
from devnet.keys import KeyPair
from devnet.scenario import Scenario


def scenario(s: Scenario) -> None:
    net = s.net
    keys = [KeyPair.generate() for _ in range(3)]
    recipient = net.wallets[1]

    with s.step("spawn a 2-of-3 multisig", within_layers=10):
        vault = net.new_multisig(2, keys, funder=net.wallets[0], amount=10**9)
    before = recipient.balance()
    with s.step("keys 0 and 1 spend 1,000", within_layers=5):
        vault.spend(recipient, 1_000)
    s.check("the recipient got 1,000", lambda: recipient.balance() == before + 1_000)

    def signed_by(*indexes: int) -> Wallet:
        chosen = {i: keys[i] for i in indexes}
        return net.account_of(
            vault.address,
            template("multisig").address,
            lambda tx, genesis: tx.sign_multisig(chosen, genesis),
        )

    with s.step("key 2 alone is refused by the relay"):
        try:
            signed_by(2).spend(recipient, 1_000)
        except TransactionRejected as exc:
            assert "verify" in str(exc), exc
        else:
            raise AssertionError("a single signature was accepted")
    with s.step("keys 0 and 2 spend 500", within_layers=5):
        signed_by(0, 2).spend(recipient, 500)
    s.check("the recipient got 1,500 in all", lambda: recipient.balance() == before + 1_500)
