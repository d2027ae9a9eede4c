"""The `devnet` command."""

import typer

from devnet.cli import bench, build, key, scenario, templates, tx, up, vm
from devnet.log import configure

app = typer.Typer(
    name="devnet",
    help="A local Athena rollup devnet: run it, script it, test against it.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("up")(up.up_command)
app.command("down")(up.down_command)
app.command("status")(up.status_command)
app.command("attach-shadow")(up.attach_shadow_command)
app.command("build")(build.build_command)
app.add_typer(vm.app, name="vm")
app.add_typer(bench.app, name="bench")
app.add_typer(scenario.app, name="scenario")
app.add_typer(templates.app, name="templates")
app.add_typer(tx.app, name="tx")
app.add_typer(key.app, name="key")


def main() -> None:
    configure("warning")
    app()
