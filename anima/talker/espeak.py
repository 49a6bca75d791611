"""espeak-ng Talker: the embedded default TTS, streaming 24 kHz speech with word and phoneme timings.

espeak-ng is called through its C library (``libespeak-ng.so.1``, Debian package ``espeak-ng``) with
ctypes, in synchronous mode: ``espeak_Synth`` runs on a worker thread and its callback pushes each
audio buffer, with the events espeak reports inside it, into a bounded queue. The generator side
resamples 22050 Hz -> 24 kHz and cuts ~40 ms chunks, so the first chunk is out long before a long
text is fully synthesised. The library keeps global state and is not thread-safe: one module lock
covers initialisation, voice selection and each synthesis, so concurrent utterances run one after
the other.

    from anima.talker.espeak import EspeakTTS
    tts = EspeakTTS(voice="en-us")
    for chunk in tts.stream("Hello there."):
        play(chunk.samples)  # (960,) float32 at 24 kHz; chunk.events carry word/phoneme times
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import logging
import queue
import re
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from anima.core.audio import StreamingResampler
from anima.core.frames import SAMPLE_RATE, SpeechEvent
from anima.talker.base import ChunkCutter, SpeechChunk

logger = logging.getLogger(__name__)

__all__ = ["EspeakTTS"]



# Constants from espeak-ng/speak_lib.h (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of exit() when espeak-ng-data is missing
_POS_CHARACTER = 1
_CHARS_UTF8 = 1  # no espeakSSML / espeakPHONEMES flags: the text is spoken literally
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_SENTENCE, _EVENT_PHONEME = 0, 1, 2, 7
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_RATE_RANGE, _PITCH_RANGE = (80, 450), (0, 100)
_BUFFER_MS = 40  # espeak hands audio back in buffers of about this length

_QUEUE_BUFFERS = 256  # espeak may run ~10 s of audio ahead of the consumer before it blocks
_POLL_S = 0.05  # how often blocked threads re-check cancel/abort
_JOIN_S = 2.0  # how long closing a stream waits for the synthesis thread to let go of espeak

_INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or your system's package manager"


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``: ``text_position`` is 1-based in characters, ``audio_position`` in ms."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    """``espeak_VOICE``, used as a selection spec (``languages``) and to read back the current voice."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))

_LOCK = threading.Lock()  # every call into libespeak-ng happens under this lock
_ENGINE: _Engine | None = None


def _is_punct(c: str) -> bool:
    return unicodedata.category(c).startswith("P")


