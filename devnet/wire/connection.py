"""One framed connection: a reader and a single writer task fed by a bounded outbox.

Every outgoing frame goes through one writer task instead of a lock around `send_all`,
because a task cancelled in the middle of `send_all` (a timed-out call, an unsubscribed
stream) would leave half a frame on the wire and desynchronise the peer. Here a sender is
only ever cancelled while waiting for outbox space, when nothing has been written. A frame
that cannot be written within `write_timeout` means the peer stopped reading: the
connection is aborted rather than left to hold memory forever.
"""

from typing import Any

import trio

from devnet.errors import ConnectionClosed
from devnet.wire.frame import DEFAULT_LIMITS, FrameLimits, FrameReader, encode_frame


class FrameConnection:
    """Frames in, frames out, over one trio stream. Run `run_writer` in a nursery."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        limits: FrameLimits = DEFAULT_LIMITS,
        *,
        outbox_frames: int = 16,
        write_timeout: float = 30.0,
        frame_timeout: float = 30.0,
    ) -> None:
        self.stream = stream
        self.limits = limits
        self._reader = FrameReader(stream, limits, frame_timeout)
        self._write_timeout = write_timeout
        self._out_send, self._out_receive = trio.open_memory_channel[bytes](outbox_frames)
        self.closed = trio.Event()  # set once the stream is closed, for whatever reason
        self.close_reason = "closed"

    async def receive(self) -> dict[str, Any] | None:
        """The next message; None once the peer or this side closed the connection.

        Raises FrameError when the peer sent something that is not a valid frame.
        """
        try:
            return await self._reader.read()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None

    def encode(self, message: dict[str, Any]) -> bytes:
        """Encode with this connection's limits (raises FrameError if it cannot be sent)."""
        return encode_frame(message, self.limits)

    async def send(self, message: dict[str, Any]) -> None:
        """Queue a message; waits while the outbox is full. Raises FrameError, ConnectionClosed."""
        await self.send_encoded(self.encode(message))

    async def send_encoded(self, frame: bytes) -> None:
        try:
            await self._out_send.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionClosed(self.close_reason) from None

    def send_nowait(self, message: dict[str, Any]) -> bool:
        """Queue a message if there is room right now; False if it was not queued."""
        try:
            self._out_send.send_nowait(self.encode(message))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def finish(self) -> None:
        """No more frames will be queued: the writer sends what is queued, then closes."""
        self._out_send.close()

    async def run_writer(self) -> None:
        """Write queued frames in order until `finish` (or the stream breaks), then close."""
        try:
            async with self._out_receive:
                async for frame in self._out_receive:
                    with trio.move_on_after(self._write_timeout) as scope:
                        await self.stream.send_all(frame)
                    if scope.cancelled_caught:
                        self.close_reason = f"peer did not read for {self._write_timeout:g} s"
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.close_reason = "connection lost"
        finally:
            await self.abort()

    async def abort(self) -> None:
        """Close the stream now; pending readers see end of stream, senders ConnectionClosed."""
        self._out_send.close()
        if not self.closed.is_set():
            self.closed.set()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)
