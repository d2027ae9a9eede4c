"""The executor's state-root claims on the L1, kept until a certified block carries them.

A claim handed to one smesher can be lost: that smesher restarts and forgets its pool, or
it is cut off from its peers and never gossips it, or another transaction of ours took the
claim's nonce (a restarted executor starts again from the L1's nonce while its previous
incarnation's claims are still pooled). `ClaimBook` keeps every claim until the executor
sees it in a certified block, sends the same signed bytes again after RESEND_LAYERS, and
signs it anew with a fresh nonce once its nonce was used by something else. Nonces are
handed out in layer order from the L1's next nonce, so a lost claim never leaves a gap
that holds back the claims after it.

Sans-IO: the executor feeds it applied layers, certified blocks and the L1 nonce, and
sends what `due` returns.
"""

from collections.abc import Callable
from dataclasses import dataclass

from devnet.block import Block
from devnet.execution.layer import LayerRecord
from devnet.l1 import Claim, L1Tx

#: Layers after a send with no certified block carrying the claim before it is sent again.
RESEND_LAYERS = 3
#: Claims kept at most; past it the oldest are given up (the shadow reports them missing).
MAX_PENDING = 512


@dataclass
class Pending:
    record: LayerRecord
    tx: L1Tx | None = None
    #: The L1 layer of the last send (-1: never sent).
    sent_at: int = -1


class ClaimBook:
    def __init__(self, sender: bytes) -> None:
        self.sender = sender
        self.pending: dict[int, Pending] = {}
        self.next_nonce = 0
        #: Claims given up because too many were pending (see MAX_PENDING).
        self.dropped = 0

    def add(self, record: LayerRecord) -> None:
        """A layer was applied: claim it."""
        self.pending.setdefault(record.layer, Pending(record))
        while len(self.pending) > MAX_PENDING:
            del self.pending[min(self.pending)]
            self.dropped += 1

    def carried(self, block: Block) -> list[int]:
        """A certified block: forget our claims it carries; returns their layers."""
        done = []
        for tx in block.l1_txs:
            if tx.sender == self.sender and isinstance(tx.body, Claim):
                if self.pending.pop(tx.body.layer, None) is not None:
                    done.append(tx.body.layer)
        return done

    def due(
        self, l1_layer: int, l1_nonce: int, sign: Callable[[LayerRecord, int], L1Tx]
    ) -> list[Pending]:
        """The claims to send now, oldest layer first, signed by `sign(record, nonce)`.

        `l1_nonce` is the sender's next nonce on the L1. A claim is due when it was never
        sent, or RESEND_LAYERS have passed since it was; one whose nonce the L1 has used
        since (but no block we saw carried it) is signed again with a fresh nonce.
        """
        self.next_nonce = max(self.next_nonce, l1_nonce)
        due = []
        for layer in sorted(self.pending):
            claim = self.pending[layer]
            waited = l1_layer - claim.sent_at >= RESEND_LAYERS
            if claim.tx is not None and not waited:
                continue
            if claim.tx is None or claim.tx.nonce < l1_nonce:
                claim.tx = sign(claim.record, self.next_nonce)
                self.next_nonce += 1
            claim.sent_at = l1_layer
            due.append(claim)
        return due
