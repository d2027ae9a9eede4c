"""Per-layer agreement among the smeshers: a sans-IO, deterministic BFT state machine.

What it decides. Each smesher proposes the value it would build a block from — the sorted
tuple of the bundle ids it holds, possibly empty. The agreement decides one proposer's value
plus a certificate for it (`devnet.certificate`). Safety holds whatever the network does,
with up to f = ⌊(N−1)/3⌋ Byzantine validators: no two honest nodes decide different values
for a layer, and no two valid certificates of a layer name different values. Liveness holds
once messages between honest nodes arrive within a bound (partial synchrony) and at most f
validators are faulty or down.

Why not Hare3 verbatim. Hare3's fixed preround/propose/commit/notify schedule leans on
synchronised clocks and on eligibility proofs from Spacemesh's ATX system, which the devnet
does not have. A Tendermint-style single-shot protocol with rounds needs neither: rounds
advance by timeouts and by messages, so a slow node catches up and a crashed proposer costs
one round. The output has Hare3's shape: a set of bundles and a quorum certificate on it.

The protocol, per layer (q = quorum = ⌊2N/3⌋+1, which is 2f+1 for N = 3f+1):

- Round r has proposer `keys[(offset(layer) + r) mod N]` (round-robin from a hash of the
  layer, so any f+1 consecutive rounds include an honest proposer). Entering r, the proposer
  signs PROPOSAL(r, v, vr): v is its *valid value* — the newest value it has seen q prevotes
  for, in round vr — if it has one, else its own bundle set with vr = −1. A proposal with
  vr ≥ 0 carries those q prevotes (the proof of lock, POL). Other nodes start a PROPOSE
  timeout.
- PREVOTE: on the round's first proposal, a node prevotes id(v) if v is valid and it is not
  locked on something else (locked round ≤ vr, or locked on v); otherwise nil. A proposal
  with vr ≥ 0 waits until the node knows a polka (q prevotes) for (vr, id(v)). PROPOSE
  timeout → prevote nil.
- PRECOMMIT: a polka for a known valid v in the current round → lock (v, r) and precommit
  id(v) if still at the prevote step; in any case v becomes the valid value with round r. A
  nil polka → precommit nil. q prevotes of any kind → PREVOTE timeout → precommit nil.
- DECIDE: q precommits for id(v) in *any* round, v known → decide v; the certificate is q
  of those precommit signatures. q precommits of any kind → PRECOMMIT timeout → next round;
  q nil precommits → next round at once (nothing can be decided in that round any more).
- Round skip: once f+1 validators have sent messages of rounds ≥ R > current, enter R.
- Valid value: a polka for a known valid value in any round newer than the node's valid
  round (up to the current one) updates it, so honest proposers re-propose the newest value
  anyone may be locked on.

Why it is safe. If q nodes precommit v in round r, at least f+1 honest nodes locked (v, r).
A later polka for another value would need one of them to prevote it, which they only do
given a POL newer than r for that value, and (inductively) none can form. Each quorum is
counted over distinct validators: a validator's first vote per (round, step) is the one in
the tally; a different second one is *equivocation*, reported once as an `Equivocation`
(both signed votes: a proof) and never counted. A POL is also checked on its own: q
distinct valid prevote signatures prove the polka even when our tally holds an
equivocator's other vote. That is sound because the safety argument only counts the honest
signers among the q, and it keeps an equivocator from stalling honest nodes.

Timing. Timeouts grow linearly with the round (base + r × increment; `Timeouts.for_layer`
derives them from the layer duration) so that rounds eventually outlast the message delay
while several rounds still fit in one layer. Links may drop messages, so a node that has
made no progress (same round and step) for a RESEND interval re-broadcasts its own messages
of the current and previous round and its valid value's proposal with its POL; a node stuck
in an old lock thus lets the others adopt its value, instead of blocking until its own turn
to propose. The interval doubles while the node stays stuck (1, 2, 4, 4, …) so a stalled
layer does not flood the network. Receivers drop a message identical to one they hold
before any signature check, so a retransmission costs a lookup. A decided node answers any
agreement message of its layer with its DECISION (value + certificate), at most once per
resend interval; any node adopts a DECISION whose certificate verifies — which is how a node
that missed the layer, or restarted, catches up.

Crash recovery. The machine emits `Persist(record)` before the broadcast of every new own
proposal and vote, and when it locks (the locked value's proposal with its POL). A restarted
node passes those records to `restore()` before `start()`, and never signs a vote that
conflicts with one it signed before the crash. Without that log a restarted node may
contradict its earlier votes: it is then a faulty node and counts against f.

Sans-IO contract: no clock, no randomness, no I/O. Inputs are `start()`, `on_message()` and
`on_timeout()`; outputs, to be performed in order, are `Persist`, `Broadcast`,
`ScheduleTimeout` (call `on_timeout(kind, round)` after `delay_ms`; stale ones are ignored,
so timers never need cancelling), `Decided` and `Equivocation`. No floats, no `hash()`, no
dependence on dict iteration order: equal inputs give equal outputs.

Wire encoding (`encode_message` / `decode_message`; integers big-endian; value and
certificate layouts in `devnet.certificate`):

    VOTE      kind u8 (2 prevote, 3 precommit) ‖ layer u64 ‖ round u32 ‖ 0x00 | 0x01 ‖ id [32]
              ‖ voter [32] ‖ signature [64]
    PROPOSAL  0x01 ‖ layer u64 ‖ round u32 ‖ valid_round i32 ‖ proposer [32] ‖ signature [64]
              ‖ value ‖ pol count u16 ‖ VOTE*
    DECISION  0x04 ‖ value ‖ certificate
"""

