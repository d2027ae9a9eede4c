"""What every daemon's `__main__` shares: arguments, logging, signals, clean shutdown."""

import argparse
import signal
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio

from devnet.config import DevnetConfig, load_config
from devnet.errors import DevnetError
from devnet.log import configure, get_logger

Runner = Callable[..., Awaitable[None]]


async def _until_signalled(run: Runner, name: str) -> None:
    log = get_logger(name)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await nursery.start(run)
            async for signum in signals:
                log.info("shutting down", signal=signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def main(
    role: str,
    build: Callable[[DevnetConfig, str | None, argparse.Namespace], Any],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {role}")
    parser.add_argument("--config", type=Path, required=True, help="devnet TOML file")
    parser.add_argument("--node", default=None, help="this node's name in the config")
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override one config field, e.g. executor.fault.wrong_root_at_layer=12",
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    configure(args.log_level)
    name = args.node or role
    failed = False
    try:
        config = load_config(args.config, tuple(args.overrides))
        run = build(config, args.node, args)
        trio.run(partial(_until_signalled, run, name))
    except* DevnetError as group:
        for exc in leaves(group):
            get_logger(name).error("stopped on an error", error=str(exc))
        failed = True
    if failed:
        sys.exit(2)


def leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    """The exceptions inside a (nested) exception group."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
