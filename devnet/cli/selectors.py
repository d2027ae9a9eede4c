"""Naming a wallet on the command line: a test wallet index, a key file or an address.

    "0", "user-0"      the devnet's test wallet 0 (its key is in devnet.json)
    "atest1…"          an address (read-only: nothing can sign for it)
    anything else      a key file (`devnet key new` writes them)

An address is recognised by the network's prefix, so a mistyped address is reported as an
address error rather than as a missing key file.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from devnet.address import decode_address
from devnet.builtin_templates import template
from devnet.client import Devnet, Wallet
from devnet.errors import DevnetError
from devnet.keys import KeyPair, load_key_file

_INDEX = re.compile(r"(?:user-)?(\d+)")


class SelectorError(DevnetError):
    """A wallet selector that names nothing usable; the message says what is accepted."""


@dataclass(frozen=True)
class WalletRef:
    """What a selector names: exactly one of `index`, `key_file`, `address` is set."""

    text: str
    index: int | None = None
    key_file: Path | None = None
    address: bytes | None = None


def parse_wallet(text: str, hrp: str) -> WalletRef:
    """The wallet `text` names (see the module docstring); the key file is not read here."""
    text = text.strip()
    if not text:
        raise SelectorError("empty wallet: give a test wallet index, a key file or an address")
    matched = _INDEX.fullmatch(text)
    if matched:
        return WalletRef(text, index=int(matched.group(1)))
    if text.lower().startswith(f"{hrp}1"):
        try:
            return WalletRef(text, address=decode_address(text, hrp))
        except DevnetError as exc:
            raise SelectorError(f"{text}: {exc}") from None
    return WalletRef(text, key_file=Path(text))


def signer(net: Devnet, ref: WalletRef) -> Wallet:
    """The wallet `ref` names, able to sign: a test wallet or a key file's wallet."""
    if ref.index is not None:
        return indexed_wallet(net, ref.index)
    if ref.key_file is not None:
        key = _key(ref.key_file, net.hrp)
        return net.wallet(key)
    raise SelectorError(
        f"{ref.text} is an address: to sign, give a test wallet index (0, user-0) or a key file"
    )


def address_of(net: Devnet, ref: WalletRef) -> bytes:
    """The account address `ref` names."""
    if ref.address is not None:
        return ref.address
    if ref.index is not None:
        return indexed_wallet(net, ref.index).address
    assert ref.key_file is not None
    return _key(ref.key_file, net.hrp).wallet_address(template("wallet").address)


def indexed_wallet(net: Devnet, index: int) -> Wallet:
    if not 0 <= index < len(net.wallets):
        raise SelectorError(
            f"no test wallet {index}: this devnet has {len(net.wallets)} "
            f"(0..{len(net.wallets) - 1}, see `devnet wallet list`)"
        )
    return net.wallets[index]


def _key(path: Path, hrp: str) -> KeyPair:
    if not path.exists():
        raise SelectorError(
            f"{path}: no such key file (a wallet is a test wallet index such as 0 or user-0, "
            "a key file, or an address)"
        )
    return load_key_file(path, hrp).key