class _WordAligner:
    """Turns espeak's word events into one event per word of the input text.

    espeak's own word events are lossy: it merges function words ("of the" is one event), reports
    a number twice ("42", then "2"), or part of a word ("don" for "don't"). So the input is split
    into words (whitespace-separated, surrounding punctuation trimmed) and each espeak event marks
    the start of the word containing its position. Words espeak reported no event for get a time
    interpolated by character position between their neighbours; timings stay monotonic.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._spans: list[tuple[int, int]] = []  # (start, end) char span of each word
        for m in re.finditer(r"\S+", text):
            a, b = m.start(), m.end()
            while a < b and _is_punct(text[a]):
                a += 1
            while b > a and _is_punct(text[b - 1]):
                b -= 1
            if a < b:  # a token of only punctuation ("—", "...") is not spoken
                self._spans.append((a, b))
        self._ends = [b for _, b in self._spans]
        self._next = 0  # index of the first word not yet announced
        self._prev = (0.0, 0)  # (time_s, char_start) of the last announced word, for interpolation

    def _emit_until(self, index: int, t: float, char: int) -> list[SpeechEvent]:
        """Announce words ``_next .. index - 1`` spread between the previous word and (t, char)."""
        out = []
        t0, c0 = self._prev
        for a, b in self._spans[self._next : index]:
            frac = (a - c0) / (char - c0) if char > c0 else 0.0
            out.append(SpeechEvent("word", t0 + (t - t0) * min(max(frac, 0.0), 1.0), self._text[a:b], a, b - a))
        self._next = max(self._next, index)
        return out

    def on_word(self, t: float, text_position: int, length: int) -> list[SpeechEvent]:
        """Events for an espeak word event at ``t`` (s); ``text_position`` is 1-based in characters."""
        pos = text_position - 1  # espeak counts code points of the UTF-8 input: a Python str index
        i = bisect.bisect_right(self._ends, pos)  # first word ending after pos
        if length <= 0 or i >= len(self._spans) or self._spans[i][0] > pos or i < self._next:
            return []  # between words (a spoken symbol like "&"), or a word already announced
        a, b = self._spans[i]
        out = self._emit_until(i, t, a)
        out.append(SpeechEvent("word", t, self._text[a:b], a, b - a))
        self._next, self._prev = i + 1, (t, a)
        return out

    def finish(self, t_end: float) -> list[SpeechEvent]:
        """Words after the last espeak word event, spread up to the end of the audio."""
        return self._emit_until(len(self._spans), t_end, len(self._text))


@dataclass
class _Job:
    """One utterance in flight, shared by the synthesis thread (producer) and the generator (consumer).

    Queue items are ``(samples, events)`` with samples ``(n,) int16`` at espeak's rate and events as
    ``SpeechEvent`` (times in seconds from the utterance start); then one ``_DONE`` or an exception.
    """

    text: str  # the cleaned text espeak reads; char positions index it (and the caller's text)
    voice: bytes  # resolved name for espeak_SetVoiceByName
    rate_wpm: int
    pitch: int
    cancel: threading.Event | None
    pitch_range: int = 50  # espeakRANGE; 50 is espeak's default
    abort: threading.Event = field(default_factory=threading.Event)  # the generator was closed
    items: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=_QUEUE_BUFFERS))
    samples_out: int = 0  # espeak samples produced so far

    def __post_init__(self) -> None:
        self.words = _WordAligner(self.text)

    def stopped(self) -> bool:
        return self.abort.is_set() or (self.cancel is not None and self.cancel.is_set())

    def put(self, item: object) -> bool:
        """Queue ``item`` for the consumer, waiting while the queue is full; False once stopped."""
        while True:
            try:
                self.items.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                if self.stopped():
                    return False

    def on_audio(self, wav: ctypes._Pointer, n: int, events: ctypes._Pointer) -> int:
        """espeak's synth callback for this job; returning 1 makes espeak abort the synthesis."""
        if self.stopped():
            return 1
        out: list[SpeechEvent] = []
        i = 0
        while events and events[i].type != _EVENT_LIST_TERMINATED:
            out.extend(self._convert(events[i]))
            i += 1
        samples = np.ctypeslib.as_array(wav, shape=(n,)).copy() if wav and n > 0 else np.zeros(0, np.int16)
        self.samples_out += samples.size
        if (samples.size or out) and not self.put((samples, out)):
            return 1
        return 1 if self.stopped() else 0

    def finish(self, sample_rate: int) -> None:
        """After a complete synthesis: announce the words espeak never reported."""
        tail = self.words.finish(self.samples_out / sample_rate)
        if tail:
            self.put((np.zeros(0, np.int16), tail))

    def _convert(self, e: _Event) -> list[SpeechEvent]:
        t = max(e.audio_position, 0) / 1000.0
        if e.type == _EVENT_WORD:
            return self.words.on_word(t, e.text_position, e.length)
        if e.type == _EVENT_SENTENCE:
            return [SpeechEvent("sentence", t, "", max(e.text_position - 1, 0), 0)]
        if e.type == _EVENT_PHONEME:
            name = bytes(e.id.string).split(b"\0", 1)[0].decode("utf-8", errors="replace")
            return [SpeechEvent("phoneme", t, name)] if name else []
        return []  # clause ends, sample-rate and message events: the stream adds its own "end"


