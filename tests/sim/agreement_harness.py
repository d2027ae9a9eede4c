"""A deterministic, seeded simulation of the layer agreement on trio's MockClock.

Each smesher is a trio task that owns an `Agreement`, reads encoded messages from an
in-memory channel (its inbox) and keeps its own timers, exactly like a real node's driver.
The network between them is simulated: every message gets a seeded random delay, may be
dropped or duplicated, and the random delays reorder messages. Before the global
stabilisation time (GST) the network is hostile — long delays, heavy loss, an optional
partition; after it, delays are bounded and honest links lose nothing (partial synchrony).
Nodes crash and restart (replaying their persisted log, or without it — "amnesiac"), and
one Byzantine node equivocates with validly signed conflicting proposals and votes and sends
forgeries, garbage and fake certificates.

Determinism. trio shuffles tasks that become runnable together, so the simulation makes
sure that never matters: every wake-up time (deliveries, timers, node starts, crashes) is
allocated unique to the nanosecond, so exactly one task chain runs at each instant, and all
randomness is drawn from one `random.Random(seed)` in that chain. The same seed replays
the same run (a test checks it), so any failure is reproducible from its seed alone.

Time is kept in integer nanoseconds; trio sees seconds only at `sleep_until`.
"""

import heapq
import math
import random
from dataclasses import dataclass, field

import blake3
import trio
import trio.testing

from devnet.certificate import Certificate, ValidatorSet, make_value, value_id, verify_certificate
from devnet.errors import AgreementMessageError
from devnet.keys import KeyPair, derive_test_key, verify
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

MS = 1_000_000  # nanoseconds
KEY_PHRASE = "agreement-sim"
_KEYS = [derive_test_key(KEY_PHRASE, i) for i in range(7)]


@dataclass(frozen=True)
class Crash:
    node: int
    at_ns: int
    restart_ns: int | None  # None: stays down
    keeps_log: bool  # False: restarts amnesiac (a faulty node)


@dataclass(frozen=True)
class Scenario:
    seed: int
    mode: str  # "f-faulty" (liveness expected) | "over-f" | "async" (safety only)
    n: int
    layer: int
    layer_ms: int
    byzantine: frozenset[int]
    byz_strategy: str  # "random" | "mirror" (see ByzantineBehaviour)
    crashes: tuple[Crash, ...]
    start_ns: tuple[int, ...]
    gst_ns: int
    pre_delay_ns: int
    pre_drop_permille: int
    partition: frozenset[int] | None  # one side of a pre-GST partition
    post_delay_ns: tuple[int, int]
    dup_permille: int
    horizon_ns: int

    @property
    def f(self) -> int:
        return (self.n - 1) // 3

    @property
    def amnesiac(self) -> frozenset[int]:
        return frozenset(c.node for c in self.crashes if not c.keeps_log)

    @property
    def faulty(self) -> frozenset[int]:
        """Byzantine, amnesiac and ever-crashed nodes: what the liveness bound counts."""
        return self.byzantine | frozenset(c.node for c in self.crashes)

    @property
    def deadline_ns(self) -> int:
        return self.layer_ms * MS

    @property
    def expect_liveness(self) -> bool:
        return self.mode == "f-faulty"


