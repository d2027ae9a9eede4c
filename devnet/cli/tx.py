"""`devnet tx`: build, sign and decode Athena transactions offline (like Foundry's cast)."""

import json
from pathlib import Path
from typing import Annotated, Any

import blake3
import trio
import typer

from athena_vm.payload import Payload
from devnet import methods
from devnet.address import decode_address, encode_address
from devnet.builtin_templates import builtin_templates, method_name, template
from devnet.bundle import Bundle
from devnet.config import DevnetConfig, load_config
from devnet.errors import DevnetError, RpcError, WireError
from devnet.keys import load_key_file
from devnet.l1 import l1_address
from devnet.transaction import Transaction, decode_transaction
from devnet.wire import RpcClient, call_sync, parse_endpoint

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


# --- sending -------------------------------------------------------------------------------

ConfigFileOption = Annotated[
    Path, typer.Option("--config", help="devnet TOML file (for the endpoints)")
]


def _raw_transactions(texts: list[str]) -> list[bytes]:
    """Decode every argument up front: nothing is sent unless all are transactions."""
    raws = []
    for text in texts:
        try:
            raw = bytes.fromhex(text.removeprefix("0x"))
            decode_transaction(raw)
        except ValueError:
            raise _fail(f"not hex: {text[:20]!r}") from None
        except DevnetError as exc:
            raise _fail(f"not a transaction: {exc}") from None
        raws.append(raw)
    return raws


def _endpoint(text: str | None, default: tuple[str, int]) -> tuple[str, int]:
    if text is None:
        return default
    try:
        return parse_endpoint(text)
    except ValueError as exc:
        raise _fail(str(exc)) from None


@app.command("submit")
def submit_command(
    txs: Annotated[list[str], typer.Argument(metavar="HEX", help="encoded transactions")],
    config: ConfigFileOption = Path("configs/devnet.toml"),
    relay: Annotated[
        str | None, typer.Option(help="relay host:port (default: the config's relay)")
    ] = None,
    direct: Annotated[
        bool, typer.Option("--direct", help="bundle them yourself and send to a smesher")
    ] = False,
    l1_key: Annotated[
        Path | None, typer.Option("--l1-key", help="key file of the L1 account that pays")
    ] = None,
    smesher: Annotated[
        str | None, typer.Option(help="smesher host:port (default: the config's first)")
    ] = None,
    beneficiary: Annotated[
        str | None,
        typer.Option(help="Athena address paid the bundler's fee share (default: your wallet)"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Send signed transactions to the relay, or with --direct bundle them under your own
    L1 account (which pays the L1 fee) and send the bundle straight to a smesher.

    Exits 1 if the relay refused any of them (each refusal is printed with its reason).
    """
    raws = _raw_transactions(txs)
    try:
        cfg = load_config(config)
    except DevnetError as exc:
        raise _fail(str(exc)) from None
    if direct:
        if l1_key is None:
            raise _fail("--direct needs --l1-key FILE (the L1 account paying for the bundle)")
        first = cfg.smeshers[0]
        host, port = _endpoint(smesher, (first.host, first.port))
        _submit_direct(raws, (host, port), l1_key, beneficiary, cfg, as_json)
        return
    host, port = _endpoint(relay, (cfg.relay.host, cfg.relay.port))
    results: list[dict[str, str | None]] = []
    for raw in raws:
        try:
            tx_id = call_sync(host, port, "submit_tx", tx=raw)
            results.append({"id": bytes(tx_id).hex(), "error": None})
        except RpcError as exc:
            results.append({"id": decode_transaction(raw).id.hex(), "error": exc.message})
        except WireError as exc:
            raise _fail(f"relay {host}:{port}: {exc}") from None
    if as_json:
        typer.echo(json.dumps(results))
    else:
        for row in results:
            typer.echo(
                row["id"] if row["error"] is None else f"{row['id']} rejected: {row['error']}"
            )
    if any(row["error"] is not None for row in results):
        raise typer.Exit(1)


def _submit_direct(
    raws: list[bytes],
    endpoint: tuple[str, int],
    l1_key: Path,
    beneficiary: str | None,
    cfg: DevnetConfig,
    as_json: bool,
) -> None:
    """Censorship resistance: the user's own L1 account signs and pays for the bundle."""
    host, port = endpoint
    hrp = cfg.network.hrp
    try:
        key = load_key_file(l1_key, hrp).key
        paid_to = (
            decode_address(beneficiary, hrp)
            if beneficiary
            else key.wallet_address(template("wallet").address)
        )
    except DevnetError as exc:
        raise _fail(str(exc)) from None

    async def send() -> dict[str, Any]:
        async with RpcClient((host, port), reconnect=False, timeout=10) as client:
            genesis_id = bytes((await client.call("status"))["genesis_id"])
            account = await client.call("get_l1_account", address=l1_address(key.public_key))
            bundle = Bundle(key.public_key, int(account["nonce"]), paid_to, tuple(raws))
            bundle = bundle.sign(key, genesis_id)
            reply = await client.call("submit_bundle", bundle=bundle.encoded)
            return {
                "bundle": bytes(reply["id"]).hex(),
                "known": reply["known"],
                "nonce": bundle.nonce,
                "fee": bundle.fee(cfg.l1.byte_price),
                "txs": [blake3.blake3(raw).hexdigest() for raw in raws],
            }

    try:
        result = trio.run(send)
    except RpcError as exc:
        raise _fail(f"the smesher refused the bundle: {exc.message}") from None
    except WireError as exc:
        raise _fail(f"smesher {host}:{port}: {exc}") from None
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"bundle {result['bundle']} (L1 nonce {result['nonce']})")
        for tx_id in result["txs"]:
            typer.echo(f"  {tx_id}")
