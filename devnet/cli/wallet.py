"""`devnet wallet list | balance | spend | spawn`: wallets on a running devnet.

A wallet is named by a test wallet index ("0", "user-0"), a key file, or (for reading) an
address; see `devnet.cli.selectors`. Sending commands wait for the receipt and exit 1 when
the transaction is rejected, dropped or fails, printing the failed receipt all the same.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from devnet.address import encode_address
from devnet.builtin_templates import template
from devnet.cli.common import (
    DEFAULT_CONFIG,
    TX_ERROR,
    ConfigOption,
    DataDirOption,
    JsonOption,
    command,
    connect,
    emit_json,
    fail,
    fields,
    receipt_lines,
    table,
)
from devnet.cli.selectors import address_of, parse_wallet, signer
from devnet.client import Devnet, NotWithin, Receipt, Wallet
from devnet.keys import KeyPair, load_key_file, save_key_file

app = typer.Typer(help="Wallets on the running devnet.", no_args_is_help=True)

FromOption = Annotated[
    str,
    typer.Option(
        "--from", metavar="WALLET", help="signer: test wallet index (0, user-0) or key file"
    ),
]
GasLimitOption = Annotated[int, typer.Option(help="gas limit", min=1)]
GasPriceOption = Annotated[int, typer.Option(help="gas price", min=1)]
WithinOption = Annotated[
    int, typer.Option(help="layers to wait for the receipt before giving up", min=1)
]
DEFAULT_SPAWN_AMOUNT = 10**12
DEFAULT_WITHIN = 30


def finish(
    net: Devnet, receipt: Receipt, as_json: bool, extra: dict[str, Any] | None = None
) -> None:
    """Print a transaction's receipt (with `extra` fields first); exit 1 if it failed."""
    doc = {"tx_id": receipt.tx_id.hex(), **(extra or {}), "receipt": receipt.as_json(net.hrp)}
    if as_json:
        emit_json(doc)
    else:
        if extra:
            typer.echo(fields((k.replace("_", " "), v) for k, v in extra.items()))
        typer.echo(receipt_lines(doc["receipt"]))
    if not receipt.ok:
        fail(f"transaction {receipt.tx_id.hex()} {receipt.status}: {receipt.reason}", TX_ERROR)


def wait(net: Devnet, tx_id: bytes, within: int) -> Receipt:
    """The receipt, or exit 1 when it is not executed in time (the transaction may still
    be; `devnet tx status ID` tells)."""
    try:
        return net.wait_receipt(tx_id, within)
    except NotWithin as exc:
        fail(f"{exc}; `devnet tx status {tx_id.hex()}` follows it", TX_ERROR)


def account_row(net: Devnet, index: int, wallet: Wallet) -> dict[str, Any]:
    info = wallet.info()
    return {
        "index": index,
        "role": f"user-{index}",
        "address": wallet.bech32,
        "exists": info.exists,
        "balance": info.balance,
        "nonce": info.nonce,
    }


@app.command("list")
@command
def list_command(
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """The test wallets: index, address, balance and next nonce."""
    with connect(config, data_dir) as net:
        rows = [account_row(net, i, w) for i, w in enumerate(net.wallets)]
    if as_json:
        emit_json(rows)
        return
    headers = ["index", "address", "balance", "nonce"]
    cells: list[list[object]] = [[r[h] for h in headers] for r in rows]
    typer.echo(table(headers, cells, right=frozenset({"index", "balance", "nonce"})))


@app.command("balance")
@command
def balance_command(
    wallet: Annotated[
        str, typer.Argument(metavar="WALLET", help="test wallet index, key file or address")
    ],
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """A wallet's balance and next nonce."""
    with connect(config, data_dir) as net:
        address = address_of(net, parse_wallet(wallet, net.hrp))
        info = net.account(address)
        doc = {
            "address": net.bech32(address),
            "exists": info.exists,
            "balance": info.balance,
            "nonce": info.nonce,
        }
    if as_json:
        emit_json(doc)
        return
    note = "" if info.exists else "  (not spawned)"
    typer.echo(f"{doc['address']}  balance {info.balance}  nonce {info.nonce}{note}")


@app.command("spend")
@command
def spend_command(
    amount: Annotated[int, typer.Argument(help="coins to send", min=0)],
    to: Annotated[
        str,
        typer.Option("--to", metavar="WALLET", help="address, test wallet index or key file"),
    ],
    from_: FromOption = "0",
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="print the tx id once the relay holds it")
    ] = False,
    gas_limit: GasLimitOption = 1_000_000,
    gas_price: GasPriceOption = 1,
    within: WithinOption = DEFAULT_WITHIN,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send coins; waits for the receipt (exit 1 if the spend is rejected or fails)."""
    with connect(config, data_dir) as net:
        sender = signer(net, parse_wallet(from_, net.hrp))
        recipient = address_of(net, parse_wallet(to, net.hrp))
        tx_id = sender.submit_spend(recipient, amount, gas_limit=gas_limit, gas_price=gas_price)
        if no_wait:
            _print_tx_id(tx_id, as_json)
            return
        finish(net, wait(net, tx_id, within), as_json)


def _print_tx_id(tx_id: bytes, as_json: bool) -> None:
    if as_json:
        emit_json({"tx_id": tx_id.hex()})
    else:
        typer.echo(tx_id.hex())


def _spawn_key(key: Path | None, new: Path | None, hrp: str) -> tuple[KeyPair, Path]:
    """The key to spawn a wallet for: read from --key, or made and saved to --new first (so
    it is never lost, whatever happens to the spawn)."""
    if (key is None) == (new is None):
        fail("give exactly one of --key KEYFILE (an existing key) or --new KEYFILE (a new one)")
    if key is not None:
        return load_key_file(key, hrp).key, key
    assert new is not None
    if new.exists():
        fail(f"{new} exists; --new writes a new key file and never overwrites one")
    made = KeyPair.generate()
    save_key_file(new, made, made.wallet_address(template("wallet").address), hrp)
    return made, new


@app.command("spawn")
@command
def spawn_command(
    key: Annotated[
        Path | None, typer.Option("--key", metavar="KEYFILE", help="spawn this key's wallet")
    ] = None,
    new: Annotated[
        Path | None,
        typer.Option("--new", metavar="KEYFILE", help="make a new key, save it here, spawn it"),
    ] = None,
    from_: FromOption = "0",
    amount: Annotated[
        int, typer.Option(help="coins the funder sends first (pays for the spawn)", min=0)
    ] = DEFAULT_SPAWN_AMOUNT,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fund a key's wallet from --from and have it spawn itself; prints its address."""
    with connect(config, data_dir) as net:
        funder = signer(net, parse_wallet(from_, net.hrp))
        pair, path = _spawn_key(key, new, net.hrp)
        wallet = net.wallet(pair)
        if wallet.info().template is not None:
            fail(f"the wallet of {path} ({wallet.bech32}) is already spawned")
        net.new_wallet(pair, funder=funder, amount=amount)
        info = wallet.info()
    doc = {
        "address": encode_address(wallet.address, net.hrp),
        "key_file": str(path),
        "public_key": pair.public_key.hex(),
        "balance": info.balance,
        "nonce": info.nonce,
    }
    if as_json:
        emit_json(doc)
        return
    typer.echo(fields((k.replace("_", " "), v) for k, v in doc.items()))
