"""The layer agreement state machine: thresholds, locking, equivocation, certificates, codec.

Most tests drive one `Agreement` by hand with votes signed by the other validators' test
keys, so each rule is exercised in isolation; `Cluster` delivers every broadcast in FIFO
order for the end-to-end cases. The randomized adversarial runs live in tests/sim.
"""

from collections import deque
from collections.abc import Iterable
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devnet.certificate import (
    Certificate,
    ValidatorSet,
    decode_certificate,
    encode_certificate,
    is_value,
    make_value,
    value_id,
    verify_certificate,
)
from devnet.errors import AgreementError, AgreementMessageError, CertificateError, DevnetError
from devnet.keys import KeyPair, derive_test_key
from smesher.agreement import (
    Agreement,
    Broadcast,
    Decided,
    Decision,
    Equivocation,
    Message,
    Output,
    Persist,
    Proposal,
    ScheduleTimeout,
    Step,
    TimeoutKind,
    Timeouts,
    Vote,
    decode_message,
    encode_message,
    sign_proposal,
    sign_vote,
)

KEYS = [derive_test_key("agreement-test", i) for i in range(7)]
LAYER = 42
V1 = make_value([b"\x01" * 32, b"\x02" * 32])
V2 = make_value([b"\x03" * 32])
ID1, ID2 = value_id(V1), value_id(V2)


def keys(n: int) -> list[KeyPair]:
    return KEYS[:n]


def pubs(n: int) -> list[bytes]:
    return [k.public_key for k in KEYS[:n]]


def key_of(public_key: bytes) -> KeyPair:
    return next(k for k in KEYS if k.public_key == public_key)


def broadcasts(out: Iterable[Output]) -> list[Message]:
    return [o.message for o in out if isinstance(o, Broadcast)]


def own_votes(out: Iterable[Output], step: Step) -> list[Vote]:
    return [m for m in broadcasts(out) if isinstance(m, Vote) and m.step is step]


def decided(out: Iterable[Output]) -> list[Decided]:
    return [o for o in out if isinstance(o, Decided)]


def node_at(n: int, *, proposer_of_round0: bool = False, **kw: object) -> Agreement:
    """An agreement for a validator that is (or is not) round 0's proposer."""
    probe = Agreement(LAYER, KEYS[0], pubs(n))
    p0 = probe.proposer(0)
    me = key_of(p0) if proposer_of_round0 else next(k for k in keys(n) if k.public_key != p0)
    return Agreement(LAYER, me, pubs(n), **kw)  # type: ignore[arg-type]


def others(a: Agreement, exclude: Iterable[bytes] = ()) -> list[KeyPair]:
    skip = {a._me.public_key, *exclude}
    return [key_of(k) for k in a.validators.keys if k not in skip]


def vote(key: KeyPair, step: Step, round_: int, vid: bytes | None, layer: int = LAYER) -> Vote:
    return sign_vote(key, step, layer, round_, vid)


def proposal(a: Agreement, round_: int, value=V1, vr: int = -1, pol=()) -> Proposal:
    return sign_proposal(key_of(a.proposer(round_)), LAYER, round_, value, vr, tuple(pol))


class Cluster:
    """N honest nodes; `run()` delivers every broadcast, in order, to every other node."""

    def __init__(self, n: int, **kw: object) -> None:
        self.nodes = [
            Agreement(LAYER, k, pubs(n), [bytes([i + 1]) * 32], **kw)  # type: ignore[arg-type]
            for i, k in enumerate(keys(n))
        ]
        self.queue: deque[tuple[int, Message]] = deque()
        self.decisions: dict[int, Decided] = {}
        self.timers: list[tuple[int, ScheduleTimeout]] = []

    def take(self, i: int, out: list[Output]) -> None:
        for o in out:
            if isinstance(o, Broadcast):
                data = encode_message(o.message)
                for j in range(len(self.nodes)):
                    if j != i:
                        self.queue.append((j, decode_message(data)))
            elif isinstance(o, Decided):
                assert i not in self.decisions
                self.decisions[i] = o
            elif isinstance(o, ScheduleTimeout):
                self.timers.append((i, o))

    def run(self, up: Iterable[int] | None = None) -> None:
        live = set(range(len(self.nodes)) if up is None else up)
        for i in sorted(live):
            self.take(i, self.nodes[i].start())
        while self.queue:
            j, msg = self.queue.popleft()
            if j in live:
                self.take(j, self.nodes[j].on_message(msg))

    def fire_timers(self, live: set[int]) -> None:
        timers, self.timers = self.timers, []
        for i, t in timers:
            if i in live:
                self.take(i, self.nodes[i].on_timeout(t.kind, t.round))
        while self.queue:
            j, msg = self.queue.popleft()
            if j in live:
                self.take(j, self.nodes[j].on_message(msg))