class _Engine:
    """The process-wide libespeak-ng, initialised once. Use only while holding ``_LOCK``."""

    def __init__(self) -> None:
        path = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            raise RuntimeError(f"cannot load the espeak-ng library ({path}): {e}; {_INSTALL_HINT}") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_Voice)]
        lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_Voice)
        lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_Voice)]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]  # fmt: skip
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, None, options)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (espeak-ng-data not found?); {_INSTALL_HINT}")
        self.lib = lib
        self.sample_rate = rate  # 22050 for espeak-ng's own voices
        self.job: _Job | None = None
        self._callback = _SynthCallback(self._on_audio)  # keep a reference: espeak holds only the C pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._resolved: dict[str, bytes] = {}  # requested voice -> name espeak_SetVoiceByName accepts
        self._variants: set[str] | None = None
        logger.debug("espeak-ng initialised at %d Hz", rate)

    def _on_audio(self, wav: ctypes._Pointer, n: int, events: ctypes._Pointer) -> int:
        job = self.job
        if job is None:
            return 1
        try:
            return job.on_audio(wav, n, events)
        except Exception as e:  # an exception must not escape into C: hand it to the consumer
            job.put(e)
            return 1

    def variants(self) -> set[str]:
        """Lower-case names of the voice variants (``+f3``, ``+m3``, ...) this install provides."""
        if self._variants is None:
            spec = _Voice(languages=b"variant")
            listed = self.lib.espeak_ListVoices(ctypes.byref(spec))
            names: set[str] = set()
            i = 0
            while listed and listed[i]:
                v = listed[i].contents
                for s in (v.name, (v.identifier or b"").rsplit(b"/", 1)[-1]):
                    if s:
                        names.add(s.decode("utf-8", errors="replace").lower())
                i += 1
            self._variants = names
        return self._variants

    def known_voice(self, voice: str) -> bytes | None:
        """The resolved name of a voice already checked, or None; safe without the lock."""
        return self._resolved.get(voice)

    def resolve_voice(self, voice: str) -> bytes:
        """Map ``"lang[+variant]"`` to a name espeak_SetVoiceByName accepts, or raise ValueError.

        Some languages (``en-gb``) are found only by language, and selecting by language ignores a
        ``+variant``, so select the language, read back the voice file, and add the variant to it.
        """
        if voice in self._resolved:
            return self._resolved[voice]
        hint = "; list the installed voices with `espeak-ng --voices=en` (or --voices for all)"
        base, _, variant = voice.partition("+")
        if not base or (variant and variant.lower() not in self.variants()):
            raise ValueError(f"unknown espeak-ng voice {voice!r}{hint}")
        name = voice.encode()
        if self.lib.espeak_SetVoiceByName(name) != 0:
            spec = _Voice(languages=base.encode())
            if self.lib.espeak_SetVoiceByProperties(ctypes.byref(spec)) != 0:
                raise ValueError(f"unknown espeak-ng voice {voice!r}{hint}")
            name = self.lib.espeak_GetCurrentVoice().contents.identifier + (b"+" + variant.encode() if variant else b"")
            if self.lib.espeak_SetVoiceByName(name) != 0:
                raise ValueError(f"espeak-ng found a voice for {voice!r} ({name.decode()}) but cannot load it{hint}")
        self._resolved[voice] = name
        return name

    def synthesize(self, job: _Job) -> None:
        """Run one utterance to completion (or abort), feeding ``job`` from the callback."""
        lib = self.lib
        if lib.espeak_SetVoiceByName(job.voice) != 0:
            raise RuntimeError(f"espeak-ng could not select voice {job.voice.decode()!r}")
        # Parameters go after the voice: selecting a voice may reset them.
        lib.espeak_SetParameter(_PARAM_RATE, job.rate_wpm, 0)
        lib.espeak_SetParameter(_PARAM_PITCH, job.pitch, 0)
        lib.espeak_SetParameter(_PARAM_RANGE, job.pitch_range, 0)
        data = job.text.encode("utf-8") + b"\0"
        self.job = job
        try:
            err = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        finally:
            self.job = None
        if job.stopped():
            return
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with error {err}")
        job.finish(self.sample_rate)


def _engine_locked() -> _Engine:
    """The process's espeak engine, initialised on first use. Caller holds ``_LOCK``."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE


def _run_job(job: _Job) -> None:
    """Synthesis-thread body: wait for the engine (giving up if the stream is closed), then synthesise."""
    try:
        while not _LOCK.acquire(timeout=_POLL_S):
            if job.stopped():
                return
        try:
            if not job.stopped():
                _engine_locked().synthesize(job)
        finally:
            _LOCK.release()
    except Exception as e:
        job.put(e)
    finally:
        job.put(_DONE)


class _Done:
    """Queue sentinel: synthesis finished."""


_DONE = _Done()


def _clean_text(text: str) -> str:
    """Replace control characters (and lone surrogates) by spaces, keeping character positions.

    Raises:
        ValueError: the text is empty or only whitespace/control characters.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    clean = "".join(" " if unicodedata.category(c) in ("Cc", "Cs") else c for c in text)
    if not clean.strip():
        raise ValueError(f"cannot speak empty text (got {text[:40]!r})")
    return clean


