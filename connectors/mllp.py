"""MLLP: HL7 v2 over TCP, framed as <VT> message <FS><CR>.

`MllpDecoder` is the framing with no I/O (bytes in, frames out): several
messages in one read, one message over many reads, a frame broken by a new
start block, an oversized frame. `MllpServer` drives it with asyncio: each
connection reads with an idle timeout (a slow or silent client is closed),
hands complete frames to a batcher, and writes the ACKs back in order.

The batcher runs the (synchronous) intake on a worker thread, taking every
frame that has arrived since its last batch: one transaction per batch, and
an ACK per message only after that batch committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .hl7_ack import Envelope, build_ack, envelope_of
from .hl7_intake import Reply
from .hl7_message import APPLICATION_ERROR, Hl7Error, Location, decode

__all__ = ["END", "START", "BrokenFrame", "Frame", "MllpDecoder", "MllpServer", "frame"]

log = logging.getLogger(__name__)

START = b"\x0b"
END = b"\x1c\x0d"
_FS = 0x1C
_CR = 0x0D


def frame(message: bytes | str) -> bytes:
    """One message in an MLLP frame."""
    body = message.encode() if isinstance(message, str) else message
    return START + body + END


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete message."""

    body: bytes


@dataclass(frozen=True, slots=True)
class BrokenFrame:
    """Bytes that began a frame but did not end it; kept, never acknowledged AA."""

    body: bytes
    reason: str


class MllpDecoder:
    """Frames from a byte stream; feed it what each read returns."""

    def __init__(self, max_frame: int = 1 << 20) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._inside = False
        self._skipping = False  # after an oversized frame, until the next start block
        self._starts = 0

    @property
    def starts(self) -> int:
        """How many start blocks have been read: a change means a new frame began."""
        return self._starts

    @property
    def inside(self) -> bool:
        """Whether a frame has begun and not ended."""
        return self._inside

    @property
    def pending(self) -> bytes:
        """The start of an unfinished frame (what a disconnect would cut)."""
        return bytes(self._buffer) if self._inside else b""

    def feed(self, data: bytes) -> list[Frame | BrokenFrame]:
        out: list[Frame | BrokenFrame] = []
        i = 0
        n = len(data)
        while i < n:
            if not self._inside:
                start = data.find(START, i)
                if start < 0:
                    return out  # bytes between frames (keep-alive newlines, noise)
                self._inside, self._skipping = True, False
                self._starts += 1
                self._buffer.clear()
                i = start + 1
                continue
            # Inside a frame: up to the end block, or a new start block that breaks it.
            fs = data.find(b"\x1c", i)
            vt = data.find(START, i)
            if vt >= 0 and (fs < 0 or vt < fs):
                self._take(data[i:vt], out)
                if not self._skipping:  # an oversized frame was reported already
                    out.append(self._broken("a new start block before the end of the frame"))
                i = vt
                self._inside = False
                continue
            if fs < 0:
                self._take(data[i:], out)
                return out
            self._take(data[i:fs], out)
            # <FS><CR> ends the frame; a lone <FS> ends it too (lenient senders). A <CR>
            # still to come in the next read is noise between frames.
            i = fs + 2 if fs + 1 < n and data[fs + 1] == _CR else fs + 1
            if self._skipping:
                self._skipping = False
            else:
                out.append(Frame(bytes(self._buffer)))
            self._buffer.clear()
            self._inside = False
        return out

    def _take(self, chunk: bytes, out: list[Frame | BrokenFrame]) -> None:
        if self._skipping:
            return
        self._buffer += chunk
        if len(self._buffer) > self.max_frame:
            out.append(self._broken(f"a frame over {self.max_frame} bytes"))
            self._skipping = True

    def _broken(self, reason: str) -> BrokenFrame:
        broken = BrokenFrame(bytes(self._buffer[:65536]), reason)
        self._buffer.clear()
        return broken


Handler = Callable[[Sequence[bytes]], list[Reply]]


@dataclass
class _Job:
    body: bytes
    done: asyncio.Future[Reply]


