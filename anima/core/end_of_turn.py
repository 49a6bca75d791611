"""Semantic end of turn: is the user done, judged from the words and the voice at a pause?

The voice activity detector only says *when* the user is silent. Whether the silence ends the turn
depends on what was said ("What time is it?" vs "I was wondering whether ...") and how (a final
pitch fall and fading energy vs a held, level voice). An ``EndOfTurn`` scores that once per pause:

    eot = make_end_of_turn()                      # one model load, shared by sessions
    state = eot.new_state()                       # one per session
    p = eot.complete(state, audio, transcript)    # audio: last <= 8 s, 24 kHz mono float32
    wait = silence_needed_s(p)                    # seconds of silence (since the speech ended) to wait

Two detectors, both measured in benchmarks/end_of_turn.py:

- ``CuesEndOfTurn``: our own small logistic classifier on transcript cues (does it stop on a
  conjunction, preposition, article, filler, "whether" ...) and prosody (final pitch movement from an
  autocorrelation pitch tracker, final energy decay, final lengthening). Numpy only, ~1 ms a call.
- ``SmartTurnEndOfTurn``: pipecat's smart-turn v3.2 (a Whisper-encoder classifier, BSD-2-Clause,
  Copyright (c) 2024-2026 Daily), run with ONNX Runtime on Whisper-style log-mel features computed
  here. The ONNX file ships inside the PyPI wheel ``pipecat-ai``
  (``pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx``); it is found without importing
  pipecat (``pip install --no-deps pipecat-ai`` is enough) or given as a path. It hears audio only.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from anima.core.frames import SAMPLE_RATE

MAX_AUDIO_S = 8.0  # both detectors look at the last 8 s at most

# Silence to wait, as a function of p = P(turn complete): anchors of a monotonic, piecewise-linear
# curve, tuned on the tuning split of benchmarks/end_of_turn.py (frozen test split reported there).
# Today's rule is a flat 0.2 s.
SILENCE_CURVE = ((0.0, 1.2), (0.3, 1.0), (0.6, 0.2), (0.85, 0.08), (1.0, 0.06))


def silence_needed_s(p: float) -> float:
    """Seconds of silence after the end of speech before the turn ends, given ``p`` = P(complete).

    Non-increasing in ``p``: ~0.06-0.08 s when the turn is clearly complete, 0.2 s (today's rule)
    in between, up to 1.2 s when it is clearly unfinished.
    """
    if not isinstance(p, (int, float)) or math.isnan(p):
        raise ValueError(f"silence_needed_s needs a probability, got {p!r}")
    p = min(1.0, max(0.0, float(p)))
    xs, ys = zip(*SILENCE_CURVE, strict=True)
    return float(np.interp(p, xs, ys))


class EndOfTurn(Protocol):
    """Scores, at a pause, the probability that the user's turn is complete."""

    def new_state(self) -> object:
        """Per-session state (the caller owns it)."""
        ...

    def complete(self, state: object, audio: np.ndarray, transcript: str) -> float:
        """P(turn complete) in [0, 1]. audio: # (N,) float32 24 kHz mono, the last <= 8 s ending at the pause."""
        ...


def check_audio(audio: np.ndarray) -> np.ndarray:
    """The last ``MAX_AUDIO_S`` of a valid mono float32 clip; a clear error otherwise."""
    if not isinstance(audio, np.ndarray):
        raise TypeError(f"end of turn: audio must be a numpy array, got {type(audio).__name__}")
    if audio.ndim != 1:
        raise ValueError(f"end of turn: audio must be mono, shape (N,), got shape {audio.shape}")
    if audio.dtype != np.float32:
        raise TypeError(f"end of turn: audio must be float32 at {SAMPLE_RATE} Hz, got {audio.dtype}")
    audio = audio[-int(MAX_AUDIO_S * SAMPLE_RATE):]
    if not np.isfinite(audio).all():
        raise ValueError("end of turn: audio holds NaN or infinite samples")
    return audio


@dataclass
class EndOfTurnState:
    """Per-session record: the scores given so far (for logs and tests)."""

    calls: int = 0
    last_p: float | None = None
    history: list[float] = field(default_factory=list)

    def record(self, p: float) -> float:
        self.calls += 1
        self.last_p = p
        self.history = (self.history + [p])[-16:]
        return p


def _check_state(state: object) -> EndOfTurnState:
    if not isinstance(state, EndOfTurnState):
        raise TypeError(f"end of turn: state must come from new_state(), got {type(state).__name__}")
    return state


def _check_text(transcript: str) -> str:
    if not isinstance(transcript, str):
        raise TypeError(f"end of turn: transcript must be a str ('' when none), got {type(transcript).__name__}")
    return transcript


# ---------------------------------------------------------------- transcript cues

# Words a finished English turn almost never stops on: conjunctions, prepositions, articles and
# determiners, possessives, auxiliaries and modals, complementisers, wh-words, fillers.
UNFINISHED_WORDS = frozenset("""
    and or but so because if when while whether that which who whom whose where than as although though
    unless until since after before then
    the a an this these those my your his her its our their some any every each no another
    of to in on at for from with about into onto over under between through by without like near
    is are was were be been am do does did have has had will would can could should shall may might must
    i you he she we they it me us him them
    um uh er erm hmm ah mm well like
    very really quite more most much many
    what how why
""".split())
# Short whole turns that are complete although they end on a word above ("what?", "me too" ...).
COMPLETE_ENDINGS = frozenset("what? why? how? me you it them us him her too".split()) - UNFINISHED_WORDS


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def text_cues(transcript: str) -> np.ndarray:
    """(known, unfinished_word, short, filler_end): what the transcript's ending says. # (4,)"""
    words = _words(transcript)
    if not words:
        return np.zeros(4)
    last = words[-1]
    filler = last in {"um", "uh", "er", "erm", "hmm", "ah", "mm"}
    return np.array([1.0, float(last in UNFINISHED_WORDS and not (len(words) == 1 and last in {"what", "why", "how"})),
                     float(len(words) <= 2), float(filler)])


# ---------------------------------------------------------------- prosody cues

PROSODY_RATE = 8000  # pitch and energy are read at 8 kHz: plenty for 60-400 Hz voices, 3x cheaper
FRAME = 320  # 40 ms analysis window at 8 kHz
HOP = 80  # 10 ms


def _decimate3(audio: np.ndarray) -> np.ndarray:
    """24 kHz -> 8 kHz: a short low-pass (windowed sinc, cutoff 3.6 kHz) then every third sample."""
    taps = _lowpass_taps()
    return np.convolve(audio.astype(np.float64), taps, mode="same")[::3]


@functools.lru_cache(maxsize=1)
def _lowpass_taps() -> np.ndarray:
    n = np.arange(-24, 25)
    h = np.sinc(2 * 3600 / SAMPLE_RATE * n) * np.hamming(len(n))
    return h / h.sum()


def prosody_cues(audio: np.ndarray) -> np.ndarray:
    """(pitch_end_st, pitch_slope_st, energy_drop_db, last_voiced_s): the voice at the pause. # (4,)

    pitch_end_st: median pitch of the last 150 ms voiced, in semitones from the utterance's median
    (a final fall reads negative). pitch_slope_st: the last 300 ms voiced, semitones per 100 ms.
    energy_drop_db: loudness of the last 150 ms of speech below the utterance's loud frames
    (a fading voice reads large). last_voiced_s: length of the final voiced stretch (lengthening).
    """
    x = _decimate3(audio[-int(3.0 * SAMPLE_RATE):])  # the last 3 s is plenty for the ending
    if len(x) < FRAME + HOP:
        return np.zeros(4)
    frames = np.lib.stride_tricks.sliding_window_view(x, FRAME)[::HOP]  # (F, 320)
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy_db = 10 * np.log10((frames**2).mean(axis=1) + 1e-10)  # (F,)
    loud = np.percentile(energy_db, 90)
    speech = energy_db > loud - 30
    if not speech.any():
        return np.zeros(4)
    last = int(np.nonzero(speech)[0][-1])
    # pitch: normalised autocorrelation over 2.5-16 ms lags (62-400 Hz), via FFT
    spec = np.fft.rfft(frames * np.hanning(FRAME), n=2 * FRAME, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :FRAME]  # (F, 320)
    lo, hi = PROSODY_RATE // 400, PROSODY_RATE // 62
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    strength = ac[np.arange(len(ac)), lag] / (ac[:, 0] + 1e-12)
    voiced = speech & (strength > 0.45) & (energy_db > loud - 20)
    if voiced.sum() < 5:
        return np.array([0.0, 0.0, float(loud - energy_db[max(0, last - 14):last + 1].mean()), 0.0])
    f0_st = 12 * np.log2(PROSODY_RATE / lag)  # semitones re 1 Hz
    idx = np.nonzero(voiced)[0]
    ref = np.median(f0_st[idx])
    tail = idx[idx > idx[-1] - 15]  # last 150 ms voiced
    pitch_end = float(np.median(f0_st[tail]) - ref)
    win = idx[idx > idx[-1] - 30]  # last 300 ms voiced
    slope = float(np.polyfit(win * 0.1, f0_st[win], 1)[0]) if len(win) >= 4 else 0.0  # st per 100 ms
    slope = float(np.clip(slope, -6, 6))  # octave jumps of the tracker must not dominate
    energy_drop = float(loud - energy_db[max(0, last - 14):last + 1].mean())
    run = 0
    for v in voiced[: idx[-1] + 1][::-1]:  # the final voiced stretch
        if not v:
            break
        run += 1
    return np.array([pitch_end, slope, energy_drop, run * HOP / PROSODY_RATE])


def cue_features(audio: np.ndarray, transcript: str) -> np.ndarray:
    """Text cues then prosody cues: the classifier's input. # (8,)"""
    return np.concatenate([text_cues(transcript), prosody_cues(audio)])


# Logistic weights (bias first, then the 8 cues in cue_features' order), fit on the tuning split
# by `python benchmarks/end_of_turn.py --fit` (L2-regularised, text given and text withheld).
CUE_WEIGHTS = np.array([-1.3665, 2.3995, -3.9066, 0.0000, -3.9373, 0.0269, -0.1669, 0.1327, -0.6482])


class CuesEndOfTurn:
    """Our own classifier: transcript ending + prosody, logistic. Numpy only, ~1 ms per call."""

    def __init__(self, weights: np.ndarray | None = None) -> None:
        self.weights = np.asarray(CUE_WEIGHTS if weights is None else weights, dtype=np.float64)
        if self.weights.shape != (9,):
            raise ValueError(f"CuesEndOfTurn needs 9 weights (bias + 8 cues), got shape {self.weights.shape}")

    def new_state(self) -> EndOfTurnState:
        return EndOfTurnState()

    def complete(self, state: object, audio: np.ndarray, transcript: str) -> float:
        state, audio, transcript = _check_state(state), check_audio(audio), _check_text(transcript)
        z = self.weights[0] + self.weights[1:] @ cue_features(audio, transcript)
        return state.record(float(1 / (1 + math.exp(-float(np.clip(z, -30, 30))))))


# ---------------------------------------------------------------- smart-turn v3.2 (pipecat, BSD-2-Clause)

WHISPER_RATE = 16000
N_FFT, WHISPER_HOP, N_MELS = 400, 160, 80
SMART_TURN_FILE = "smart-turn-v3.2-cpu.onnx"


@functools.lru_cache(maxsize=1)
def _slaney_mel_filters() -> np.ndarray:
    """Slaney-scale, area-normalised triangular mel filters, as Whisper uses. # (201, 80)"""

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        linear = 3.0 * f / 200.0
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) * 27.0 / np.log(6.4), linear)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        return np.where(m >= 15.0, 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27.0), 200.0 * m / 3.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(WHISPER_RATE / 2), N_MELS + 2))  # (82,)
    bins = np.linspace(0, WHISPER_RATE / 2, N_FFT // 2 + 1)  # (201,)
    rising = (bins[:, None] - edges[None, :-2]) / np.diff(edges)[None, :-1]
    falling = (edges[None, 2:] - bins[:, None]) / np.diff(edges)[None, 1:]
    tri = np.maximum(0.0, np.minimum(rising, falling))  # (201, 80)
    return tri * (2.0 / (edges[2:] - edges[:-2]))[None, :]


def whisper_log_mel(audio16: np.ndarray, seconds: float = MAX_AUDIO_S) -> np.ndarray:
    """Whisper log-mel features of the last ``seconds`` of 16 kHz audio, left-padded with zeros. # (80, 100*seconds)

    The waveform is normalised to zero mean, unit variance first (smart-turn's feature setting);
    frames are centred (reflect padding), 25 ms Hann window, 10 ms hop; log10 power clipped to 8
    decades below the peak and mapped by (x + 4) / 4.
    """
    n = int(seconds * WHISPER_RATE)
    x = np.asarray(audio16, dtype=np.float32)[-n:]
    x = np.concatenate([np.zeros(n - len(x), np.float32), x])  # (n,) speech ends at the right edge
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::WHISPER_HOP]  # (n/160 + 1, 400)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (F, 201)
    mel = np.log10(np.maximum(power @ _slaney_mel_filters(), 1e-10)).T[:, :-1]  # (80, n/160)
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