# --- thresholds and proposer rotation ---


@pytest.mark.parametrize(
    ("n", "f", "q"),
    [(1, 0, 1), (2, 0, 2), (3, 0, 3), (4, 1, 3), (5, 1, 4), (6, 1, 5), (7, 2, 5), (10, 3, 7)],
)
def test_thresholds(n: int, f: int, q: int) -> None:
    vs = ValidatorSet(pubs(7)[:1] * 0 + [bytes([i]) * 32 for i in range(n)])
    assert (vs.f, vs.quorum, vs.weak) == (f, q, f + 1)
    assert 2 * q - n >= f + 1, "two quorums share an honest validator"
    assert q <= n - f, "the honest validators alone form a quorum"


def test_validator_set_rejects_bad_keys() -> None:
    with pytest.raises(CertificateError):
        ValidatorSet([])
    with pytest.raises(CertificateError):
        ValidatorSet([b"\x01" * 31])
    with pytest.raises(CertificateError):
        ValidatorSet([b"\x01" * 32, b"\x01" * 32])


def test_proposer_rotation_is_deterministic_fair_and_order_independent() -> None:
    a = ValidatorSet(pubs(7))
    b = ValidatorSet(reversed(pubs(7)))
    assert [a.proposer(LAYER, r) for r in range(14)] == [b.proposer(LAYER, r) for r in range(14)]
    assert set(a.proposer(LAYER, r) for r in range(7)) == set(pubs(7))
    offsets = {a.proposer_offset(layer) for layer in range(50)}
    assert len(offsets) > 1, "the rotation start varies with the layer"


# --- values, codec ---


def test_values_are_canonical() -> None:
    assert make_value([b"b", b"a", b"b"]) == (b"a", b"b")
    assert make_value([]) == ()
    assert is_value(()) and is_value((b"a", b"b"))
    assert not is_value((b"b", b"a")) and not is_value((b"a", b"a"))
    assert not is_value((b"",)) and not is_value((b"x" * 65,)) and not is_value([b"a"])
    with pytest.raises(CertificateError):
        make_value([b""])
    assert value_id(()) != value_id((b"a",)) != value_id((b"ab",))
    assert value_id((b"a", b"b")) != value_id((b"ab",)), "ids are length-prefixed"


def test_codec_round_trips() -> None:
    a = node_at(4)
    pv = [vote(k, Step.PREVOTE, 0, ID1) for k in keys(3)]
    msgs: list[Message] = [
        vote(KEYS[0], Step.PREVOTE, 3, None),
        vote(KEYS[1], Step.PRECOMMIT, 2**31 - 1, ID1),
        proposal(a, 1, V1, 0, pv),
        proposal(a, 0, ()),
        Decision(V2, Certificate(LAYER, 1, ID2, ((KEYS[0].public_key, b"s" * 64),))),
    ]
    for m in msgs:
        assert decode_message(encode_message(m)) == m


def test_codec_rejects_malformed() -> None:
    good = encode_message(proposal(node_at(4), 1, V1, 0, []))
    for bad in (b"", b"\x09", good[:-1], good + b"\x00", b"\x02" + b"\x00" * 10):
        with pytest.raises(AgreementMessageError):
            decode_message(bad)
    # valid_round must be below round
    p = proposal(node_at(4), 1, V1)
    with pytest.raises(AgreementMessageError):
        decode_message(encode_message(replace(p, valid_round=1)))
    # an unsorted value
    with pytest.raises(AgreementMessageError):
        decode_message(encode_message(replace(p, value=(b"b", b"a"))))


