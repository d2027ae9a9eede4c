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


def main(role: str, build: Callable[[DevnetConfig, str | None], Any]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {role}")
    parser.add_argument("--config", type=Path, required=True, help="devnet TOML file")
    parser.add_argument("--node", default=None, help="this node's name in the config")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    configure(args.log_level)
    try:
        config = load_config(args.config)
        run = build(config, args.node)
        trio.run(partial(_until_signalled, run, args.node or role))
    except DevnetError as exc:
        get_logger(args.node or role).error("cannot run", error=str(exc))
        sys.exit(2)
