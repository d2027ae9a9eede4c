"""Payloads for the built-in templates' methods, SCALE-encoded as the C templates read them."""

from athena_vm.payload import Payload, selector
from athena_vm.scale import encode_bytes, encode_compact, encode_option


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def spawn_wallet(owner: bytes) -> Payload:
    """Wallet spawn: the state {owner [32]} is the raw key."""
    return Payload(selector("spawn"), owner)


def spawn_multisig(required: int, keys: list[bytes]) -> Payload:
    return Payload(
        selector("spawn"), bytes([required]) + encode_compact(len(keys)) + b"".join(keys)
    )


def spawn_token_mint(owner: bytes, max_supply: int, price: int) -> Payload:
    return Payload(selector("spawn"), owner + _u64(max_supply) + _u64(price))


def spawn_token_wallet(owner: bytes, mint_template: bytes, wallet_template: bytes) -> Payload:
    return Payload(selector("spawn"), owner + mint_template + wallet_template)


def spend(recipient: bytes, amount: int) -> Payload:
    return Payload(selector("spend"), recipient + _u64(amount))


def proxy(destination: bytes, method: str | None, args: bytes | None, amount: int = 0) -> Payload:
    """Call `destination`.method(args) from the principal's wallet, sending `amount`."""
    chosen = selector(method) if method else None
    body = (
        destination
        + encode_option(chosen)
        + encode_option(None if args is None else encode_bytes(args))
        + _u64(amount)
    )
    return Payload(selector("proxy"), body)


def deploy(code: bytes) -> Payload:
    return Payload(selector("deploy"), encode_bytes(code))


def buy(recipient: bytes) -> bytes:
    """Arguments of token_mint.buy (used through proxy)."""
    return recipient


def send_token(recipient: bytes, amount: int) -> Payload:
    return Payload(selector("send_token"), recipient + _u64(amount))
