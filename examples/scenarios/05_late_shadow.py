"""Attach a shadow executor late: it replays every layer from genesis and agrees."""

from devnet.scenario import Scenario


def scenario(s: Scenario) -> None:
    net = s.net
    with s.step("attach a new shadow executor"):
        shadow = net.attach_shadow()
    target = net.applied_layer() or 0
    s.wait_until(
        f"{shadow.name} verifies up to layer {target}",
        lambda: (shadow.status().get("verified_up_to") or -1) >= target,
        within_layers=60,
    )
    with s.step(f"{shadow.name} finds exactly the divergences shadow-0 found"):
        seen_late = {d["layer"] for d in net.divergences(shadow.name) if d["layer"] <= target}
        seen_first = {d["layer"] for d in net.divergences("shadow-0") if d["layer"] <= target}
        assert seen_late == seen_first, (seen_late, seen_first)
    with s.step(f"stop {shadow.name}"):
        shadow.kill(graceful=True)
