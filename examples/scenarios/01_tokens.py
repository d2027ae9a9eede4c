"""Buy tokens from a mint with coins, then send some to a friend."""

from devnet.builtin_templates import template
from devnet.client import Devnet, Wallet
from devnet.keys import KeyPair
from devnet.scenario import Scenario

PRICE = 5  # coins per token
SLOT0 = bytes(32)  # the token templates keep balances and supply in storage slot 0


def u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def tokens(net: Devnet, account: Wallet) -> int:
    return int.from_bytes(net.storage(account, SLOT0)[:8], "little")


def scenario(s: Scenario) -> None:
    net = s.net
    mint_tpl, wallet_tpl = template("token_mint").address, template("token_wallet").address
    issuer, alice, bob = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    payer = net.wallets[0]

    with s.step("spawn a token mint (supply 1,000,000 at 5 coins)", within_layers=10):
        mint = net.spawn(
            "token_mint",
            issuer.public_key + u64(1_000_000) + u64(PRICE),
            issuer,
            funder=payer,
            amount=10**9,
        )
    with s.step("spawn token wallets for alice and bob", within_layers=10):
        wallets = [
            net.spawn(
                "token_wallet",
                key.public_key + mint_tpl + wallet_tpl,
                key,
                funder=payer,
                amount=10**9,
            )
            for key in (alice, bob)
        ]
    alice_tokens, bob_tokens = wallets
    coins_before = net.balance(mint)
    with s.step("alice buys 100 tokens for 500 coins", within_layers=5):
        receipt = payer.call(mint, "buy", alice_tokens.address, amount=100 * PRICE)
        assert receipt.output == u64(100), receipt.output.hex()
    s.check("alice holds 100 tokens", lambda: tokens(net, alice_tokens) == 100)
    s.check("the mint got the coins", lambda: net.balance(mint) == coins_before + 500)
    with s.step("alice sends 30 tokens to bob", within_layers=5):
        alice_tokens.invoke("send_token", bob_tokens.address + u64(30))
    s.check(
        "alice 70, bob 30", lambda: (tokens(net, alice_tokens), tokens(net, bob_tokens)) == (70, 30)
    )
    s.check("the mint's supply is 100", lambda: tokens(net, mint) == 100)
    with s.step("sending more tokens than held fails, changing nothing"):
        receipt = bob_tokens.invoke("send_token", alice_tokens.address + u64(31), check=False)
        assert receipt.status == "FAILURE", receipt.status
        assert (tokens(net, alice_tokens), tokens(net, bob_tokens)) == (70, 30)
    s.check("bob's token balance has a valid proof", lambda: net.proof(bob_tokens, SLOT0).verify())
