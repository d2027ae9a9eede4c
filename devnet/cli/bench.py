"""`devnet bench …`: benchmarks that print numbers."""

from pathlib import Path
from typing import Annotated

import typer

from devnet.bench import vm as vm_bench

app = typer.Typer(help="Benchmarks.", no_args_is_help=True)

SignaturesAheadOption = Annotated[
    bool,
    typer.Option(
        "--signatures-ahead/--no-signatures-ahead",
        help="check wallet signatures in a helper process, as the nodes do by default",
    ),
]


@app.command("vm")
def vm_command(
    seconds: float = typer.Option(3.0, help="minimum run time per guest and engine"),
    repeat: Annotated[
        int, typer.Option(help="measured runs per guest and engine; the fastest counts", min=1)
    ] = 1,
) -> None:
    """MIPS of both VM engines (reference, translator) on a compute and a hashing guest, and
    the time of one wallet spend."""
    for line in vm_bench.run(seconds, repeat):
        typer.echo(line)


@app.command("executor")
def executor_command(
    txs: Annotated[int, typer.Option(help="wallet spends to replay", min=1)] = 50_000,
    accounts: Annotated[
        int, typer.Option(help="wallets spawned at genesis", min=2, max=100_000)
    ] = 10_000,
    txs_per_layer: Annotated[int, typer.Option(help="transactions per block", min=1)] = 1_000,
    seed: Annotated[int, typer.Option(help="seed of the generated history")] = 1,
    keep: Annotated[
        Path | None,
        typer.Option(help="keep the database in this new (or empty) directory", metavar="DIR"),
    ] = None,
    profile: Annotated[
        bool, typer.Option("--profile", help="cProfile the replay; print the top functions")
    ] = False,
    signatures_ahead: SignaturesAheadOption = True,
) -> None:
    """Layers and transactions per second of the executor replaying wallet spends."""
    from devnet.bench import executor as executor_bench  # heavy: the executor and LevelDB

    params = executor_bench.Params(txs, accounts, txs_per_layer, seed)
    try:
        result = executor_bench.benchmark(
            params,
            keep=keep,
            profile=profile,
            cache_dir=executor_bench.CACHE_DIR,
            signatures_ahead=signatures_ahead,
        )
    except executor_bench.BenchError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    for line in executor_bench.report(result):
        typer.echo(line)
    if not result.ok:
        typer.echo(executor_bench.failure(result), err=True)
        raise typer.Exit(1)


@app.command("shadow")
def shadow_command(
    txs: Annotated[int, typer.Option(help="wallet spends in the history", min=1)] = 50_000,
    accounts: Annotated[
        int, typer.Option(help="wallets spawned at genesis", min=2, max=100_000)
    ] = 10_000,
    txs_per_layer: Annotated[int, typer.Option(help="transactions per block", min=1)] = 1_000,
    seed: Annotated[int, typer.Option(help="seed of the generated history")] = 1,
    signatures_ahead: SignaturesAheadOption = True,
) -> None:
    """Catch-up speed of a shadow executor (layers/s, tx/s) on a recorded history."""
    from devnet.bench import executor as executor_bench
    from devnet.bench import shadow as shadow_bench

    params = executor_bench.Params(txs, accounts, txs_per_layer, seed)
    result = shadow_bench.benchmark(params, signatures_ahead=signatures_ahead)
    for line in shadow_bench.report(result):
        typer.echo(line)
    if result.mismatched:
        raise typer.Exit(1)


@app.command("e2e")
def e2e_command(
    seconds: Annotated[float, typer.Option(help="how long the load runs", min=1)] = 60.0,
    wallets: Annotated[
        int, typer.Option(help="wallets sending (funded and spawned first)", min=2, max=10_000)
    ] = 200,
    config: Annotated[Path, typer.Option("--config", help="devnet TOML file")] = Path(
        "configs/devnet.toml"
    ),
    attach: Annotated[
        bool, typer.Option("--attach", help="use the devnet already running from the config")
    ] = False,
    inflight: Annotated[
        int, typer.Option(help="transactions submitted and not yet executed, at most", min=1)
    ] = 3000,
    batch: Annotated[int, typer.Option(help="transactions per submit call", min=1)] = 200,
    connections: Annotated[int, typer.Option(help="connections to the relay", min=1)] = 4,
    rate: Annotated[
        float, typer.Option(help="submissions per second at most (0: no limit)", min=0)
    ] = 0.0,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="data directory of the started devnet (default: a temporary one)"),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="keep the started devnet's data and logs")
    ] = False,
    profile: Annotated[
        Path | None,
        typer.Option(help="record a py-spy profile of every node into this directory"),
    ] = None,
    presign_rate: Annotated[
        float,
        typer.Option(help="sign ahead for this many spends per second (0: sign while running)"),
    ] = 1200.0,
) -> None:
    """The whole devnet under load: executed tx/s, latency, lags, peak RSS, correctness."""
    from devnet.bench import e2e  # heavy: trio, the wire, multiprocessing
    from devnet.errors import DevnetError

    params = e2e.Params(
        config=config,
        seconds=seconds,
        wallets=wallets,
        attach=attach,
        inflight=inflight,
        batch=batch,
        connections=connections,
        rate=rate,
        data_dir=data_dir,
        keep=keep,
        profile_dir=profile,
        presign_rate=presign_rate,
    )
    try:
        outcome = e2e.run(params)
    except DevnetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in e2e.report(outcome):
        typer.echo(line)
    if not outcome.correct:
        raise typer.Exit(1)
