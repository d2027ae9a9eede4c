"""`devnet scenario run FILE...`: run scenario files against a fresh or a running devnet."""

import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from devnet.client import Devnet
from devnet.ephemeral import ephemeral_devnet
from devnet.errors import DevnetError
from devnet.scenario import ScenarioFile, ScenarioResult, StepResult, load, run_scenario

app = typer.Typer(help="Run scripted scenarios against a devnet.", no_args_is_help=True)

OK, FAILED = "✔", "✘"


def _print_step(step: StepResult) -> None:
    mark = OK if step.ok else FAILED
    layers = f"{step.layers} layer{'s' if step.layers != 1 else ''}"
    typer.echo(f"  {mark} {step.name:<58} {step.seconds:7.2f} s  {layers:>9}")
    if step.error:
        typer.echo(f"      {step.error}")


def _quiet(_: StepResult) -> None:
    pass


@app.command("run")
def run_command(
    files: Annotated[list[Path], typer.Argument(help="scenario files (Python)")],
    config: Annotated[
        Path, typer.Option("--config", help="devnet TOML: the fresh devnet's, or the running one's")
    ] = Path("configs/devnet.toml"),
    attach: Annotated[
        bool, typer.Option("--attach", help="run against the running devnet of --config")
    ] = False,
    keep: Annotated[
        bool, typer.Option("--keep", help="keep the fresh devnet's data directory")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Run each file's `scenario(s)`, printing ✔/✘ per step; exit 1 if any step failed.

    Without --attach, a fresh devnet is started from --config on free ports in a temporary
    directory and stopped at the end (kept, with its logs, if anything failed)."""
    try:
        scenarios = [load(path) for path in files]
    except DevnetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    results: list[ScenarioResult] = []
    try:
        with ExitStack() as stack:
            target = config
            if not attach:
                if not as_json:
                    typer.echo("starting a fresh devnet …")
                fresh = stack.enter_context(ephemeral_devnet(config, keep=keep))
                target = fresh.data_dir
            net = stack.enter_context(Devnet.connect(target))
            for scenario in scenarios:
                results.append(_run(scenario, net, as_json))
            if not attach and not all(r.ok for r in results):
                fresh.keep = True
    except DevnetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _summary(results, as_json)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def _run(scenario: ScenarioFile, net: Devnet, as_json: bool) -> ScenarioResult:
    if not as_json:
        typer.echo(f"\n{scenario.name}: {scenario.description}")
    result = run_scenario(scenario, net, _quiet if as_json else _print_step)
    if result.error and not as_json:
        typer.echo(f"  {FAILED} {result.error}")
    sys.stdout.flush()
    return result


def _summary(results: list[ScenarioResult], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in results], indent=2))
        return
    passed = sum(1 for r in results if r.ok)
    steps = sum(len(r.steps) for r in results)
    seconds = sum(s.seconds for r in results for s in r.steps)
    mark = OK if passed == len(results) else FAILED
    typer.echo(
        f"\n{mark} {passed}/{len(results)} scenarios passed ({steps} steps, {seconds:.1f} s)"
    )
