"""`python -m shadow_executor --config FILE [--node NAME] [--port N] [--strict]`."""

import argparse

from devnet.daemon import main
from shadow_executor.node import Shadow


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strict", action="store_true", help="exit non-zero at the first divergence"
    )
    parser.add_argument("--port", type=int, default=None, help="RPC port (default: the config's)")


if __name__ == "__main__":
    main(
        "shadow_executor",
        lambda config, name, args: Shadow(config, name, strict=args.strict, port=args.port).run,
        _arguments,
    )