@given(st.binary(max_size=300))
def test_decoder_never_raises_anything_else(data: bytes) -> None:
    try:
        decode_message(data)
    except AgreementMessageError:
        pass


# --- certificates ---


def certificate(signers: Iterable[KeyPair], round_: int = 0, vid: bytes = ID1) -> Certificate:
    votes = sorted((vote(k, Step.PRECOMMIT, round_, vid) for k in signers), key=lambda v: v.voter)
    return Certificate(LAYER, round_, vid, tuple((v.voter, v.signature) for v in votes))


def test_certificate_verifies() -> None:
    cert = certificate(keys(3))
    assert verify_certificate(cert, pubs(4))
    assert verify_certificate(cert, pubs(4), layer=LAYER, value=V1)
    assert verify_certificate(certificate(keys(4)), pubs(4))
    assert decode_certificate(encode_certificate(cert)) == cert


def test_certificate_rejects_tampering() -> None:
    cert = certificate(keys(3))
    vs = pubs(4)
    assert not verify_certificate(certificate(keys(2)), vs), "below quorum"
    assert not verify_certificate(cert, vs, layer=LAYER + 1)
    assert not verify_certificate(cert, vs, value=V2)
    assert not verify_certificate(replace(cert, value_id=ID2), vs), "signatures are on ID1"
    assert not verify_certificate(replace(cert, round=1), vs), "signatures are on round 0"
    assert not verify_certificate(replace(cert, layer=LAYER + 1), vs)
    (k0, s0), *rest = cert.signatures
    flipped = bytes([s0[0] ^ 1]) + s0[1:]
    assert not verify_certificate(replace(cert, signatures=((k0, flipped), *rest)), vs)
    dup = replace(cert, signatures=(cert.signatures[0], *cert.signatures))
    assert not verify_certificate(dup, vs), "a repeated signer"
    padded = certificate(keys(2))
    padded = replace(padded, signatures=(*padded.signatures, padded.signatures[0]))
    assert not verify_certificate(padded, vs), "quorum made of a duplicate"
    unknown = certificate([*keys(2), KEYS[6]])
    assert not verify_certificate(unknown, vs), "a signer outside the set"
    assert verify_certificate(unknown, [*pubs(3), KEYS[6].public_key])
    unsorted = replace(cert, signatures=tuple(reversed(cert.signatures)))
    assert not verify_certificate(unsorted, vs), "one encoding per certificate"
    assert not verify_certificate(replace(cert, value_id=b"short"), vs)
    assert not verify_certificate(certificate(keys(3), vid=ID1), vs, value=(b"b", b"a"))


def test_certificate_decoder_rejects_garbage() -> None:
    data = encode_certificate(certificate(keys(3)))
    for bad in (b"", data[:-1], data + b"\x00"):
        with pytest.raises(CertificateError):
            decode_certificate(bad)
    assert issubclass(CertificateError, DevnetError)


# --- the state machine, end to end ---


@pytest.mark.parametrize("n", [1, 4, 7])
def test_all_honest_decide_round_zero_proposal(n: int) -> None:
    c = Cluster(n)
    c.run()
    assert len(c.decisions) == n
    values = {d.value for d in c.decisions.values()}
    p0 = c.nodes[0].proposer(0)
    assert values == {(bytes([pubs(n).index(p0) + 1]) * 32,)}
    for d in c.decisions.values():
        assert d.certificate.round == 0
        assert verify_certificate(d.certificate, pubs(n), layer=LAYER, value=d.value)


def test_decides_with_f_nodes_down_after_timeouts() -> None:
    c = Cluster(4)
    down = pubs(4).index(c.nodes[0].proposer(0))  # the round-0 proposer is dead
    live = set(range(4)) - {down}
    c.run(up=live)
    assert not c.decisions
    for _ in range(6):
        c.fire_timers(live)
    assert set(c.decisions) == live
    assert len({d.value for d in c.decisions.values()}) == 1
    assert all(d.certificate.round >= 1 for d in c.decisions.values())