def smart_turn_path() -> Path:
    """The smart-turn ONNX file: ``$ANIMA_SMART_TURN_ONNX``, else inside an installed ``pipecat-ai`` (not imported)."""
    if os.environ.get("ANIMA_SMART_TURN_ONNX"):
        path = Path(os.environ["ANIMA_SMART_TURN_ONNX"])
        if not path.is_file():
            raise FileNotFoundError(f"ANIMA_SMART_TURN_ONNX names no file: {path}")
        return path
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("smart-turn needs the model file from PyPI pipecat-ai: pip install --no-deps pipecat-ai "
                          "(or pass SmartTurnEndOfTurn(path=...))")
    path = Path(list(spec.submodule_search_locations)[0]) / "audio" / "turn" / "smart_turn" / "data" / SMART_TURN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"pipecat-ai is installed but has no {SMART_TURN_FILE}: {path}")
    return path


class SmartTurnEndOfTurn:
    """pipecat's smart-turn v3.2 classifier on the audio (the transcript is not used). ~8.7 MB ONNX."""

    def __init__(self, path: str | Path | None = None) -> None:
        import onnxruntime as ort  # lazy: only users of this detector pay for it

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path or smart_turn_path()), sess_options=opts,
                                            providers=["CPUExecutionProvider"])

    def new_state(self) -> EndOfTurnState:
        return EndOfTurnState()

    def complete(self, state: object, audio: np.ndarray, transcript: str) -> float:
        state, audio = _check_state(state), check_audio(audio)
        _check_text(transcript)
        from anima.core.audio import resample

        features = whisper_log_mel(resample(audio, SAMPLE_RATE, WHISPER_RATE))[None]  # (1, 80, 800)
        (prob,) = self.session.run(None, {"input_features": features})
        return state.record(float(np.clip(np.asarray(prob).reshape(-1)[0], 0.0, 1.0)))


def make_end_of_turn(kind: str = "cues") -> EndOfTurn:
    """An end-of-turn detector by name: "cues" (ours, numpy) or "smart-turn" (pipecat's model file)."""
    if kind == "cues":
        return CuesEndOfTurn()
    if kind == "smart-turn":
        return SmartTurnEndOfTurn()
    raise ValueError(f"unknown end-of-turn detector {kind!r}: use 'cues' or 'smart-turn'")