import enum
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from devnet.certificate import (
    KIND_PRECOMMIT,
    KIND_PREVOTE,
    KIND_PROPOSAL,
    MAX_LAYER,
    MAX_ROUND,
    VALUE_ID_LENGTH,
    Certificate,
    Reader,
    ValidatorSet,
    Value,
    Verifier,
    is_value,
    make_value,
    proposal_signing_bytes,
    read_certificate,
    read_value,
    value_id,
    verify_certificate,
    vote_signing_bytes,
    write_certificate,
    write_value,
)
from devnet.errors import AgreementError, AgreementMessageError, CertificateError
from devnet.keys import PUBLIC_KEY_LENGTH, SIGNATURE_LENGTH, KeyPair, verify

ROUND_WINDOW = 16
"""Messages of rounds beyond current + ROUND_WINDOW only count for round skipping (one int per
sender): a Byzantine validator cannot make a node store votes for arbitrarily many rounds."""

MAX_VALUES_PER_ROUND = 4
"""Distinct proposals remembered per round; more can only come from an equivocating
proposer, and the node still adopts the outcome through a DECISION."""

RESEND_BACKOFF_LIMIT = 2
"""A node stuck in one step resends after 1, 2, 4, 4, … resend intervals: a stalled layer
(more than f down) does not flood the network, and a repaired one waits at most 4."""

MAX_POL = 1024
KIND_DECISION = 4


class Step(enum.IntEnum):
    PROPOSE = 0
    PREVOTE = KIND_PREVOTE
    PRECOMMIT = KIND_PRECOMMIT