def test_no_decision_with_more_than_f_down() -> None:
    c = Cluster(4)
    live = {0, 1}
    c.run(up=live)
    for _ in range(10):
        c.fire_timers(live)
    assert not c.decisions


def test_same_inputs_same_outputs() -> None:
    def transcript() -> list[bytes]:
        c = Cluster(4)
        c.run()
        return [encode_message(Decision(d.value, d.certificate)) for d in c.decisions.values()]

    assert transcript() == transcript()


# --- rules in isolation ---


def test_decides_on_quorum_of_precommits_not_before() -> None:
    a = node_at(4)
    a.start()
    a.on_message(proposal(a, 0))
    signers = others(a)
    assert not decided(a.on_message(vote(signers[0], Step.PRECOMMIT, 0, ID1)))
    assert not decided(a.on_message(vote(signers[1], Step.PRECOMMIT, 0, ID1)))
    out = a.on_message(vote(signers[2], Step.PRECOMMIT, 0, ID1))
    (d,) = decided(out)
    assert d.value == V1 and len(d.certificate.signatures) == 3
    assert verify_certificate(d.certificate, pubs(4))
    assert any(isinstance(m, Decision) for m in broadcasts(out))


def test_precommit_quorum_for_unknown_value_waits_for_the_value() -> None:
    a = node_at(4)
    a.start()
    for k in others(a):
        assert not decided(a.on_message(vote(k, Step.PRECOMMIT, 0, ID1)))
    (d,) = decided(a.on_message(proposal(a, 0)))
    assert d.value == V1


def test_equivocating_votes_are_reported_and_counted_once() -> None:
    a = node_at(4)
    a.start()
    a.on_message(proposal(a, 0))
    byz, honest, *_ = others(a)
    a.on_message(vote(byz, Step.PRECOMMIT, 0, ID1))
    out = a.on_message(vote(byz, Step.PRECOMMIT, 0, ID2))
    (ev,) = [o for o in out if isinstance(o, Equivocation)]
    assert {ev.first.value_id, ev.second.value_id} == {ID1, ID2}  # type: ignore[union-attr]
    assert not [
        o for o in a.on_message(vote(byz, Step.PRECOMMIT, 0, None)) if isinstance(o, Equivocation)
    ], "reported once"
    assert len(a.equivocations) == 1
    # byz (ID1, first) + honest = 2 < quorum: a repeat of byz's vote must not make it 3
    a.on_message(vote(honest, Step.PRECOMMIT, 0, ID1))
    assert a.decision is None
    assert not decided(a.on_message(vote(byz, Step.PRECOMMIT, 0, ID1)))


def test_unknown_keys_bad_signatures_and_other_layers_are_ignored() -> None:
    a = node_at(4)
    a.start()
    a.on_message(proposal(a, 0))
    stranger = KEYS[6]
    k1, k2, k3 = others(a)
    assert not decided(a.on_message(vote(stranger, Step.PRECOMMIT, 0, ID1)))
    forged = replace(vote(k1, Step.PRECOMMIT, 0, ID1), signature=b"\x00" * 64)
    assert not decided(a.on_message(forged))
    assert not decided(a.on_message(vote(k2, Step.PRECOMMIT, 0, ID1, layer=LAYER + 1)))
    a.on_message(vote(k2, Step.PRECOMMIT, 0, ID1))
    a.on_message(vote(k3, Step.PRECOMMIT, 0, ID1))
    assert a.decision is None, "only two valid precommits so far"
    assert decided(a.on_message(vote(k1, Step.PRECOMMIT, 0, ID1)))


def test_proposal_from_wrong_proposer_is_ignored() -> None:
    a = node_at(4)
    a.start()
    wrong = next(k for k in others(a) if k.public_key != a.proposer(0))
    out = a.on_message(sign_proposal(wrong, LAYER, 0, V1))
    assert not own_votes(out, Step.PREVOTE)
    (pv,) = own_votes(a.on_message(proposal(a, 0)), Step.PREVOTE)
    assert pv.value_id == ID1


