"""Kill a smesher mid-traffic and see it rejoin; cut another off from its peers and heal it."""

from devnet.client import Devnet
from devnet.scenario import Scenario


def certified(net: Devnet, smesher: str) -> int:
    return int(net.node(smesher).status()["last_certified"] or -1)


def scenario(s: Scenario) -> None:
    net = s.net
    sender, recipient = net.wallets[4], net.wallets[5]
    with s.step("send 20 spends without waiting"):
        ids = [sender.submit_spend(recipient, 1) for _ in range(20)]
    s.kill("smesher-3")
    with s.step("all 20 are executed with 3 of 4 smeshers", within_layers=15):
        for tx_id in ids:
            assert net.wait_receipt(tx_id, within_layers=15).ok
    s.wait_until(
        "the other smeshers keep certifying",
        lambda: certified(net, "smesher-0") >= net.layer_now() - 2,
        within_layers=5,
    )
    s.start("smesher-3")
    target = certified(net, "smesher-0")
    s.wait_until(
        "smesher-3 catches up", lambda: certified(net, "smesher-3") >= target, within_layers=10
    )

    s.partition("smesher-2")
    with s.step("a spend is executed while smesher-2 is cut off", within_layers=10):
        assert sender.spend(recipient, 1).ok
    stuck = certified(net, "smesher-2")
    s.check("smesher-2 fell behind", lambda: certified(net, "smesher-0") > stuck)
    s.heal("smesher-2")
    target = certified(net, "smesher-0")
    s.wait_until(
        "smesher-2 catches up after healing",
        lambda: certified(net, "smesher-2") >= target,
        within_layers=10,
    )
