"""`devnet bench …`: benchmarks that print numbers."""

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
