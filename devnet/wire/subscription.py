"""Server-side subscriptions: a bounded queue per subscriber, and a fan-out topic.

`EventSink.publish` never blocks and never fails loudly: a node publishing a block must not
wait for, or be broken by, the slowest client. When a subscriber's queue is full it is
dropped on the spot with a reason (the client gets a final `{sub, error}`), and its handler
is cancelled; the publisher only sees `False` and can forget the sink.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio

from devnet.wire.codes import ErrorCode


class EventSink:
    """Where a subscription handler sends events; one per subscriber.

    A handler streams with `publish`, or attaches the sink to a `Topic` and waits. The
    subscription lasts while the handler runs: when it returns, the queued events are sent
    and then `{sub, end: true}`; when it raises, `{sub, error}`.
    """

    def __init__(self, sub_id: int, queue_size: int) -> None:
        self.sub_id = sub_id
        self.queue_size = queue_size
        self._send, self.receive = trio.open_memory_channel[Any](queue_size)
        self.handler_scope = trio.CancelScope()  # cancelled when the subscriber goes away
        self.error: tuple[int, str] | None = None  # why the subscription ended, if it failed
        self._finished = False
        self.discard = False  # whether queued events are thrown away on `fail`

    @property
    def closed(self) -> bool:
        """True once no more events will be delivered (ended, dropped, unsubscribed)."""
        return self._finished

    def publish(self, event: Any) -> bool:
        """Queue an event without waiting. False if the sink is closed or was just dropped."""
        if self.closed:
            return False
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.fail(
                ErrorCode.SUBSCRIPTION_DROPPED,
                f"subscriber too slow: {self.queue_size} events queued",
            )
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    def fail(self, code: int, message: str, *, discard: bool = True) -> None:
        """End with an error: the client gets `{sub, error}` after the queued events, or
        instead of them with `discard` (a dropped subscriber must not be waited for)."""
        if self.error is None:
            self.error = (int(code), message)
            self.discard = discard
        self._finished = True
        self._send.close()
        self.handler_scope.cancel()

    def finish(self) -> None:
        """End normally: queued events are still delivered, then `{sub, end: true}`."""
        self._finished = True
        self._send.close()


class Topic:
    """Fan-out of one event stream (e.g. certified blocks) to many subscribers' sinks."""

    def __init__(self) -> None:
        self._sinks: set[EventSink] = set()

    def __len__(self) -> int:
        return len(self._sinks)

    def publish(self, event: Any) -> int:
        """Offer the event to every subscriber; dropped or closed ones are detached.

        Returns how many subscribers took it.
        """
        delivered = 0
        for sink in list(self._sinks):
            if sink.publish(event):
                delivered += 1
            else:
                self._sinks.discard(sink)
        return delivered

    @contextmanager
    def attached(self, sink: EventSink) -> Iterator[None]:
        self._sinks.add(sink)
        try:
            yield
        finally:
            self._sinks.discard(sink)

    async def follow(self, sink: EventSink) -> None:
        """A complete subscription handler body: stream this topic until the client leaves."""
        with self.attached(sink):
            await trio.sleep_forever()