class MllpServer:
    """The asyncio MLLP listener.

    `handle` is the synchronous intake (`Hl7Intake.handle`); `reject` keeps
    what never became a message (a broken or cut frame) with its reason.
    """

    def __init__(
        self,
        handle: Handler,
        reject: Callable[[bytes, str], None],
        clock_now: Callable[[], datetime],
        *,
        idle_timeout: float = 60.0,
        frame_timeout: float = 120.0,
        max_frame: int = 1 << 20,
        max_batch: int = 200,
    ) -> None:
        self.handle = handle
        self.reject = reject
        self.now = clock_now
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        self.max_frame = max_frame
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._server: asyncio.Server | None = None
        self._batcher: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (useful with port 0)."""
        self._queue = asyncio.Queue()
        self._batcher = asyncio.create_task(self._batches(), name="mllp-batcher")
        self._server = await asyncio.start_server(self._connection, host, port)
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        """Stop listening, end open connections, then the batcher."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
        if self._batcher is not None:
            self._batcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._batcher

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        decoder = MllpDecoder(self.max_frame)
        # Reading and answering run apart: frames that arrive while a batch is
        # being committed join the next batch, and ACKs still leave in order.
        replies: asyncio.Queue[asyncio.Future[Reply] | bytes | None] = asyncio.Queue(1000)
        answering = asyncio.create_task(self._answer(replies, writer))
        log.info("mllp.connected")
        clock = asyncio.get_running_loop()
        started: float | None = None  # when the frame being read began
        frame_no = 0  # the decoder's start count when `started` was taken
        try:
            while not answering.done():
                # Silence ends a connection, and so does a frame trickled in too
                # slowly (a client sending a byte now and then is never silent).
                timeout = self.idle_timeout
                if decoder.inside:
                    # A pipelining sender's reads may all end mid-frame: each new
                    # start block restarts the clock, not only a read between frames.
                    if started is None or decoder.starts != frame_no:
                        started, frame_no = clock.time(), decoder.starts
                    timeout = min(timeout, started + self.frame_timeout - clock.time())
                else:
                    started = None
                try:
                    data = await asyncio.wait_for(reader.read(65536), max(timeout, 0.0))
                except TimeoutError:
                    if started is not None and clock.time() >= started + self.frame_timeout:
                        log.info("mllp.frame_timeout")
                        self._keep_cut(
                            decoder, f"a frame took longer than {self.frame_timeout:g} s to arrive"
                        )
                    else:
                        log.info("mllp.idle_timeout")
                        self._keep_cut(
                            decoder, "the client was silent past the idle timeout mid-frame"
                        )
                    break
                if not data:
                    self._keep_cut(decoder, "the client disconnected mid-frame")
                    break
                for item in decoder.feed(data):
                    if isinstance(item, Frame):
                        await replies.put(self._submit(item.body))
                    else:
                        await replies.put(await self._broken(item))
        except (ConnectionError, asyncio.IncompleteReadError):
            log.info("mllp.connection_lost")
            self._keep_cut(decoder, "the connection was lost mid-frame")
        finally:
            if task.cancelling():
                answering.cancel()
            else:
                await replies.put(None)  # answer what was taken, then stop
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await answering
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    @staticmethod
    async def _answer(
        replies: asyncio.Queue[asyncio.Future[Reply] | bytes | None], writer: asyncio.StreamWriter
    ) -> None:
        """Write each reply in the order its message came, as soon as it is known."""
        while (job := await replies.get()) is not None:
            reply = job if isinstance(job, bytes) else (await job).ack.encode()
            if reply:
                writer.write(frame(reply))
            if replies.empty():
                await writer.drain()

    def _submit(self, body: bytes) -> asyncio.Future[Reply]:
        assert self._queue is not None
        done: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(body, done))
        return done

    async def _broken(self, broken: BrokenFrame) -> bytes:
        """Keep a broken frame; NACK it when its MSH can be read (the sender resends)."""
        await asyncio.to_thread(self.reject, broken.body, f"mllp: {broken.reason}")
        text = decode(broken.body)
        envelope = envelope_of(text)
        if not envelope.control_id:
            return b""
        error = Hl7Error(
            Location("MSH"), f"MLLP framing: {broken.reason}", APPLICATION_ERROR, reject=True
        )
        return build_ack(envelope, "AR", self.now(), error).encode()

    def _failure(self, body: bytes) -> Reply:
        """AE for a message the intake failed on: nothing was committed, the sender resends."""
        error = Hl7Error(
            Location("MSH"), "the message could not be processed; resend it", APPLICATION_ERROR
        )
        try:
            envelope = envelope_of(decode(body))
        except Exception:  # noqa: BLE001 - the fallback must answer whatever the body holds
            envelope = Envelope()
        ack = build_ack(envelope, "AE", self.now(), error)
        return Reply(ack, "AE", "failed", None, error)

    def _keep_cut(self, decoder: MllpDecoder, reason: str) -> None:
        cut = decoder.pending
        if cut:
            log.info("mllp.frame_cut")
            try:
                self.reject(cut, f"mllp: {reason}")
            except Exception as exc:  # noqa: BLE001 - the connection boundary: log, never crash the listener
                log.error("mllp.keep_failed", extra={"error": exc.__class__.__name__})

    async def _batches(self) -> None:
        assert self._queue is not None
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < self.max_batch and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            try:
                replies = await self._replies(jobs)
                for job, reply in zip(jobs, replies, strict=True):
                    if not job.done.done():
                        job.done.set_result(reply)
            except Exception as exc:  # noqa: BLE001 - one batch must never end the batcher
                log.error("mllp.batch_lost", extra={"error": exc.__class__.__name__})
                for job in jobs:
                    if not job.done.done():
                        job.done.set_result(self._fallback())

    async def _replies(self, jobs: Sequence[_Job]) -> list[Reply]:
        """The intake's replies; AE for each job when the batch failed (nothing committed)."""
        try:
            replies = await asyncio.to_thread(self.handle, [j.body for j in jobs])
            if len(replies) != len(jobs):
                raise RuntimeError("the intake answered a different number of messages")
            return replies
        except Exception as exc:  # noqa: BLE001 - the batch boundary: fail the batch, keep listening
            log.error("mllp.batch_failed", extra={"error": exc.__class__.__name__})
            return [self._failure(job.body) for job in jobs]

    def _fallback(self) -> Reply:
        """AE built without reading the message: the last answer when all else failed."""
        error = Hl7Error(
            Location("MSH"), "the message could not be processed; resend it", APPLICATION_ERROR
        )
        # The system clock and a default envelope: nothing that may have just failed.
        ack = build_ack(Envelope(), "AE", datetime.now(UTC), error)
        return Reply(ack, "AE", "failed", None, error)