def test_prevote_then_lock_on_polka() -> None:
    a = node_at(4)
    a.start()
    (pv,) = own_votes(a.on_message(proposal(a, 0)), Step.PREVOTE)
    assert pv.value_id == ID1
    k1, k2, _ = others(a)
    a.on_message(vote(k1, Step.PREVOTE, 0, ID1))
    out = a.on_message(vote(k2, Step.PREVOTE, 0, ID1))
    (pc,) = own_votes(out, Step.PRECOMMIT)
    assert pc.value_id == ID1
    assert a.locked == (ID1, 0)
    persisted = [o.record for o in out if isinstance(o, Persist)]
    assert pc in persisted, "a vote is persisted before it is sent"
    assert out.index(Persist(pc)) < out.index(Broadcast(pc))


def lock_on_v1_in_round_0(a: Agreement) -> None:
    a.start()
    a.on_message(proposal(a, 0))
    for k in others(a)[:2]:
        a.on_message(vote(k, Step.PREVOTE, 0, ID1))
    assert a.locked == (ID1, 0)
    for k in others(a):  # everyone else precommitted nil: on to round 1
        a.on_message(vote(k, Step.PRECOMMIT, 0, None))
    assert a.round == 1


def test_locked_node_prevotes_nil_for_other_value() -> None:
    a = node_at(4)
    lock_on_v1_in_round_0(a)
    if a.proposer(1) == a._me.public_key:
        pytest.skip("this key set makes our node round 1's proposer")
    out = a.on_message(proposal(a, 1, V2))
    (pv,) = own_votes(out, Step.PREVOTE)
    assert pv.value_id is None


def test_locked_node_accepts_other_value_with_newer_pol() -> None:
    """Unlocking: a POL for V2 from a round after our lock round justifies prevoting V2."""
    a = node_at(4)
    lock_on_v1_in_round_0(a)
    k1, k2, k3 = others(a)
    for k in (k1, k2, k3):
        a.on_message(vote(k, Step.PRECOMMIT, 1, None))  # round 1 fails: on to round 2
    assert a.round == 2
    pol = [vote(k, Step.PREVOTE, 1, ID2) for k in (k1, k2, k3)]
    # without the POL's prevotes the node waits (it has no polka for round 1)
    if a.proposer(2) == a._me.public_key:
        pytest.skip("this key set makes our node round 2's proposer")
    assert not own_votes(a.on_message(proposal(a, 2, V2, 1)), Step.PREVOTE)
    out = a.on_message(proposal(a, 2, V2, 1, pol))
    (pv,) = own_votes(out, Step.PREVOTE)
    assert pv.value_id == ID2


def test_old_pol_does_not_unlock() -> None:
    a = node_at(7)
    a.start()
    a.on_message(proposal(a, 0, V2))
    helpers = others(a)
    for k in helpers[:4]:
        a.on_message(vote(k, Step.PREVOTE, 0, ID2))  # polka for V2 in round 0
    for k in helpers[:5]:
        a.on_message(vote(k, Step.PRECOMMIT, 0, None))
    assert a.round == 1 and a.locked == (ID2, 0)
    for k in helpers[:5]:
        a.on_message(vote(k, Step.PREVOTE, 1, ID1))  # polka for V1 in round 1 ...
    a.on_timeout(TimeoutKind.PROPOSE, 1)
    a.on_timeout(TimeoutKind.PREVOTE, 1)
    # ... lock moves to V1 only through the lock rule, which needs the value: we never saw it
    assert a.locked == (ID2, 0)
    for k in helpers[:5]:
        a.on_message(vote(k, Step.PRECOMMIT, 1, None))
    assert a.round == 2
    if a.proposer(2) == a._me.public_key:
        pytest.skip("this key set makes our node round 2's proposer")
    # a proposal of V1 claiming the *round 0* POL (for V2, not V1) gets no prevote for V1
    (pv,) = own_votes(a.on_message(proposal(a, 2, V1)), Step.PREVOTE)
    assert pv.value_id is None