def make_scenario(seed: int) -> Scenario:
    """Draw a scenario from the seed (all choices integer-valued)."""
    rng = random.Random(seed)
    n = rng.choice((4, 7))
    f = (n - 1) // 3
    layer_ms = rng.choice((200, 500, 1000, 1000))
    L = layer_ms * MS
    roll = rng.randrange(100)
    mode = "f-faulty" if roll < 70 else "over-f" if roll < 85 else "async"
    layer = rng.randrange(1, 1 << 20)
    nodes = list(range(n))
    rng.shuffle(nodes)
    if rng.randrange(100) < 40:  # the most dangerous seat: round 0's proposer
        first = ValidatorSet(k.public_key for k in _KEYS[:n]).proposer(layer, 0)
        nodes.remove(b := [k.public_key for k in _KEYS].index(first))
        nodes.insert(0, b)
    byzantine = frozenset(nodes[:1]) if rng.randrange(100) < 60 else frozenset()
    rest = [i for i in nodes if i not in byzantine]
    crashes: list[Crash] = []
    if mode == "over-f":
        # More than f nodes crash: safety must still hold; all keep their logs, or the
        # amnesiac ones would push the faulty count past f.
        budget = rng.randrange(f + 1, n + 1 - len(byzantine))
        amnesia_budget = 0
    else:
        budget = rng.randrange(0, f - len(byzantine) + 1)
        amnesia_budget = budget
    for node in rest[:budget]:
        at = rng.randrange(L // 100, L // 2)  # after every node has started
        restart = at + rng.randrange(L // 20, L // 3) if rng.randrange(100) < 70 else None
        keeps = not (amnesia_budget and restart is not None and rng.randrange(100) < 30)
        crashes.append(Crash(node, at, restart, keeps))
    if mode == "async":
        gst = 10 * L  # never within the run
    else:
        gst = rng.randrange(0, L // 4)
    partition = None
    if rng.randrange(100) < 30:
        side = rng.randrange(1, n)
        partition = frozenset(nodes[:side])
    delta = L // 50
    sc = Scenario(
        seed=seed,
        mode=mode,
        n=n,
        layer=layer,
        layer_ms=layer_ms,
        byzantine=byzantine,
        byz_strategy=rng.choice(("random", "mirror")),
        crashes=tuple(crashes),
        start_ns=tuple(rng.randrange(0, L // 100) for _ in range(n)),
        gst_ns=gst,
        pre_delay_ns=rng.randrange(L // 50, L // 4),
        pre_drop_permille=rng.randrange(0, 500),
        partition=partition,
        post_delay_ns=(delta // 10, delta),
        dup_permille=rng.randrange(0, 100),
        horizon_ns=L if mode == "f-faulty" else 2 * L,
    )
    assert mode != "f-faulty" or len(sc.faulty) <= f
    assert len(sc.byzantine | sc.amnesiac) <= f
    return sc


@dataclass
class Result:
    scenario: Scenario
    decisions: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # node -> (t, id)
    safety_violations: int = 0
    bad_certificates: int = 0
    liveness_failures: int = 0
    equivocations_detected: int = 0
    false_accusations: int = 0  # equivocation evidence against an honest node
    messages_sent: int = 0
    messages_dropped: int = 0
    garbage_rejected: int = 0
    max_round: int = 0
    end_ns: int = 0
    trace: str = ""  # blake3 of the event trace: equal for equal seeds

    @property
    def ok(self) -> bool:
        return not (
            self.safety_violations
            or self.bad_certificates
            or self.liveness_failures
            or self.false_accusations
        )


Inbound = bytes | tuple[TimeoutKind, int]
"""What a node's inbox carries: an encoded message, or one of its own timers firing."""


class SimNode:
    def __init__(self, index: int, key: KeyPair, proposal: tuple[bytes, ...]) -> None:
        self.index = index
        self.key = key
        self.proposal = proposal
        self.agreement: Agreement | None = None
        self.alive = False
        self.log: list[Message] = []
        self.keeps_log = True
        self.inbox: trio.MemorySendChannel[Inbound] | None = None
        self.incarnation = 0
        self.scope: trio.CancelScope | None = None
        self.decided: tuple[int, bytes] | None = None


class Simulation:
    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.rng = random.Random(sc.seed * 7919 + 1)
        self.keys = _KEYS[: sc.n]
        self.validators = ValidatorSet(k.public_key for k in self.keys)
        pool = [blake3.blake3(b"bundle%d:%d" % (sc.seed, i)).digest() for i in range(8)]
        self.nodes = [
            SimNode(i, k, tuple(b for b in pool if self.rng.randrange(2)))
            for i, k in enumerate(self.keys)
        ]
        self.timeouts = Timeouts.for_layer(sc.layer_ms)
        self.now_ns = 0
        self._used: set[int] = set()
        self._seq = 0
        self._events: list[tuple[int, int, int, Inbound, int]] = []
        self._wake: trio.CancelScope | None = None
        self._verified: dict[tuple[bytes, bytes, bytes], bool] = {}
        self._trace = blake3.blake3()
        self.result = Result(sc)
        self.nursery: trio.Nursery | None = None
        self.byz = ByzantineBehaviour(self) if sc.byzantine else None
        self._pending_lifecycle = len(sc.crashes)
        self.certified: set[bytes] = set()

    # --- plumbing ---

    def verify(self, key: bytes, message: bytes, signature: bytes) -> bool:
        """ed25519 verify, memoised across the run's nodes (a pure function, so sharing the
        cache changes nothing but the cost)."""
        k = (key, message, signature)
        hit = self._verified.get(k)
        if hit is None:
            hit = self._verified[k] = verify(key, message, signature)
        return hit

    def alloc(self, t_ns: int) -> int:
        """A wake-up time no other event uses, so only one task runs per instant."""
        t_ns = max(t_ns, self.now_ns + 1)
        while t_ns in self._used:
            t_ns += 1
        self._used.add(t_ns)
        return t_ns

    async def sleep_until(self, t_ns: int) -> None:
        await trio.sleep_until(t_ns / 1e9)
        self.now_ns = t_ns

    def note(self, *items: object) -> None:
        self._trace.update(repr((self.now_ns, *items)).encode())

    # --- the network ---

    def push(self, t_ns: int, dst: int, item: "Inbound", incarnation: int = 0) -> None:
        """Schedule `item` for `dst`'s inbox at `t_ns` (a message, or one of its timers)."""
        self._seq += 1
        heapq.heappush(self._events, (t_ns, self._seq, dst, item, incarnation))
        wake = self._wake
        if wake is not None and t_ns / 1e9 < wake.deadline:
            wake.deadline = t_ns / 1e9

    async def network(self) -> None:
        """The wire and the timer wheel: one task that sleeps until the next event and puts
        it into its node's inbox. A timer of an earlier incarnation of a node (before a
        crash) is dropped, like the process that set it."""
        while True:
            deadline = self._events[0][0] / 1e9 if self._events else math.inf
            with trio.move_on_at(deadline) as wake:
                self._wake = wake
                await trio.sleep_forever()
            self._wake = None
            if not self._events or self._events[0][0] / 1e9 > trio.current_time():
                continue  # woken early by a deadline change; go round again
            t_ns, _, dst, item, incarnation = heapq.heappop(self._events)
            self.now_ns = t_ns
            node = self.nodes[dst]
            if not node.alive or node.inbox is None:
                continue
            if isinstance(item, tuple) and incarnation != node.incarnation:
                continue
            node.inbox.send_nowait(item)

    def send(self, src: int, dst: int, data: bytes) -> None:
        sc, rng = self.sc, self.rng
        self.result.messages_sent += 1
        copies = 2 if rng.randrange(1000) < sc.dup_permille else 1
        for _ in range(copies):
            if self.now_ns < sc.gst_ns:
                cut = sc.partition is not None and ((src in sc.partition) != (dst in sc.partition))
                if cut or rng.randrange(1000) < sc.pre_drop_permille:
                    self.result.messages_dropped += 1
                    continue
                delay = rng.randrange(0, sc.pre_delay_ns)
            else:
                lo, hi = sc.post_delay_ns
                delay = rng.randrange(lo, hi + 1)
            self.push(self.alloc(self.now_ns + delay), dst, data)

    def broadcast(self, src: int, msg: Message) -> None:
        data = encode_message(msg)
        for dst in range(self.sc.n):
            if dst != src:
                self.send(src, dst, data)

    # --- nodes ---

    async def run_node(self, node: SimNode, start_ns: int) -> None:
        await self.sleep_until(start_ns)
        send, recv = trio.open_memory_channel["Inbound"](math.inf)
        with trio.CancelScope() as scope:
            node.incarnation += 1
            node.scope, node.inbox, node.alive = scope, send, True
            a = Agreement(
                self.sc.layer,
                node.key,
                self.validators,
                node.proposal,
                timeouts=self.timeouts,
                verifier=self.verify,
            )
            node.agreement = a
            if node.keeps_log:
                a.restore(node.log)
            else:
                node.log = []
            self.note("start", node.index)
            self.apply(node, a.start())
            async for item in recv:
                if isinstance(item, tuple):
                    kind, round_ = item
                    self.apply(node, a.on_timeout(kind, round_))
                    if self.byz is not None and node.index in self.sc.byzantine:
                        self.byz.on_tick(node, kind)
                    continue
                try:
                    msg = decode_message(item)
                except AgreementMessageError:
                    self.result.garbage_rejected += 1
                    continue
                if self.byz is not None and node.index in self.sc.byzantine:
                    self.byz.node = node
                    self.byz.observe(msg)
                self.apply(node, a.on_message(msg))

    def apply(self, node: SimNode, outputs: list[Output]) -> None:
        a = node.agreement
        assert a is not None
        self.result.max_round = max(self.result.max_round, a.round)
        for o in outputs:
            if isinstance(o, Persist):
                node.log.append(o.record)
            elif isinstance(o, Broadcast):
                self.note("send", node.index, type(o.message).__name__)
                if self.byz is not None and node.index in self.sc.byzantine:
                    self.byz.broadcast(node, o.message)
                else:
                    self.broadcast(node.index, o.message)
            elif isinstance(o, ScheduleTimeout):
                t = self.alloc(self.now_ns + o.delay_ms * MS)
                self.push(t, node.index, (o.kind, o.round), node.incarnation)
            elif isinstance(o, Decided):
                self.on_decided(node, o.value, o.certificate)
            elif isinstance(o, Equivocation):
                self.on_equivocation(o)

    def on_equivocation(self, ev: Equivocation) -> None:
        """Evidence must be genuine and name a misbehaving node: an honest node with its
        log never signs two different votes for one (round, step)."""
        self.result.equivocations_detected += 1
        first, second = ev.first, ev.second
        signer = first.voter if isinstance(first, Vote) else first.proposer
        accused = next(i for i, k in enumerate(self.keys) if k.public_key == signer)
        genuine = first != second and all(
            self.verify(signer, m.signing_bytes(), m.signature)
            if isinstance(m, Vote)
            else self.verify(signer, m.signing_bytes(value_id(m.value)), m.signature)
            for m in (first, second)
        )
        if not genuine or accused not in self.sc.byzantine | self.sc.amnesiac:
            self.result.false_accusations += 1

    def on_decided(self, node: SimNode, value: tuple[bytes, ...], cert: Certificate) -> None:
        self.note("decided", node.index, cert.value_id)
        if not verify_certificate(cert, self.validators, layer=self.sc.layer, value=value):
            self.result.bad_certificates += 1
        if node.index not in self.sc.byzantine:
            # Certificates are unique per layer while at most f nodes misbehave (Byzantine
            # or amnesiac); crashing with a log is not misbehaving, whatever the count.
            self.certified.add(cert.value_id)
        if node.decided is not None and node.decided[1] != cert.value_id:
            self.result.safety_violations += 1  # a node changed its mind
        if node.decided is None:
            node.decided = (self.now_ns, cert.value_id)
        self.maybe_finish()

    async def crash(self, c: Crash) -> None:
        node = self.nodes[c.node]
        await self.sleep_until(self.alloc(c.at_ns))
        self.note("crash", c.node)
        node.alive = False
        node.inbox = None
        if node.scope is not None:
            node.scope.cancel()
        if c.restart_ns is not None:
            node.keeps_log = c.keeps_log
            assert self.nursery is not None
            self.nursery.start_soon(self.run_node, node, self.alloc(c.restart_ns))
        self._pending_lifecycle -= 1
        self.maybe_finish()

    def live_honest(self) -> list[SimNode]:
        crashed_for_good = {c.node for c in self.sc.crashes if c.restart_ns is None}
        return [
            n
            for n in self.nodes
            if n.index not in self.sc.byzantine and n.index not in crashed_for_good
        ]

    def maybe_finish(self) -> None:
        if self._pending_lifecycle or any(
            c.restart_ns is not None and c.restart_ns > self.now_ns for c in self.sc.crashes
        ):
            return
        if all(n.decided is not None for n in self.live_honest()):
            assert self.nursery is not None
            self.nursery.cancel_scope.cancel()

    async def main(self) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.cancel_scope.deadline = self.alloc(self.sc.horizon_ns) / 1e9
            nursery.start_soon(self.network)
            for node, start in zip(self.nodes, self.sc.start_ns, strict=True):
                nursery.start_soon(self.run_node, node, self.alloc(start))
            for c in self.sc.crashes:
                nursery.start_soon(self.crash, c)
        self.finish()

    def finish(self) -> None:
        r, sc = self.result, self.sc
        r.end_ns = self.now_ns
        for n in self.nodes:
            if n.decided is not None and n.index not in sc.byzantine:
                r.decisions[n.index] = n.decided
        honest_ids = {d[1] for i, d in r.decisions.items() if i not in sc.amnesiac}
        misbehaving = len(sc.byzantine | sc.amnesiac)
        if len(honest_ids) > 1 or (misbehaving <= sc.f and len(self.certified) > 1):
            r.safety_violations += 1
        if sc.expect_liveness:
            for n in self.live_honest():
                if n.decided is None or n.decided[0] > sc.deadline_ns:
                    r.liveness_failures += 1
        r.trace = self._trace.hexdigest()


class ByzantineBehaviour:
    """One equivocating validator. It runs the honest machine to follow the rounds, but
    sends each peer its own version of every proposal and vote, plus noise on every RESEND
    tick. Strategy per run:

    - "random": each peer gets the honest message, a vote for another value or nil, or
      nothing;
    - "mirror": each peer gets a vote for whatever that peer itself voted in the same round
      and step, sent the moment the peer's vote arrives — it agrees with everyone, the
      classic way to split honest nodes into two quorums if the thresholds were too low.

    As a proposer it gives most peers a different value each ("random"), or splits them
    into two camps with one value each ("mirror").
    """

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.rng = random.Random(sim.sc.seed * 104729 + 3)
        self.strategy = sim.sc.byz_strategy
        self.value_ids: list[bytes] = []
        self.values: list[tuple[bytes, ...]] = []
        self.seen: list[bytes] = []
        self.index = {k.public_key: i for i, k in enumerate(sim.keys)}
        self.mirrored: dict[tuple[int, int, Step], bytes | None] = {}  # (peer, round, step)
        self.node: SimNode | None = None
        self.camp_value = self.rng.randbytes(32)

    def observe(self, msg: Message) -> None:
        if isinstance(msg, Proposal) and msg.value not in self.values and len(self.values) < 16:
            self.values.append(msg.value)
            self.value_ids.append(value_id(msg.value))
        if len(self.seen) < 256:
            self.seen.append(encode_message(msg))
        if self.strategy == "mirror" and isinstance(msg, Vote) and self.node is not None:
            peer = self.index.get(msg.voter, self.node.index)
            key = (peer, msg.round, msg.step)
            if key not in self.mirrored and peer != self.node.index:
                self.mirrored[key] = msg.value_id
                self._send_vote(peer, msg.step, msg.round, msg.value_id)
                ahead = (peer, msg.round, Step.PRECOMMIT)
                if msg.step is Step.PREVOTE and ahead not in self.mirrored:
                    # precommit the same value at once: the peer's precommit quorum then
                    # needs no second round trip through us
                    self.mirrored[ahead] = msg.value_id
                    self._send_vote(peer, Step.PRECOMMIT, msg.round, msg.value_id)

    def _send_vote(self, peer: int, step: Step, round_: int, vid: bytes | None) -> None:
        assert self.node is not None
        vote = sign_vote(self.node.key, step, self.sim.sc.layer, round_, vid)
        self.sim.send(self.node.index, peer, encode_message(vote))

    def _other_id(self) -> bytes | None:
        choice = self.rng.randrange(len(self.value_ids) + 2)
        if choice < len(self.value_ids):
            return self.value_ids[choice]
        return None if choice == len(self.value_ids) else self.rng.randbytes(32)

    def broadcast(self, node: SimNode, msg: Message) -> None:
        self.node = node
        sim, rng, key = self.sim, self.rng, node.key
        for dst in range(sim.sc.n):
            if dst == node.index:
                continue
            roll = rng.randrange(10)
            out: Message | None = msg
            if isinstance(msg, Vote):
                if self.strategy == "mirror":  # wait for the peer's own vote, then echo it
                    mirrored = self.mirrored.get((dst, msg.round, msg.step), b"?")
                    out = None
                    if mirrored != b"?":
                        out = sign_vote(key, msg.step, msg.layer, msg.round, mirrored)
                elif roll >= 4:
                    vid = None if roll == 9 else self._other_id()
                    out = sign_vote(key, msg.step, msg.layer, msg.round, vid) if roll < 9 else None
            elif isinstance(msg, Proposal) and self.strategy == "mirror":
                if dst % 2:  # two camps: half get the honest value, half another one
                    value = make_value((*msg.value, self.camp_value))
                    out = sign_proposal(key, msg.layer, msg.round, value)
            elif isinstance(msg, Proposal) and roll >= 2:
                extra = rng.randbytes(32)
                value = make_value((*msg.value[: rng.randrange(len(msg.value) + 1)], extra))
                out = sign_proposal(key, msg.layer, msg.round, value) if roll < 9 else None
            if out is not None:
                sim.send(node.index, dst, encode_message(out))

    def on_tick(self, node: SimNode, kind: TimeoutKind) -> None:
        self.node = node
        if kind is not TimeoutKind.RESEND:
            return
        sim, rng, key = self.sim, self.rng, node.key
        a = node.agreement
        assert a is not None
        dst = rng.choice([i for i in range(sim.sc.n) if i != node.index])
        layer, r = sim.sc.layer, a.round
        attack = rng.randrange(6 if self.strategy == "mirror" else 7)
        data: bytes
        if attack == 0:  # votes for rounds ahead (round skipping needs f+1 senders)
            step = rng.choice((Step.PREVOTE, Step.PRECOMMIT))
            ahead = r + rng.choice((1, 2, 3, 50, 10_000))
            data = encode_message(sign_vote(key, step, layer, ahead, self._other_id()))
        elif attack == 1:  # a vote in an honest validator's name, badly signed
            victim = rng.choice(sim.keys).public_key
            vote = Vote(Step.PRECOMMIT, layer, r, self._other_id(), victim, rng.randbytes(64))
            data = encode_message(vote)
        elif attack == 2:  # garbage and truncations
            data = rng.randbytes(rng.randrange(0, 200))
            if self.seen and rng.randrange(2):
                whole = rng.choice(self.seen)
                data = whole[: rng.randrange(len(whole))]
        elif attack == 3 and self.seen:  # replay
            data = rng.choice(self.seen)
        elif attack == 4:  # a fake certificate: our own signature repeated to a "quorum"
            value = make_value((rng.randbytes(32),))
            vid = value_id(value)
            own = sign_vote(key, Step.PRECOMMIT, layer, r, vid)
            sigs = tuple((own.voter, own.signature) for _ in range(sim.validators.quorum))
            data = encode_message(Decision(value, Certificate(layer, r, vid, sigs)))
        elif attack == 5:  # a proposal out of turn
            value = make_value((rng.randbytes(32),))
            data = encode_message(sign_proposal(key, layer, r + rng.randrange(3), value))
        else:  # precommit split: a different value to each peer
            for i, peer in enumerate(i for i in range(sim.sc.n) if i != node.index):
                split = self.value_ids[i % len(self.value_ids)] if self.value_ids else None
                self._send_vote(peer, Step.PRECOMMIT, r, split)
            return
        sim.send(node.index, dst, data)


def run_scenario(sc: Scenario) -> Result:
    sim = Simulation(sc)
    trio.run(sim.main, clock=trio.testing.MockClock(autojump_threshold=0))
    return sim.result


def run_seed(seed: int) -> Result:
    return run_scenario(make_scenario(seed))
