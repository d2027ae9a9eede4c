"""The `devnet` command."""

import typer

from devnet.cli import (
    account,
    bench,
    build,
    key,
    logs,
    nodes,
    scenario,
    status,
    templates,
    tx,
    up,
    vm,
    wallet,
)
from devnet.log import configure

app = typer.Typer(
    name="devnet",
    help="A local Athena rollup devnet: run it, script it, test against it.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("up")(up.up_command)
app.command("down")(up.down_command)
app.command("reset")(up.reset_command)
app.command("status")(status.status_command)
app.command("logs")(logs.logs_command)
# node control, through the supervisor of `devnet up`
app.command("kill")(nodes.kill_command)
app.command("start")(nodes.start_command)
app.command("restart")(nodes.restart_command)
app.command("pause")(nodes.pause_command)
app.command("resume")(nodes.resume_command)
app.command("partition")(nodes.partition_command)
app.command("heal")(nodes.heal_command)
app.command("attach-shadow")(nodes.attach_shadow_command)
# users' commands against the running devnet
app.add_typer(wallet.app, name="wallet")
app.command("deploy")(account.deploy_command)
app.command("call")(account.call_command)
app.command("account")(account.account_command)
tx.app.command("status")(account.tx_status_command)
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