def test_proposer_reproposes_its_valid_value_with_pol() -> None:
    for me in keys(4):
        a = Agreement(LAYER, me, pubs(4), [b"\x09" * 32])
        if a.proposer(1) == me.public_key and a.proposer(0) != me.public_key:
            break
    else:
        pytest.fail("no key is round 1's proposer")
    lock_on_v1_in_round_0(a)
    # entering round 1 as proposer: it must have proposed V1 with vr 0 and its POL
    a2 = Agreement(LAYER, me, pubs(4), [b"\x09" * 32])
    a2.start()
    a2.on_message(proposal(a2, 0))
    for k in others(a2)[:2]:
        a2.on_message(vote(k, Step.PREVOTE, 0, ID1))
    out: list[Output] = []
    for k in others(a2):
        out += a2.on_message(vote(k, Step.PRECOMMIT, 0, None))
    (p,) = [m for m in broadcasts(out) if isinstance(m, Proposal)]
    assert (p.round, p.value, p.valid_round) == (1, V1, 0)
    assert len(p.pol) == 3 and all(v.value_id == ID1 and v.round == 0 for v in p.pol)


def test_timeouts_prevote_nil_and_stale_ones_are_ignored() -> None:
    a = node_at(4, timeouts=Timeouts(100, 50, 50, 25, 40))
    out = a.start()
    sched = [o for o in out if isinstance(o, ScheduleTimeout)]
    assert ScheduleTimeout(TimeoutKind.PROPOSE, 0, 100) in sched
    assert ScheduleTimeout(TimeoutKind.RESEND, 0, 40) in sched
    assert a.on_timeout(TimeoutKind.PREVOTE, 0) == [], "not at the prevote step"
    assert a.on_timeout(TimeoutKind.PROPOSE, 5) == [], "another round"
    (pv,) = own_votes(a.on_timeout(TimeoutKind.PROPOSE, 0), Step.PREVOTE)
    assert pv.value_id is None
    assert a.on_timeout(TimeoutKind.PROPOSE, 0) == [], "no second prevote"
    assert Timeouts(100, 50, 50, 25, 40).delay(TimeoutKind.PROPOSE, 3) == 175
    assert Timeouts.for_layer(1000) == Timeouts(100, 25, 25, 50, 25)
    assert Timeouts.for_layer(200).propose_ms == 20
    with pytest.raises(AgreementError):
        Timeouts.for_layer(39)


def test_round_skip_needs_f_plus_one_senders() -> None:
    a = node_at(7)  # f = 2
    a.start()
    k1, k2, k3, *_ = others(a)
    a.on_message(vote(k1, Step.PREVOTE, 5, None))
    a.on_message(vote(k2, Step.PRECOMMIT, 9, None))
    assert a.round == 0
    a.on_message(vote(k3, Step.PREVOTE, 7, None))
    assert a.round == 5, "three validators are at round 5 or later"


def test_far_future_rounds_are_not_stored() -> None:
    a = node_at(4)
    a.start()
    k1, _, _ = others(a)
    for r in range(100, 400):
        a.on_message(vote(k1, Step.PREVOTE, r, None))
    assert a.round == 0
    assert len(a._votes) <= 2


def test_decision_message_is_adopted_and_bad_ones_are_not() -> None:
    a = node_at(4)
    a.start()
    good = certificate(keys(4)[:3])
    assert not decided(a.on_message(Decision(V2, good))), "certificate is for V1"
    assert not decided(a.on_message(Decision(V1, certificate(keys(2)))))
    (d,) = decided(a.on_message(Decision(V1, good)))
    assert d.value == V1 and d.certificate == good


def test_decided_node_answers_stragglers_at_most_once_per_resend() -> None:
    a = node_at(4)
    a.start()
    a.on_message(Decision(V1, certificate(keys(4)[:3])))
    a.on_timeout(TimeoutKind.RESEND, 0)  # the undecided resend chain ends
    k1, k2, _ = others(a)
    out = a.on_message(vote(k1, Step.PREVOTE, 0, None))
    assert [type(m) for m in broadcasts(out)] == [Decision]
    assert any(isinstance(o, ScheduleTimeout) and o.kind is TimeoutKind.RESEND for o in out)
    assert not broadcasts(a.on_message(vote(k2, Step.PREVOTE, 0, None))), "rate-limited"
    assert [type(m) for m in broadcasts(a.on_timeout(TimeoutKind.RESEND, 0))] == [Decision]
    assert a.on_timeout(TimeoutKind.RESEND, 0) == [], "nobody asked: quiet"


