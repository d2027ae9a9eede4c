"""A cheating executor publishes a wrong state root; the shadow executor catches it."""

from devnet.scenario import Scenario


def scenario(s: Scenario) -> None:
    net = s.net
    cheat_at = net.layer_now() + 5
    s.restart("executor", [f"executor.fault.wrong_root_at_layer={cheat_at}"])
    found = s.wait_until(
        f"shadow-0 reports the wrong root of layer {cheat_at}",
        lambda: [d for d in net.divergences() if d["layer"] == cheat_at],
        within_layers=20,
    )
    s.check("it names the tampered claim", lambda: "tampered" in found[0]["reason"])
    s.restart("executor", [])
    honest_from = net.layer_now() + 1
    s.wait_until(
        "shadow-0 verifies the layers after it again",
        lambda: (net.node("shadow-0").status().get("verified_up_to") or -1) >= honest_from + 2,
        within_layers=15,
    )
    s.check(
        "no divergence after the cheat",
        lambda: not [d for d in net.divergences() if d["layer"] > cheat_at],
    )
