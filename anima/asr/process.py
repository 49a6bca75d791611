"""A recogniser that decodes in a child process, for the live server.

PocketSphinx's Python binding keeps the GIL while it decodes (``finish`` takes 170-310 ms here,
``accept`` of a 40 ms chunk up to 80 ms), so even from a worker thread it stalls the server's event
loop and every session's clock with it (measured: 95 frames > 100 ms late with one session). This
wrapper runs the real recogniser in one spawned process per server process; sessions talk to it
through queues. ``accept`` never blocks (it sends the audio and returns the newest partial the
child has reported so far: partials lag by a chunk or two), ``finish`` waits for the final
transcript on a queue, which releases the GIL.

    recognizer = ProcessRecognizer("pocketsphinx", world=None)   # starts the child, loads the model
    stream = recognizer.new_stream()                              # one per session
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import queue
import threading
from pathlib import Path

import numpy as np

from anima.asr.base import check_audio

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # loading the model and building the domain (cached on disk after the first time)
FINAL_TIMEOUT_S = 30.0
MAX_SPARE = 4  # closed streams' decoders kept for the next sessions
PARENT_CHECK_S = 0.5  # how often an idle child checks that its server process is still alive


class RecognizerProcessError(RuntimeError):
    """The child process could not start the recogniser, or died."""


def _serve(requests: mp.Queue, responses: mp.Queue, kind: str, character: str | None, world: str | None, adapt: bool) -> None:
    """The child: one recogniser, any number of streams keyed by id."""
    try:
        from anima.asr import load_recognizer

        recognizer = load_recognizer(kind, character=character, world=Path(world) if world else None, adapt=adapt)
    except Exception as exc:  # reported to the parent, which raises it
        responses.put((None, "error", f"{type(exc).__name__}: {exc}"))
        return
    # A decoder costs ~1 s and tens of MB to open (model + language model), so streams get one only
    # when their first audio arrives, and a closed stream's decoder (reset) serves the next one.
    spare = [recognizer.new_stream()]  # one ready, so the first talker does not wait
    responses.put((None, "ready", ""))
    streams: dict = {}

    def decoder(sid: int):
        if streams.get(sid) is None:
            streams[sid] = spare.pop() if spare else recognizer.new_stream()
        return streams[sid]

    parent = mp.parent_process()
    while True:
        try:
            message = requests.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return  # the server process died without closing us (killed): do not linger as an orphan
            continue
        if message is None:
            return
        sid, op, payload = message
        try:
            if op == "open":
                streams[sid] = None
            elif op == "audio":
                partial = decoder(sid).accept(payload)
                if partial:
                    responses.put((sid, "partial", partial))
            elif op == "finish":
                responses.put((sid, "final", decoder(sid).finish() if streams.get(sid) is not None else ""))
            elif op == "close":
                stream = streams.pop(sid, None)
                if stream is not None and len(spare) < MAX_SPARE:
                    stream.finish()  # ends any utterance in progress: the next session starts clean
                    spare.append(stream)
        except Exception as exc:  # one stream's failure is that stream's, not the process's
            responses.put((sid, "error", f"{type(exc).__name__}: {exc}"))


class ProcessRecognizer:
    """``Recognizer`` whose streams decode in a child process (see the module docstring)."""

    def __init__(self, kind: str = "pocketsphinx", character: str | None = None, world: str | Path | None = None,
                 adapt: bool = True) -> None:
        ctx = mp.get_context("spawn")
        self._requests: mp.Queue = ctx.Queue()
        self._responses: mp.Queue = ctx.Queue()
        self._process = ctx.Process(target=_serve, name="anima-asr", daemon=True,
                                    args=(self._requests, self._responses, kind, character, str(world) if world else None, adapt))
        self._process.start()
        try:
            sid, kind_, text = self._responses.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            self.close()
            raise RecognizerProcessError(f"the speech recogniser process did not start within {START_TIMEOUT_S:.0f} s") from None
        if kind_ != "ready":
            self.close()
            raise RecognizerProcessError(f"the speech recogniser could not start: {text}")
        self._inboxes: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._reader = threading.Thread(target=self._read, name="anima-asr-reader", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _read(self) -> None:
        """Route the child's answers to the stream they belong to."""
        while True:
            try:
                sid, kind, text = self._responses.get()
            except Exception:  # the queue is gone (closed, or the interpreter is shutting down)
                return
            if sid is None and kind == "closed":
                return
            with self._lock:
                inbox = self._inboxes.get(sid)
            if inbox is not None:
                inbox.put((kind, text))

    def _send(self, message: tuple) -> None:
        if not self._process.is_alive():
            raise RecognizerProcessError(f"the speech recogniser process has exited (code {self._process.exitcode})")
        self._requests.put(message)

    def new_stream(self) -> _ProcessStream:
        sid = next(self._ids)
        inbox: queue.Queue = queue.Queue()
        with self._lock:
            self._inboxes[sid] = inbox
        self._send((sid, "open", None))
        return _ProcessStream(self, sid, inbox)

    def _close_stream(self, sid: int) -> None:
        with self._lock:
            self._inboxes.pop(sid, None)
        if self._process.is_alive():
            self._requests.put((sid, "close", None))

    def close(self) -> None:
        """Stop the child (streams then fail with RecognizerProcessError)."""
        if self._process.is_alive():
            self._requests.put(None)
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
        self._responses.put((None, "closed", ""))


class _ProcessStream:
    """One session's stream, decoded in the recogniser's child process."""

    def __init__(self, owner: ProcessRecognizer, sid: int, inbox: queue.Queue) -> None:
        self._owner, self._sid, self._inbox = owner, sid, inbox

    def _drain(self) -> tuple[str | None, list[tuple[str, str]]]:
        partial, rest = None, []
        while True:
            try:
                kind, text = self._inbox.get_nowait()
            except queue.Empty:
                return partial, rest
            if kind == "partial":
                partial = text
            else:
                rest.append((kind, text))

    def accept(self, samples: np.ndarray) -> str | None:
        """Send the samples; the newest partial reported so far (None if none is new). Never blocks."""
        self._owner._send((self._sid, "audio", check_audio(samples, "recogniser audio").copy()))
        partial, rest = self._drain()
        for kind, text in rest:
            if kind == "error":
                raise RecognizerProcessError(f"speech recognition failed: {text}")
        return partial

    def finish(self) -> str:
        """The final transcript (waits for the child; the GIL is free meanwhile)."""
        self._owner._send((self._sid, "finish", None))
        while True:
            try:
                kind, text = self._inbox.get(timeout=FINAL_TIMEOUT_S)
            except queue.Empty:
                raise RecognizerProcessError(f"no final transcript within {FINAL_TIMEOUT_S:.0f} s") from None
            if kind == "final":
                return text
            if kind == "error":
                raise RecognizerProcessError(f"speech recognition failed: {text}")

    def close(self) -> None:
        self._owner._close_stream(self._sid)

    def __del__(self) -> None:
        try:
            self._owner._close_stream(self._sid)
        except Exception:  # interpreter shutdown: the child goes with the parent
            pass