def test_restore_keeps_votes_and_lock() -> None:
    a = node_at(4)
    log: list[Message] = []

    def keep(out: list[Output]) -> None:
        log.extend(o.record for o in out if isinstance(o, Persist))

    keep(a.start())
    keep(a.on_message(proposal(a, 0)))
    for k in others(a)[:2]:
        keep(a.on_message(vote(k, Step.PREVOTE, 0, ID1)))
    assert a.locked == (ID1, 0)
    # crash; restart from the log
    b = Agreement(LAYER, a._me, pubs(4))
    b.restore(log)
    assert b.locked == (ID1, 0) and b.round == 0 and b.step is Step.PRECOMMIT
    out = b.start()
    assert not own_votes(out, Step.PREVOTE) and not own_votes(out, Step.PRECOMMIT)
    assert b.on_timeout(TimeoutKind.PROPOSE, 0) == []
    assert not broadcasts(b.on_timeout(TimeoutKind.RESEND, 0)), "first tick: a fresh step"
    resent = broadcasts(b.on_timeout(TimeoutKind.RESEND, 0))
    assert any(
        isinstance(m, Vote) and m.step is Step.PRECOMMIT and m.value_id == ID1 for m in resent
    )
    # without the log, the restarted node would prevote nil on the timeout: a conflicting vote
    c = Agreement(LAYER, a._me, pubs(4))
    c.start()
    (pv,) = own_votes(c.on_timeout(TimeoutKind.PROPOSE, 0), Step.PREVOTE)
    assert pv.value_id is None
    with pytest.raises(AgreementError):
        c.restore(log)
    with pytest.raises(AgreementError):
        c.start()


def test_restore_of_a_decision() -> None:
    a = node_at(4)
    a.restore([Decision(V1, certificate(keys(3)))])
    out = a.start()
    assert decided(out) and any(isinstance(m, Decision) for m in broadcasts(out))


def test_invalid_value_gets_nil_prevote() -> None:
    a = node_at(4, is_valid=lambda value: value != V1)
    a.start()
    (pv,) = own_votes(a.on_message(proposal(a, 0, V1)), Step.PREVOTE)
    assert pv.value_id is None


def test_observer_decides_without_signing() -> None:
    a = Agreement(LAYER, KEYS[6], pubs(4))
    out = a.start()
    a.on_message(proposal(a, 0))
    for k in keys(4)[:2]:
        out += a.on_message(vote(k, Step.PRECOMMIT, 0, ID1))
    out += a.on_message(vote(KEYS[2], Step.PRECOMMIT, 0, ID1))
    assert decided(out)
    assert not [m for m in broadcasts(out) if not isinstance(m, Decision)]


def test_messages_before_start_are_kept() -> None:
    a = node_at(4)
    a.on_message(proposal(a, 0))
    for k in others(a):
        assert a.on_message(vote(k, Step.PRECOMMIT, 0, ID1)) == []
    assert decided(a.start())


def test_bad_setup_is_rejected() -> None:
    with pytest.raises(AgreementError):
        Agreement(-1, KEYS[0], pubs(4))
    with pytest.raises(AgreementError):
        Agreement(1, KEYS[0], pubs(4), [b""])
    with pytest.raises(CertificateError):
        Agreement(1, KEYS[0], [])


