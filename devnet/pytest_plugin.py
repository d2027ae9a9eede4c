"""The `devnet` pytest fixture: integration tests against a real devnet.

    def test_alice_pays_bob(devnet):
        alice, bob = devnet.wallets[0], devnet.wallets[1]
        assert alice.spend(bob, 10).ok

By default one fresh devnet is started for the test session (from `--devnet-config`,
default configs/devnet.toml, on free ports in a temporary directory) and stopped at its
end. `--devnet-attach TARGET` (or `$DEVNET_ATTACH`) uses a running devnet instead: its
data directory, devnet.json or config.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devnet.client import Devnet
from devnet.ephemeral import ephemeral_devnet


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("devnet", "athena-devnet")
    group.addoption(
        "--devnet-attach",
        metavar="TARGET",
        default=os.environ.get("DEVNET_ATTACH"),
        help="use the running devnet of TARGET (data dir, devnet.json or config)",
    )
    group.addoption(
        "--devnet-config",
        metavar="FILE",
        default="configs/devnet.toml",
        help="config of the fresh devnet started for the session",
    )
    group.addoption(
        "--devnet-keep", action="store_true", help="keep the fresh devnet's data directory"
    )


@pytest.fixture(scope="session")
def devnet(request: pytest.FixtureRequest) -> Iterator[Devnet]:
    """A connected `devnet.client.Devnet`, shared by the session's tests."""
    attach = request.config.getoption("devnet_attach")
    if attach:
        with Devnet.connect(attach) as net:
            yield net
        return
    config = Path(request.config.getoption("devnet_config"))
    with ephemeral_devnet(config, keep=request.config.getoption("devnet_keep")) as fresh:
        with Devnet.connect(fresh.data_dir) as net:
            yield net
