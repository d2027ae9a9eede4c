"""`devnet tx`: build, sign and decode Athena transactions offline (like Foundry's cast)."""

import json
from pathlib import Path
from typing import Annotated

import typer

from athena_vm.payload import Payload
from devnet import methods
from devnet.address import decode_address, encode_address
from devnet.builtin_templates import builtin_templates, method_name, template
from devnet.errors import DevnetError
from devnet.keys import load_key_file
from devnet.transaction import Transaction, decode_transaction

app = typer.Typer(help="Build, sign and decode transactions offline.", no_args_is_help=True)

KeyOption = Annotated[Path, typer.Option("--key", help="key file of the signer")]
GenesisOption = Annotated[
    str, typer.Option("--genesis-id", envvar="DEVNET_GENESIS_ID", help="network genesis id, hex")
]
NonceOption = Annotated[int, typer.Option(help="the principal's next nonce", min=0)]
GasLimitOption = Annotated[int, typer.Option(help="gas limit", min=1)]
GasPriceOption = Annotated[int, typer.Option(help="gas price", min=1)]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(2)


def _address(text: str) -> bytes:
    try:
        return decode_address(text)
    except DevnetError as exc:
        raise _fail(str(exc)) from None


def _emit(
    key: Path,
    genesis_id: str,
    payload: Payload,
    nonce: int,
    gas_limit: int,
    gas_price: int,
    as_json: bool,
    template_address: bytes | None = None,
) -> None:
    try:
        signer = load_key_file(key).key
        genesis = bytes.fromhex(genesis_id.removeprefix("0x"))
        principal = signer.wallet_address(template("wallet").address)
        tx = Transaction(principal, nonce, gas_limit, gas_price, payload, template_address)
        signed = tx.sign(signer, genesis)
    except (DevnetError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps({"tx": signed.encode().hex(), "id": signed.id.hex()}))
    else:
        typer.echo(signed.encode().hex())


@app.command("spawn")
def spawn_command(
    key: KeyOption,
    genesis_id: GenesisOption,
    nonce: NonceOption = 0,
    gas_limit: GasLimitOption = 1_000_000,
    gas_price: GasPriceOption = 1,
    as_json: JsonOption = False,
) -> None:
    """Self-spawn the key's wallet (its address must hold coins for the fee)."""
    signer = load_key_file(key).key
    wallet = template("wallet").address
    _emit(
        key,
        genesis_id,
        methods.spawn_wallet(signer.public_key),
        nonce,
        gas_limit,
        gas_price,
        as_json,
        wallet,
    )


@app.command("spend")
def spend_command(
    key: KeyOption,
    genesis_id: GenesisOption,
    to: Annotated[str, typer.Option("--to", help="recipient address (bech32)")],
    amount: Annotated[int, typer.Option(help="coins to send", min=0)],
    nonce: NonceOption = 0,
    gas_limit: GasLimitOption = 1_000_000,
    gas_price: GasPriceOption = 1,
    as_json: JsonOption = False,
) -> None:
    """Send coins from the key's wallet."""
    _emit(
        key, genesis_id, methods.spend(_address(to), amount), nonce, gas_limit, gas_price, as_json
    )


@app.command("deploy")
def deploy_command(
    code: Annotated[Path, typer.Argument(help="ELF program to deploy as a template")],
    key: KeyOption,
    genesis_id: GenesisOption,
    nonce: NonceOption = 0,
    gas_limit: GasLimitOption = 10_000_000,
    gas_price: GasPriceOption = 1,
    as_json: JsonOption = False,
) -> None:
    """Deploy a program as a new template through the key's wallet."""
    _emit(key, genesis_id, methods.deploy(code.read_bytes()), nonce, gas_limit, gas_price, as_json)


@app.command("call")
def call_command(
    key: KeyOption,
    genesis_id: GenesisOption,
    to: Annotated[str, typer.Option("--to", help="account to call (bech32)")],
    method: Annotated[str, typer.Option(help="method name, e.g. buy")],
    args: Annotated[str, typer.Option(help="SCALE-encoded arguments, hex")] = "",
    amount: Annotated[int, typer.Option(help="coins to send along", min=0)] = 0,
    nonce: NonceOption = 0,
    gas_limit: GasLimitOption = 1_000_000,
    gas_price: GasPriceOption = 1,
    as_json: JsonOption = False,
) -> None:
    """Call a method of another account through the key's wallet (wallet.proxy)."""
    try:
        raw_args = bytes.fromhex(args.removeprefix("0x"))
    except ValueError:
        raise _fail(f"--args is not hex: {args!r}") from None
    payload = methods.proxy(_address(to), method, raw_args, amount)
    _emit(key, genesis_id, payload, nonce, gas_limit, gas_price, as_json)


def describe(tx: Transaction) -> dict[str, object]:
    """Every field of a transaction, addresses in bech32 and known methods by name."""
    names = {tpl.address: tpl.name for tpl in builtin_templates().values()}
    sel = tx.payload.selector
    return {
        "id": tx.id.hex(),
        "principal": encode_address(tx.principal),
        "template": encode_address(tx.template) if tx.template else None,
        "template_name": names.get(tx.template) if tx.template else None,
        "nonce": tx.nonce,
        "gas_limit": tx.gas_limit,
        "gas_price": tx.gas_price,
        "max_fee": tx.max_fee,
        "selector": sel.hex() if sel else None,
        "method": method_name(tx.template or b"", sel) if sel else None,
        "input": tx.payload.input.hex(),
        "signature": tx.signature.hex(),
    }


@app.command("decode")
def decode_command(
    tx_hex: Annotated[str, typer.Argument(metavar="HEX", help="encoded transaction")],
    as_json: JsonOption = False,
) -> None:
    """Show every field of an encoded transaction."""
    try:
        tx = decode_transaction(bytes.fromhex(tx_hex.removeprefix("0x")))
    except ValueError:
        raise _fail("not hex") from None
    except DevnetError as exc:
        raise _fail(f"not a transaction: {exc}") from None
    fields = describe(tx)
    if as_json:
        typer.echo(json.dumps(fields, indent=2))
        return
    for name, value in fields.items():
        typer.echo(f"{name:<14}{'-' if value is None else value}")