def test_resend_repairs_only_when_stuck_and_backs_off() -> None:
    a = node_at(4, timeouts=Timeouts(100, 50, 50, 10, 20))
    a.start()
    (pv,) = own_votes(a.on_timeout(TimeoutKind.PROPOSE, 0), Step.PREVOTE)

    def tick() -> tuple[list[Message], int]:
        out = a.on_timeout(TimeoutKind.RESEND, 0)
        (t,) = [o for o in out if isinstance(o, ScheduleTimeout)]
        return broadcasts(out), t.delay_ms

    assert tick() == ([], 20), "the step is new: nothing to repair yet"
    assert tick() == ([pv], 40)
    assert tick() == ([pv], 80)
    assert tick() == ([pv], 80), "backoff is capped"
    k1, k2, _ = others(a)
    a.on_message(vote(k1, Step.PREVOTE, 0, None))
    a.on_message(vote(k2, Step.PREVOTE, 0, None))  # nil polka: precommit nil, progress
    assert tick() == ([], 20)


def test_locked_node_spreads_its_lock_evidence() -> None:
    a = node_at(4)
    lock_on_v1_in_round_0(a)
    a.on_timeout(TimeoutKind.RESEND, 0)
    a.on_timeout(TimeoutKind.PROPOSE, 1)  # stuck in round 1 ...
    a.on_timeout(TimeoutKind.RESEND, 0)
    sent = broadcasts(a.on_timeout(TimeoutKind.RESEND, 0))
    (evidence,) = [m for m in sent if isinstance(m, Proposal) and m.value == V1]
    assert evidence.round == 0 and len(evidence.pol) == 3
    assert {v.value_id for v in evidence.pol} == {ID1} and {v.round for v in evidence.pol} == {0}
    # a node that saw none of round 0 adopts V1 as its valid value from that evidence alone
    b = Agreement(LAYER, key_of(next(k for k in pubs(4) if k != a._me.public_key)), pubs(4))
    b.start()
    b.on_message(evidence)
    assert b._valid_id == ID1 and b._valid_round == 0


def test_pol_proves_a_polka_despite_an_equivocator() -> None:
    """Our store holds the equivocator's nil prevote, the POL its prevote for V1: q distinct
    valid signatures prove the polka all the same."""
    a = node_at(4)
    a.start()
    byz, h1, h2 = others(a)
    a.on_message(vote(byz, Step.PREVOTE, 0, None))
    for k in others(a):
        a.on_message(vote(k, Step.PRECOMMIT, 0, None))
    assert a.round == 1
    if a.proposer(1) == a._me.public_key:
        pytest.skip("this key set makes our node round 1's proposer")
    pol = [vote(k, Step.PREVOTE, 0, ID1) for k in (byz, h1, h2)]
    (pv,) = own_votes(a.on_message(proposal(a, 1, V1, 0, pol)), Step.PREVOTE)
    assert pv.value_id == ID1
    assert len(a.equivocations) == 1, "the POL also exposed the equivocation"


def test_equivocating_proposer_is_reported_and_first_proposal_kept() -> None:
    a = node_at(4)
    a.start()
    (pv,) = own_votes(a.on_message(proposal(a, 0, V1)), Step.PREVOTE)
    out = a.on_message(proposal(a, 0, V2))
    assert [o for o in out if isinstance(o, Equivocation)]
    assert not own_votes(out, Step.PREVOTE)
    # the second value is still remembered: if it is decided, we can output it
    for k in others(a):
        out = a.on_message(vote(k, Step.PRECOMMIT, 0, ID2))
    (d,) = decided(out)
    assert d.value == V2 and pv.value_id == ID1


def test_value_rejected_for_missing_data_is_accepted_once_it_arrives() -> None:
    available: set[tuple[bytes, ...]] = set()
    a = node_at(4, is_valid=lambda value: value in available)
    a.start()
    (pv,) = own_votes(a.on_message(proposal(a, 0, V1)), Step.PREVOTE)
    assert pv.value_id is None, "the value's data is missing"
    available.add(V1)  # ... and arrives
    k1, k2, k3 = others(a)
    a.on_message(vote(k1, Step.PREVOTE, 0, ID1))
    a.on_message(vote(k2, Step.PREVOTE, 0, ID1))
    (pc,) = own_votes(a.on_message(vote(k3, Step.PREVOTE, 0, ID1)), Step.PRECOMMIT)
    assert pc.value_id == ID1 and a.locked == (ID1, 0)
