"""The per-peer outbox of a smesher (`smesher.node.Peer`).

Regression: under CPU load a stuck node's resends (every resend interval, for every
message of its last two rounds) arrived faster than a peer's calls drained, so the outbox
filled with copies; fresh votes waited seconds behind them, every round timed out before
its votes arrived, and a layer took 20+ rounds (34 s of no certified layer after a restart
plus a partition). A copy of a call still queued or in flight must not be queued again.
"""

from typing import Any

import trio

from smesher.node import PEER_QUEUE, Peer, call_key


class _Client:
    sessions = 0


def _peer() -> Peer:
    client: Any = _Client()
    return Peer("peer", client)


def _vote(i: int) -> dict[str, Any]:
    return {"message": i.to_bytes(4, "big"), "block": None}


def test_resends_of_a_queued_call_are_not_queued_again() -> None:
    peer = _peer()
    for _ in range(3 * PEER_QUEUE):  # a stuck node resending the same two votes
        peer.queue("peer_message", _vote(1), None)
        peer.queue("peer_message", _vote(2), None)
    assert [params for _, params, _ in peer.outbox] == [_vote(1), _vote(2)]


def test_a_call_is_queued_again_once_it_is_done() -> None:
    peer = _peer()
    peer.queue("peer_message", _vote(1), None)
    method, params, _ = peer.outbox.popleft()  # sent: in flight, still pending
    peer.queue("peer_message", _vote(1), None)
    assert not peer.outbox
    peer.pending.discard(call_key(method, params))  # the call ended (`_call_peer`)
    peer.queue("peer_message", _vote(1), None)
    assert len(peer.outbox) == 1


def test_a_full_outbox_drops_its_oldest_and_forgets_it() -> None:
    peer = _peer()
    for i in range(PEER_QUEUE + 1):
        peer.queue("peer_message", _vote(i), None)
    assert len(peer.outbox) == PEER_QUEUE
    assert peer.outbox[0][1] == _vote(1)
    peer.queue("peer_message", _vote(0), None)  # dropped before: may be queued again
    assert peer.outbox[-1][1] == _vote(0)


def test_clear_forgets_the_queued_calls() -> None:
    peer = _peer()
    peer.queue("peer_message", _vote(1), None)
    peer.clear()
    assert not peer.outbox and not peer.pending
    peer.queue("peer_message", _vote(1), None)
    assert len(peer.outbox) == 1
    assert isinstance(peer.wake, trio.Event) and peer.wake.is_set()
