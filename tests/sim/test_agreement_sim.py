"""Seeded adversarial simulations of the layer agreement (harness: agreement_harness.py).

Every run asserts: no two honest nodes decide different values (safety), every decided
certificate verifies, no honest node is ever accused of equivocating, and — when at most f
nodes are faulty (Byzantine, crashed or amnesiac) and the network stabilises within the
layer — every live honest node decides within the layer (liveness). A failure names its
seed; `run_seed(seed)` replays it exactly.

`make test` runs a 300-run sample; `make soak` (tests marked slow) runs 10,000 other seeds.
"""

from collections import Counter
from collections.abc import Callable

import pytest

from devnet.certificate import ValidatorSet
from tests.sim.agreement_harness import (
    _KEYS,
    Result,
    Scenario,
    make_scenario,
    run_scenario,
    run_seed,
)

CI_SEEDS = range(0, 300)
SOAK_SEEDS = range(100_000, 110_000)
CHUNK = 50
SOAK_CHUNK = 500


def assert_clean(results: list[Result]) -> None:
    bad = [
        (
            r.scenario.seed,
            r.scenario.mode,
            r.safety_violations,
            r.bad_certificates,
            r.liveness_failures,
            r.false_accusations,
        )
        for r in results
        if not r.ok
    ]
    assert not bad, f"(seed, mode, safety, bad certificates, liveness, false accusations): {bad}"


@pytest.mark.parametrize("start", range(CI_SEEDS.start, CI_SEEDS.stop, CHUNK))
def test_seeded_sample(start: int) -> None:
    results = [run_seed(seed) for seed in range(start, start + CHUNK)]
    assert_clean(results)
    assert any(r.scenario.expect_liveness and r.decisions for r in results)


@pytest.mark.slow
@pytest.mark.parametrize("start", range(SOAK_SEEDS.start, SOAK_SEEDS.stop, SOAK_CHUNK))
def test_soak(start: int) -> None:
    assert_clean([run_seed(seed) for seed in range(start, start + SOAK_CHUNK)])


def test_sample_covers_every_fault() -> None:
    """The CI sample is only worth its time if it contains each adversity."""
    scenarios = [make_scenario(seed) for seed in CI_SEEDS]

    def count(pred: Callable[[Scenario], object]) -> int:
        return sum(1 for sc in scenarios if pred(sc))

    assert count(lambda sc: sc.n == 4) and count(lambda sc: sc.n == 7)
    assert count(lambda sc: sc.layer_ms == 200)
    modes = Counter(sc.mode for sc in scenarios)
    assert min(modes[m] for m in ("f-faulty", "over-f", "async")) >= 20, modes
    strategies = Counter(sc.byz_strategy for sc in scenarios if sc.byzantine)
    assert min(strategies[s] for s in ("random", "mirror")) >= 20, strategies
    byz_first = count(
        lambda sc: (
            sc.byzantine
            and ValidatorSet(k.public_key for k in _KEYS[: sc.n]).proposer(sc.layer, 0)
            == _KEYS[min(sc.byzantine)].public_key
        )
    )
    assert byz_first >= 20, "the Byzantine node often holds round 0's proposal"
    crashes = [c for sc in scenarios for c in sc.crashes]
    assert sum(1 for c in crashes if c.restart_ns is None) >= 20
    assert sum(1 for c in crashes if c.restart_ns is not None and c.keeps_log) >= 20
    assert sum(1 for c in crashes if not c.keeps_log) >= 5, "amnesiac restarts"
    assert count(lambda sc: sc.partition is not None) >= 20
    assert count(lambda sc: sc.mode == "f-faulty" and sc.byzantine and sc.crashes) >= 10


def test_same_seed_same_run() -> None:
    seed = next(s for s in CI_SEEDS if (sc := make_scenario(s)).byzantine and sc.crashes)
    first, second = run_seed(seed), run_seed(seed)
    assert first.trace == second.trace
    assert first.decisions == second.decisions
    assert first.messages_sent == second.messages_sent


def test_sample_exercises_the_defences() -> None:
    results = [run_seed(seed) for seed in range(0, 40)]
    assert sum(r.equivocations_detected for r in results) > 0
    assert sum(r.garbage_rejected for r in results) > 0
    assert sum(r.messages_dropped for r in results) > 0
    assert max(r.max_round for r in results) >= 2


def split_attack(n: int, seed: int) -> Scenario:
    """A calm network, and a Byzantine round-0 proposer that gives half the nodes one
    value and half another, then echoes every node's own votes back to it."""
    layer = 1000 + seed
    first = ValidatorSet(k.public_key for k in _KEYS[:n]).proposer(layer, 0)
    byz = [k.public_key for k in _KEYS].index(first)
    return Scenario(
        seed=seed,
        mode="f-faulty",
        n=n,
        layer=layer,
        layer_ms=1000,
        byzantine=frozenset({byz}),
        byz_strategy="mirror",
        crashes=(),
        start_ns=tuple(range(1, n + 1)),
        gst_ns=0,
        pre_delay_ns=1,
        pre_drop_permille=0,
        partition=None,
        post_delay_ns=(1_000_000, 20_000_000),
        dup_permille=0,
        horizon_ns=1_000_000_000,
    )


def test_split_attack_fails() -> None:
    assert_clean([run_scenario(split_attack(n, seed)) for n in (4, 7) for seed in range(10)])


def test_checker_catches_a_too_small_quorum(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness has teeth: with quorum 2f instead of ⌊2N/3⌋+1, the split attack makes
    honest nodes decide different values, and the checker reports it."""
    original = ValidatorSet.__init__

    def weak_quorum(self: ValidatorSet, keys: object) -> None:
        original(self, keys)  # type: ignore[arg-type]
        self.quorum = 2 * self.f

    monkeypatch.setattr(ValidatorSet, "__init__", weak_quorum)
    results = [run_scenario(split_attack(7, seed)) for seed in range(10)]
    assert sum(r.safety_violations for r in results) >= 1