class EspeakTTS:
    """Streaming espeak-ng TTS at 24 kHz with word, phoneme and sentence events (implements ``TTS``).

    Construction does not touch the library; the first ``stream`` loads and initialises it once per
    process. Text is spoken literally (no SSML, no ``[[phoneme]]`` input).

    Args:
        voice: Default espeak-ng voice, ``lang[+variant]``: ``"en-us"``, ``"en-gb"``, ``"en-us+f3"``.
        rate_wpm: Speaking rate in words per minute (80 to 450).
        pitch: Base pitch, 0 to 100 (50 is the voice's normal pitch).
        pitch_range: Intonation range, 0 (monotone) to 100 (50 is the voice's normal range).
    """

    sample_rate: int = SAMPLE_RATE

    def __init__(self, voice: str = "en-us", rate_wpm: int = 165, pitch: int = 50, pitch_range: int = 50) -> None:
        if not _RATE_RANGE[0] <= rate_wpm <= _RATE_RANGE[1]:
            raise ValueError(f"rate_wpm must be in {_RATE_RANGE[0]}..{_RATE_RANGE[1]}, got {rate_wpm}")
        if not _PITCH_RANGE[0] <= pitch <= _PITCH_RANGE[1]:
            raise ValueError(f"pitch must be in {_PITCH_RANGE[0]}..{_PITCH_RANGE[1]}, got {pitch}")
        if not _PITCH_RANGE[0] <= pitch_range <= _PITCH_RANGE[1]:
            raise ValueError(f"pitch_range must be in {_PITCH_RANGE[0]}..{_PITCH_RANGE[1]}, got {pitch_range}")
        self.voice = voice
        self.rate_wpm = int(rate_wpm)
        self.pitch = int(pitch)
        self.pitch_range = int(pitch_range)

    @staticmethod
    def is_available() -> bool:
        """Whether libespeak-ng can be loaded and initialised in this process (e.g. to skip tests)."""
        if _ENGINE is not None:
            return True
        try:
            with _LOCK:
                _engine_locked()
        except RuntimeError:
            return False
        return True

    def stream(
        self, text: str, *, voice: str | None = None, emotion: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[SpeechChunk]:
        """Synthesise ``text`` and yield it as ~40 ms chunks while espeak is still working.

        Text and voice are checked before this returns; the synthesis starts on the first ``next``.
        Each chunk carries the events timed inside it; the last has ``final=True`` and an "end" event
        at the end of the audio. When ``cancel`` is set, synthesis aborts and the iterator stops
        without a final chunk; closing the iterator early aborts it too.

        Args:
            text: What to say. Control characters are read as spaces; ``char_start`` of word events
                indexes this string.
            voice: espeak-ng voice for this utterance; defaults to the instance's voice.
            emotion: accepted for the ``TTS`` protocol and ignored: this voice keeps one prosody.
            cancel: Set it (from any thread) to stop the utterance.

        Returns:
            An iterator of ``SpeechChunk`` (samples ``(N,)`` float32 at 24 kHz, N = 960 but the last).

        Raises:
            ValueError: the text is empty, or the voice is unknown.
            RuntimeError: libespeak-ng cannot be loaded (install the ``espeak-ng`` package).
        """
        clean = _clean_text(text)
        voice = voice or self.voice
        engine = _ENGINE
        name = engine.known_voice(voice) if engine is not None else None
        if engine is None or name is None:
            # First use of the library or of this voice: needs the engine, so wait for the lock.
            with _LOCK:
                engine = _engine_locked()
                name = engine.resolve_voice(voice)
        job = _Job(clean, name, self.rate_wpm, self.pitch, cancel, self.pitch_range)
        return self._chunks(job, engine.sample_rate)

    def synthesize(self, text: str, voice: str | None = None) -> SpeechChunk:
        """Synthesise a whole utterance into one final chunk (concatenated ``stream``).

        Args:
            text: What to say.
            voice: espeak-ng voice; defaults to the instance's voice.

        Returns:
            One ``SpeechChunk`` at offset 0 with all samples ``(N,)`` float32 and all events.
        """
        chunks = list(self.stream(text, voice=voice))
        samples = np.concatenate([c.samples for c in chunks])
        events = tuple(e for c in chunks for e in c.events)
        return SpeechChunk(samples=samples, offset_s=0.0, events=events, final=True)

    def _chunks(self, job: _Job, src_rate: int) -> Iterator[SpeechChunk]:
        """Consumer side of a job: resample, cut into chunks, and attach the events that fall inside."""
        worker = threading.Thread(target=_run_job, args=(job,), name="espeak-synth", daemon=True)
        worker.start()
        resampler = StreamingResampler(src_rate, self.sample_rate)
        cutter = ChunkCutter(self.sample_rate)

        try:
            while True:
                if job.cancel is not None and job.cancel.is_set():
                    return
                try:
                    item = job.items.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if isinstance(item, BaseException):
                    raise item
                done = item is _DONE
                if done:
                    if job.cancel is not None and job.cancel.is_set():
                        return
                    cutter.add(resampler.flush())
                else:
                    pcm, events = item  # espeak's event times can step back a little between buffers
                    cutter.add(resampler.process(pcm.astype(np.float32) / 32768.0), events)
                yield from cutter.ready()
                if done:
                    yield cutter.final()
                    return
        finally:
            job.abort.set()
            while True:  # unblock a producer waiting on a full queue
                try:
                    job.items.get_nowait()
                except queue.Empty:
                    break
            worker.join(timeout=_JOIN_S)
            if worker.is_alive():
                logger.warning("espeak synthesis thread did not stop within %.1f s", _JOIN_S)
