"""`devnet bench …`: benchmarks that print numbers."""

from pathlib import Path
from typing import Annotated

import typer

from devnet.bench import vm as vm_bench

app = typer.Typer(help="Benchmarks.", no_args_is_help=True)


@app.command("vm")
def vm_command(
    seconds: float = typer.Option(3.0, help="minimum run time per guest"),
) -> None:
    """Instructions per second of the VM on a compute guest and a hashing guest."""
    for line in vm_bench.run(seconds):
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
) -> None:
    """Layers and transactions per second of the executor replaying wallet spends."""
    from devnet.bench import executor as executor_bench  # heavy: the executor and LevelDB

    params = executor_bench.Params(txs, accounts, txs_per_layer, seed)
    try:
        result = executor_bench.benchmark(
            params, keep=keep, profile=profile, cache_dir=executor_bench.CACHE_DIR
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
) -> None:
    """Catch-up speed of a shadow executor (layers/s, tx/s) on a recorded history."""
    from devnet.bench import executor as executor_bench
    from devnet.bench import shadow as shadow_bench

    params = executor_bench.Params(txs, accounts, txs_per_layer, seed)
    result = shadow_bench.benchmark(params)
    for line in shadow_bench.report(result):
        typer.echo(line)
    if result.mismatched:
        raise typer.Exit(1)
