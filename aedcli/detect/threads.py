"""Threads that let ``aed detect`` decode, score and write at the same time, in bounded memory.

- :class:`FramePrefetcher`: decodes (and prepares) frames ahead of the network into a bounded queue;
- :class:`BackgroundSink`: draws and encodes the overlay video behind the network, through a bounded queue,
  so encoding a second video no longer halves the frame rate;
- :class:`StopRequest`: Ctrl-C as a request to stop cleanly (files completed for the frames done);
- :func:`opencv_single_threaded`: OpenCV's own worker pool switched off while these threads run (for
  pictures up to 720p, where its hand-offs cost more than they save).

Errors in a thread are handed to the caller's thread and raised there.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2

from aedcli.video import DEFAULT_TIMEOUT_S

_END = object()


class FramePrefetcher:
    """Decode frames in a background thread into a bounded queue, so decoding overlaps the network.

    ``frames`` is any iterator (of frames, or of tuples holding them). Iterating yields its items in order
    and re-raises any error of the reader; it ends early once ``stop`` is set (items still queued are
    dropped). :meth:`close` stops the reader (it notices within 0.1 s of finishing its current read) and
    waits for it.

    >>> with FramePrefetcher(video.frames(), maxsize=32) as frames:
    ...     for frame in frames: ...
    """

    def __init__(self, frames: Iterator[Any], maxsize: int = 32, stop: threading.Event | None = None) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, maxsize))
        self._closing = threading.Event()
        self._stop = stop if stop is not None else threading.Event()
        self._frames = frames
        self._thread = threading.Thread(target=self._read, name="aed-frame-reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._closing.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for frame in self._frames:
                if not self._put(frame):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consuming thread, which raises it
            self._put(_Failure(exc))

    def __iter__(self) -> Iterator[Any]:
        while not self._stop.is_set():
            try:
                # A timeout, so a stop request is seen even while a live source sends nothing.
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item

    def close(self, timeout: float = DEFAULT_TIMEOUT_S + 1.0) -> None:
        """Stop the reader thread and wait for it (at most ``timeout`` seconds, for a blocked live read)."""
        self._closing.set()
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:  # unblock a reader waiting on a full queue
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)

    def __enter__(self) -> FramePrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def opencv_single_threaded() -> Iterator[None]:
    """Run OpenCV calls on the calling thread only, for the duration of the block.

    The pipeline already keeps every core busy with its own threads (reader, network, writer); OpenCV's worker
    pool, splitting each small resize or colour conversion across cores, then only adds hand-offs and spinning
    that take CPU time from the network. The previous setting is restored afterwards.
    """
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


class StopRequest:
    """Ctrl-C as a request to stop: the first SIGINT sets :attr:`requested`, a second one aborts at once.

    Outside the main thread (where signal handlers cannot be installed) or when SIGINT is ignored it does
    nothing, and Ctrl-C arrives as :class:`KeyboardInterrupt` as usual.

    >>> with StopRequest() as stop:
    ...     while not stop.requested.is_set(): ...
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt
        self.requested.set()

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:
                self._previous = signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


@dataclass
class _Failure:
    exc: BaseException


class BackgroundSink:
    """Calls ``consume(item)`` for every :meth:`put` item in a background thread, in order.

    At most ``maxsize`` items wait (a producer blocks when the queue is full), so memory stays bounded;
    :meth:`close` waits until every item is consumed and re-raises the first error of ``consume``.

    >>> with BackgroundSink(lambda picture: writer.write(picture), maxsize=16) as sink:
    ...     sink.put(picture)
    """

    def __init__(self, consume: Callable[[Any], None], maxsize: int = 16) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, maxsize))
        self._consume = consume
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="aed-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if self._error is None:
                try:
                    self._consume(item)
                except BaseException as exc:  # raised in the producer's thread at the next put or close
                    self._error = exc

    def put(self, item: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self) -> None:
        """Finish every queued item, stop the thread, and raise the first error of ``consume``."""
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> BackgroundSink:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:  # the caller failed: stop without hiding its error
            self._error = self._error or RuntimeError("stopped")
            if self._thread.is_alive():
                self._queue.put(_END)
                self._thread.join()