class TimeoutKind(enum.IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2
    RESEND = 3


@dataclass(frozen=True, slots=True)
class Vote:
    """A signed PREVOTE or PRECOMMIT; `value_id` None is a vote for nil."""

    step: Step
    layer: int
    round: int
    value_id: bytes | None
    voter: bytes
    signature: bytes

    def signing_bytes(self) -> bytes:
        return vote_signing_bytes(self.step, self.layer, self.round, self.value_id)


@dataclass(frozen=True, slots=True)
class Proposal:
    """A signed PROPOSAL. `pol` (the prevotes justifying `valid_round`) is not signed: it is
    evidence that verifies on its own, so stripping it only delays the proposal."""

    layer: int
    round: int
    value: Value
    valid_round: int
    proposer: bytes
    signature: bytes
    pol: tuple[Vote, ...] = ()

    def signing_bytes(self, vid: bytes) -> bytes:
        return proposal_signing_bytes(self.layer, self.round, vid, self.valid_round)


@dataclass(frozen=True, slots=True)
class Decision:
    """A decided value with its certificate; self-verifying, so anyone may relay it."""

    value: Value
    certificate: Certificate


Message = Proposal | Vote | Decision


@dataclass(frozen=True, slots=True)
class Broadcast:
    message: Message


@dataclass(frozen=True, slots=True)
class Persist:
    """Write `record` durably before performing the outputs after it; see `restore`."""

    record: Message


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    kind: TimeoutKind
    round: int
    delay_ms: int


@dataclass(frozen=True, slots=True)
class Decided:
    value: Value
    certificate: Certificate


@dataclass(frozen=True, slots=True)
class Equivocation:
    """Two different signed messages of one validator for one (round, step): proof of fault."""

    first: Proposal | Vote
    second: Proposal | Vote


Output = Persist | Broadcast | ScheduleTimeout | Decided | Equivocation


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Round timeouts in milliseconds: `base + round × round_increment_ms` for each step."""

    propose_ms: int = 100
    prevote_ms: int = 25
    precommit_ms: int = 25
    round_increment_ms: int = 10
    resend_ms: int = 25

    @classmethod
    def for_layer(cls, layer_ms: int) -> "Timeouts":
        """Defaults for a layer duration L: L/10 to propose, L/40 to collect the other votes
        and to resend, L/20 more per round.

        A failed round costs about L/10 + 2·L/40 + 3·r·L/20 plus message delays, so three
        rounds fit in a layer even when every one of them times out. The increment must
        outgrow the message delays of a loaded machine (several processes sharing two cores
        can stall each other for tens of milliseconds); a layer that needs more rounds
        overruns into the next layer's time rather than stalling.
        """
        if layer_ms < 40:
            raise AgreementError(f"layer duration {layer_ms} ms is too short")
        step = layer_ms // 40
        return cls(layer_ms // 10, step, step, layer_ms // 20, step)

    def delay(self, kind: TimeoutKind, round_: int) -> int:
        if kind is TimeoutKind.RESEND:
            return self.resend_ms
        base = (self.propose_ms, self.prevote_ms, self.precommit_ms)[kind]
        return base + round_ * self.round_increment_ms


def sign_vote(key: KeyPair, step: Step, layer: int, round_: int, vid: bytes | None) -> Vote:
    sig = key.sign(vote_signing_bytes(step, layer, round_, vid))
    return Vote(step, layer, round_, vid, key.public_key, sig)


def sign_proposal(
    key: KeyPair,
    layer: int,
    round_: int,
    value: Value,
    valid_round: int = -1,
    pol: tuple[Vote, ...] = (),
) -> Proposal:
    sig = key.sign(proposal_signing_bytes(layer, round_, value_id(value), valid_round))
    return Proposal(layer, round_, value, valid_round, key.public_key, sig, pol)


# --- wire encoding --------------------------------------------------------------------

_VOTE_HEAD = struct.Struct(">BQIB")
_PROPOSAL_HEAD = struct.Struct(">BQIi")
_U16 = struct.Struct(">H")


def _write_vote(v: Vote) -> bytes:
    has = v.value_id is not None
    head = _VOTE_HEAD.pack(v.step, v.layer, v.round, int(has))
    return head + (v.value_id or b"") + v.voter + v.signature


def _read_vote(r: Reader) -> Vote:
    kind, layer, round_, has = r.unpack(_VOTE_HEAD)
    if kind not in (KIND_PREVOTE, KIND_PRECOMMIT) or has > 1 or round_ > MAX_ROUND:
        raise AgreementMessageError("malformed vote header")
    vid = r.take(VALUE_ID_LENGTH) if has else None
    return Vote(Step(kind), layer, round_, vid, r.take(PUBLIC_KEY_LENGTH), r.take(SIGNATURE_LENGTH))


def encode_message(msg: Message) -> bytes:
    """The message's canonical bytes (layouts in the module docstring)."""
    if isinstance(msg, Vote):
        return _write_vote(msg)
    if isinstance(msg, Proposal):
        head = _PROPOSAL_HEAD.pack(KIND_PROPOSAL, msg.layer, msg.round, msg.valid_round)
        pol = _U16.pack(len(msg.pol)) + b"".join(_write_vote(v) for v in msg.pol)
        return head + msg.proposer + msg.signature + write_value(msg.value) + pol
    return bytes((KIND_DECISION,)) + write_value(msg.value) + write_certificate(msg.certificate)


def decode_message(data: bytes) -> Message:
    """Parse a message; any malformation raises `AgreementMessageError`. Signatures are the
    state machine's business, not the codec's."""
    try:
        r = Reader(bytes(data))
        msg = _read_message(r)
        r.end()
    except CertificateError as exc:
        raise AgreementMessageError(str(exc)) from None
    return msg


def _read_message(r: Reader) -> Message:
    if not r.data:
        raise AgreementMessageError("empty agreement message")
    kind = r.data[0]
    if kind in (KIND_PREVOTE, KIND_PRECOMMIT):
        return _read_vote(r)
    if kind == KIND_PROPOSAL:
        _, layer, round_, valid_round = r.unpack(_PROPOSAL_HEAD)
        if round_ > MAX_ROUND or not -1 <= valid_round < round_:
            raise AgreementMessageError("proposal round or valid round out of range")
        proposer, sig = r.take(PUBLIC_KEY_LENGTH), r.take(SIGNATURE_LENGTH)
        value = read_value(r)
        (count,) = r.unpack(_U16)
        if count > MAX_POL:
            raise AgreementMessageError(f"a proposal carries at most {MAX_POL} POL votes")
        pol = tuple(_read_vote(r) for _ in range(count))
        return Proposal(layer, round_, value, valid_round, proposer, sig, pol)
    if kind == KIND_DECISION:
        r.take(1)
        value = read_value(r)
        return Decision(value, read_certificate(r))
    raise AgreementMessageError(f"unknown agreement message kind {kind}")


# --- the state machine ----------------------------------------------------------------

_NIL = b""  # a nil vote's key in tallies; real value ids are 32 bytes


class Agreement:
    """One layer's agreement at one node. See the module docstring for the protocol.

    `me` need not be a validator: a non-member observes, never signs, and still decides
    from others' votes or a DECISION. `is_valid` is an extra validity rule for proposed
    values (e.g. bundle availability); a node prevotes nil for a value it rejects. A
    rejection is not final — the rule is asked again later, as missing data may arrive, so
    it may be asked often and should be cheap — but an acceptance is. It does not block
    adopting a decided value: a certificate proves honest nodes accepted it.
    """

    def __init__(
        self,
        layer: int,
        me: KeyPair,
        validators: Iterable[bytes] | ValidatorSet,
        proposal: Iterable[bytes] = (),
        *,
        timeouts: Timeouts | None = None,
        is_valid: Callable[[Value], bool] | None = None,
        verifier: Verifier = verify,
    ) -> None:
        if not isinstance(layer, int) or not 0 <= layer <= MAX_LAYER:
            raise AgreementError(f"layer {layer!r} out of range")
        self.layer = layer
        self.validators = (
            validators if isinstance(validators, ValidatorSet) else ValidatorSet(validators)
        )
        self._me = me
        self._member = me.public_key in self.validators
        try:
            self._my_value = make_value(proposal)
        except CertificateError as exc:
            raise AgreementError(str(exc)) from None
        self.timeouts = timeouts or Timeouts()
        self._is_valid_rule = is_valid
        self._verify_fn = verifier
        self._offset = self.validators.proposer_offset(layer)

        self.round = 0
        self.step = Step.PROPOSE
        self.decision: Decision | None = None
        self._started = False
        self._locked_id: bytes | None = None
        self._locked_round = -1
        self._valid_id: bytes | None = None
        self._valid_round = -1

        self._values: dict[bytes, Value] = {}
        self._carrier: dict[bytes, Proposal] = {}  # value id -> a proposal that carried it
        self._validity: set[bytes] = set()  # value ids found valid
        self._proposals: dict[int, Proposal] = {}  # the first proposal of each round
        self._round_values: dict[int, list[bytes]] = {}
        self._votes: dict[tuple[int, Step], dict[bytes, Vote]] = {}
        self._tally: dict[tuple[int, Step], dict[bytes, int]] = {}
        self._polka: dict[int, bytes] = {}  # round -> id (or _NIL) with q prevotes
        self._commit: dict[int, bytes] = {}  # round -> id (or _NIL) with q precommits
        self._pol_proof: dict[int, tuple[Vote, ...]] = {}  # polkas proven by a received POL
        self._max_round_of: dict[bytes, int] = {}
        self._own: dict[tuple[int, int], Proposal | Vote] = {}
        self._lock_done: set[int] = set()
        self._prevote_timer: set[int] = set()
        self._precommit_timer: set[int] = set()
        self._reported: set[tuple[bytes, int, int]] = set()
        self.equivocations: list[Equivocation] = []
        self._resend_pending = False
        self._decision_wanted = False
        self._resend_mark: tuple[int, Step] | None = None
        self._resend_backoff = 0

    # --- inputs ---

    def restore(self, records: Iterable[Message]) -> None:
        """Reload what an earlier run of this node persisted (its `Persist` records).

        Call before `start()`. Own votes and proposals are re-learnt, so the node resumes in
        the round it reached, keeps its lock and never signs anything conflicting.
        """
        if self._started:
            raise AgreementError("restore() must come before start()")
        items = list(records)
        rounds = [m.round for m in items if not isinstance(m, Decision) and m.layer == self.layer]
        self.round = max(rounds, default=0)
        sink: list[Output] = []
        for m in items:
            self._ingest(m, sink)

    def start(self) -> list[Output]:
        """Begin the layer (after any `restore`)."""
        if self._started:
            raise AgreementError("start() called twice")
        self._started = True
        out: list[Output] = []
        if self.decision is not None:
            out.append(Decided(self.decision.value, self.decision.certificate))
            out.append(Broadcast(self.decision))
            return out
        self._enter_round(self.round, out)
        self._advance(out)
        self._schedule_resend(out)
        return out

    def on_message(self, msg: Message) -> list[Output]:
        """A message from the network (already decoded); invalid ones are ignored."""
        out: list[Output] = []
        if self.decision is not None:
            self._answer_with_decision(msg, out)
            return out
        self._ingest(msg, out)
        self._advance(out)
        return out

    def on_timeout(self, kind: TimeoutKind, round_: int) -> list[Output]:
        out: list[Output] = []
        if not self._started:
            return out
        if kind is TimeoutKind.RESEND:
            self._on_resend(out)
            return out
        if self.decision is not None or round_ != self.round:
            return out
        if kind is TimeoutKind.PROPOSE and self.step is Step.PROPOSE:
            self._cast(Step.PREVOTE, None, out)
        elif kind is TimeoutKind.PREVOTE and self.step is Step.PREVOTE:
            self._cast(Step.PRECOMMIT, None, out)
        elif kind is TimeoutKind.PRECOMMIT:
            self._enter_round(self.round + 1, out)
        self._advance(out)
        return out

    # --- queries ---

    @property
    def locked(self) -> tuple[bytes | None, int]:
        """(locked value id, locked round); (None, −1) when unlocked."""
        return self._locked_id, self._locked_round

    def proposer(self, round_: int) -> bytes:
        return self.validators.keys[(self._offset + round_) % self.validators.n]

    # --- ingestion: store what verifies, count each voter once ---

    def _ingest(self, msg: Message, out: list[Output]) -> None:
        if isinstance(msg, Vote):
            self._on_vote(msg, out)
        elif isinstance(msg, Proposal):
            self._on_proposal(msg, out)
        elif isinstance(msg, Decision):
            self._on_decision(msg, out)

    def _on_vote(self, v: Vote, out: list[Output]) -> None:
        if v.layer != self.layer or v.voter not in self.validators:
            return
        if not 0 <= v.round <= MAX_ROUND:
            return
        if v.step not in (Step.PREVOTE, Step.PRECOMMIT):
            return
        box = self._votes.get((v.round, v.step))
        prev = box.get(v.voter) if box is not None else None
        if prev is not None:
            if prev.value_id != v.value_id and self._verify_vote(v):
                self._report(prev, v, out)
            return
        if not self._verify_vote(v):
            return
        self._saw_round(v.voter, v.round)
        if v.round > self.round + ROUND_WINDOW:
            return
        self._store_vote(v)
        if v.voter == self._me.public_key:
            self._adopt_own(v)

    def _verify_vote(self, v: Vote) -> bool:
        if v.value_id is not None and len(v.value_id) != VALUE_ID_LENGTH:
            return False
        return self._verify_fn(v.voter, v.signing_bytes(), v.signature)

    def _store_vote(self, v: Vote) -> None:
        key = (v.round, v.step)
        self._votes.setdefault(key, {})[v.voter] = v
        tally = self._tally.setdefault(key, {})
        vid = v.value_id if v.value_id is not None else _NIL
        count = tally.get(vid, 0) + 1
        tally[vid] = count
        if count == self.validators.quorum:
            (self._polka if v.step is Step.PREVOTE else self._commit)[v.round] = vid

    def _adopt_own(self, v: Vote) -> None:
        """A vote signed with our key (from our log, or echoed back to an amnesiac node):
        we did sign it, so act as if we had just cast it and never sign a conflicting one."""
        self._own.setdefault((v.round, v.step), v)
        if v.step is Step.PRECOMMIT and v.value_id is not None and v.round > self._locked_round:
            self._locked_id, self._locked_round = v.value_id, v.round
        if v.round == self.round and v.step > self.step:
            self.step = v.step

    def _on_proposal(self, p: Proposal, out: list[Output]) -> None:
        if p.layer != self.layer or not 0 <= p.round <= MAX_ROUND:
            return
        if p.proposer != self.proposer(p.round) or not is_value(p.value):
            return
        if not -1 <= p.valid_round < p.round:
            return
        vid = value_id(p.value)
        first = self._proposals.get(p.round)
        if first is not None and first.value == p.value and first.valid_round == p.valid_round:
            self._ingest_pol(p, vid, out)  # a retransmission; its POL may help a late node
            return
        if not self._verify_fn(p.proposer, p.signing_bytes(vid), p.signature):
            return
        self._saw_round(p.proposer, p.round)
        if p.round > self.round + ROUND_WINDOW:
            return
        if first is None:
            self._proposals[p.round] = p
            if p.proposer == self._me.public_key:
                self._own.setdefault((p.round, KIND_PROPOSAL), p)
        else:
            self._report(first, p, out)
        seen = self._round_values.setdefault(p.round, [])
        if vid not in seen and len(seen) < MAX_VALUES_PER_ROUND:
            seen.append(vid)
            self._learn_value(vid, p.value, p)
        self._ingest_pol(p, vid, out)

    def _ingest_pol(self, p: Proposal, vid: bytes, out: list[Output]) -> None:
        """A POL counts twice over: each vote as an ordinary vote, and the set as standalone
        proof of a polka for (valid_round, value). The second matters when an equivocator
        signed one of its votes: our own tally may hold that validator's other vote, but q
        distinct valid signatures prove the polka all the same (safety only ever relies on
        the honest signers among them)."""
        n = self.validators.n
        for v in p.pol[:n]:
            self._on_vote(v, out)
        vr = p.valid_round
        if vr < 0 or vr in self._polka or vr > self.round + ROUND_WINDOW:
            return
        stored = self._votes.get((vr, Step.PREVOTE), {})
        proof: dict[bytes, Vote] = {}
        for v in p.pol[:n]:
            if v.step is not Step.PREVOTE or v.layer != self.layer or v.round != vr:
                continue
            if v.value_id != vid or v.voter not in self.validators or v.voter in proof:
                continue
            known = stored.get(v.voter)
            if known is not None and known.value_id == vid:
                proof[v.voter] = known  # verified when it was stored
            elif self._verify_vote(v):
                proof[v.voter] = v
        if len(proof) >= self.validators.quorum:
            self._polka[vr] = vid
            self._pol_proof[vr] = tuple(proof[k] for k in sorted(proof))

    def _learn_value(self, vid: bytes, value: Value, carrier: Proposal | None) -> None:
        if vid not in self._values:
            self._values[vid] = value
        if carrier is not None and vid not in self._carrier:
            self._carrier[vid] = carrier

    def _on_decision(self, d: Decision, out: list[Output]) -> None:
        cert = d.certificate
        if self.decision is not None or cert.layer != self.layer:
            return
        if not verify_certificate(cert, self.validators, value=d.value, verifier=self._verify_fn):
            return
        self._learn_value(cert.value_id, d.value, None)
        self._decide(d.value, cert, out)

    def _saw_round(self, sender: bytes, round_: int) -> None:
        if round_ > self._max_round_of.get(sender, -1):
            self._max_round_of[sender] = round_

    def _report(self, first: Proposal | Vote, second: Proposal | Vote, out: list[Output]) -> None:
        if isinstance(first, Vote):
            key = (first.voter, first.round, int(first.step))
        else:
            key = (first.proposer, first.round, KIND_PROPOSAL)
        if key in self._reported:
            return
        self._reported.add(key)
        evidence = Equivocation(first, second)
        self.equivocations.append(evidence)
        out.append(evidence)

    # --- the rules ---

    def _advance(self, out: list[Output]) -> None:
        """Apply every rule whose condition holds, until none does (a fixpoint)."""
        if not self._started:
            return
        q = self.validators.quorum
        while self.decision is None:
            if self._try_decide(out):
                return
            target = self._skip_target()
            if target > self.round:
                self._enter_round(target, out)
                continue
            r = self.round
            if self._member and self.step is Step.PROPOSE and self._try_prevote(out):
                continue
            polka = self._polka.get(r)
            if (
                polka
                and self.step is not Step.PROPOSE
                and r not in self._lock_done
                and self._valid_known(polka)
            ):
                self._lock_done.add(r)
                if self._member and self.step is Step.PREVOTE:
                    self._lock(polka, r, out)
                    self._cast(Step.PRECOMMIT, polka, out)
                self._valid_id, self._valid_round = polka, r
                continue
            if self._member and self.step is Step.PREVOTE and polka == _NIL:
                self._cast(Step.PRECOMMIT, None, out)
                continue
            if self._member and self.step is Step.PREVOTE and r not in self._prevote_timer:
                if self._count(r, Step.PREVOTE) >= q:
                    self._prevote_timer.add(r)
                    self._schedule(TimeoutKind.PREVOTE, r, out)
            if self._member and r not in self._precommit_timer:
                if self._count(r, Step.PRECOMMIT) >= q:
                    self._precommit_timer.add(r)
                    self._schedule(TimeoutKind.PRECOMMIT, r, out)
            if self._commit.get(r) == _NIL:
                self._enter_round(r + 1, out)
                continue
            self._update_valid()
            return

    def _try_decide(self, out: list[Output]) -> bool:
        for r in sorted(self._commit):
            vid = self._commit[r]
            if vid != _NIL and vid in self._values:
                self._decide(self._values[vid], self._certificate(r, vid), out)
                return True
        return False

    def _skip_target(self) -> int:
        f = self.validators.f
        if len(self._max_round_of) <= f:
            return -1
        return sorted(self._max_round_of.values(), reverse=True)[f]

    def _try_prevote(self, out: list[Output]) -> bool:
        r = self.round
        p = self._proposals.get(r)
        if p is None:
            return False
        vid = value_id(p.value)
        vr = p.valid_round
        if vr >= 0 and self._polka.get(vr) != vid:
            return False  # wait for the POL's prevotes (or the PROPOSE timeout)
        unlocked = self._locked_round <= vr or self._locked_id == vid
        self._cast(Step.PREVOTE, vid if unlocked and self._valid(vid) else None, out)
        return True

    def _update_valid(self) -> None:
        for r in sorted(self._polka, reverse=True):
            if r <= self._valid_round:
                return
            vid = self._polka[r]
            if r <= self.round and vid != _NIL and self._valid_known(vid):
                self._valid_id, self._valid_round = vid, r
                return

    def _lock(self, vid: bytes, r: int, out: list[Output]) -> None:
        self._locked_id, self._locked_round = vid, r
        carrier = self._carrier.get(vid)
        if carrier is not None:  # persisted so a restart can re-propose the locked value
            out.append(Persist(replace(carrier, pol=self._pol(r, vid))))

    # --- actions ---

    def _enter_round(self, r: int, out: list[Output]) -> None:
        self.round = r
        step = Step.PROPOSE
        for s in (Step.PREVOTE, Step.PRECOMMIT):
            if (r, s) in self._own:
                step = s
        self.step = step
        if not self._member:
            return
        if self.proposer(r) == self._me.public_key:
            own = self._own.get((r, KIND_PROPOSAL))
            if own is not None:
                out.append(Broadcast(own))
                return
            self._propose(r, out)
        elif step is Step.PROPOSE:
            self._schedule(TimeoutKind.PROPOSE, r, out)

    def _propose(self, r: int, out: list[Output]) -> None:
        valid = self._valid_id
        if valid is not None and self._valid_round < r and valid in self._values:
            vr = self._valid_round
            p = sign_proposal(
                self._me, self.layer, r, self._values[valid], vr, self._pol(vr, valid)
            )
        else:
            p = sign_proposal(self._me, self.layer, r, self._my_value)
        vid = value_id(p.value)
        self._proposals.setdefault(r, p)
        self._own[(r, KIND_PROPOSAL)] = p
        self._round_values.setdefault(r, []).append(vid)
        self._learn_value(vid, p.value, p)
        self._saw_round(self._me.public_key, r)
        out.append(Persist(p))
        out.append(Broadcast(p))

    def _cast(self, step: Step, vid: bytes | None, out: list[Output]) -> None:
        """Sign and send our vote for (round, step), unless we already signed one."""
        r = self.round
        if step > self.step:
            self.step = step
        if (r, step) in self._own:
            return
        vote = sign_vote(self._me, step, self.layer, r, vid)
        self._own[(r, step)] = vote
        self._saw_round(self._me.public_key, r)
        box = self._votes.get((r, step))
        if box is None or vote.voter not in box:
            self._store_vote(vote)
        out.append(Persist(vote))
        out.append(Broadcast(vote))

    def _decide(self, value: Value, cert: Certificate, out: list[Output]) -> None:
        self.decision = Decision(value, cert)
        out.append(Persist(self.decision))
        out.append(Decided(value, cert))
        if self._started:
            out.append(Broadcast(self.decision))

    def _answer_with_decision(self, msg: Message, out: list[Output]) -> None:
        """A peer still voting on our layer: send it the decision, at most once per resend
        interval (requests in between are batched into the next RESEND)."""
        if isinstance(msg, Decision) or msg.layer != self.layer:
            return
        sender = msg.voter if isinstance(msg, Vote) else msg.proposer
        if sender not in self.validators or sender == self._me.public_key:
            return
        if self._resend_pending:
            self._decision_wanted = True
            return
        assert self.decision is not None
        out.append(Broadcast(self.decision))
        self._schedule_resend(out)

    def _on_resend(self, out: list[Output]) -> None:
        self._resend_pending = False
        if self.decision is not None:
            if self._decision_wanted:
                self._decision_wanted = False
                out.append(Broadcast(self.decision))
                self._schedule_resend(out)
            return
        mark = (self.round, self.step)
        if mark != self._resend_mark:  # progress since the last tick: nothing to repair yet
            self._resend_mark = mark
            self._resend_backoff = 0
            self._schedule_resend(out)
            return
        self._resend_backoff = min(self._resend_backoff + 1, RESEND_BACKOFF_LIMIT)
        for r in (self.round - 1, self.round):
            for kind in (KIND_PROPOSAL, KIND_PREVOTE, KIND_PRECOMMIT):
                own = self._own.get((r, kind))
                if own is not None:
                    out.append(Broadcast(own))
        evidence = self._valid_evidence()
        if evidence is not None:
            out.append(Broadcast(evidence))
        self._schedule_resend(out)

    def _valid_evidence(self) -> Proposal | None:
        """Our valid value's proposal with the q prevotes of its valid round.

        A node locked in an old round rejects every newer proposal of another value, and the
        prevotes that justify its lock were sent rounds ago, perhaps lost. Spreading the
        evidence lets every honest node adopt that value as its valid value, so the next
        honest proposer re-proposes it with a POL the locked node accepts. Without this, the
        layer waits for the locked node's own turn to propose.
        """
        vid = self._valid_id
        if vid is None or self._valid_round < 0:
            return None
        carrier = self._carrier.get(vid)
        if carrier is None:
            return None
        return replace(carrier, pol=self._pol(self._valid_round, vid))

    def _schedule_resend(self, out: list[Output]) -> None:
        self._resend_pending = True
        delay = self.timeouts.resend_ms << self._resend_backoff
        out.append(ScheduleTimeout(TimeoutKind.RESEND, self.round, delay))

    def _schedule(self, kind: TimeoutKind, r: int, out: list[Output]) -> None:
        out.append(ScheduleTimeout(kind, r, self.timeouts.delay(kind, r)))

    # --- helpers ---

    def _count(self, r: int, step: Step) -> int:
        box = self._votes.get((r, step))
        return len(box) if box is not None else 0

    def _valid(self, vid: bytes) -> bool:
        """Is the (known) value valid? A yes is final and cached; a no is asked again next
        time, since data a rule depends on (a block, a bundle) may arrive later."""
        if vid in self._validity:
            return True
        rule = self._is_valid_rule
        if rule is None or rule(self._values[vid]):
            self._validity.add(vid)
            return True
        return False

    def _valid_known(self, vid: bytes) -> bool:
        return vid in self._values and self._valid(vid)

    def _pol(self, r: int, vid: bytes) -> tuple[Vote, ...]:
        """q prevotes for (r, vid), lowest keys first: the proof that r's valid value is v."""
        q = self.validators.quorum
        box = self._votes.get((r, Step.PREVOTE), {})
        votes = sorted((v for v in box.values() if v.value_id == vid), key=lambda v: v.voter)
        if len(votes) < q:
            proof = self._pol_proof.get(r, ())
            if proof and proof[0].value_id == vid:
                return proof[:q]
        return tuple(votes[:q])

    def _certificate(self, r: int, vid: bytes) -> Certificate:
        box = self._votes.get((r, Step.PRECOMMIT), {})
        votes = sorted((v for v in box.values() if v.value_id == vid), key=lambda v: v.voter)
        sigs = tuple((v.voter, v.signature) for v in votes[: self.validators.quorum])
        return Certificate(self.layer, r, vid, sigs)
