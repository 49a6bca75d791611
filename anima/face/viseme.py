"""Phoneme timings to a coarticulated speaking mouth: the viseme table and ``VisemeTrack``.

The Talker reports espeak-ng phoneme mnemonics with media times. Each phoneme maps to one viseme
class (or two/three for diphthongs), and each viseme is a target set of ARKit mouth weights. The
targets are blended over time with Cohen-Massaro dominance functions: every segment has a
per-channel dominance that is full over the middle of the segment and decays exponentially
outside it - faster after the segment (carry-over) than before it (anticipation), so the lips
start moving toward a sound 60-100 ms before it is heard. Bilabials (m b p) and labiodentals (f v)
carry a high lip and jaw dominance, which is what makes m/b/p close the lips even between open
vowels.

A speech gate multiplies the blend: it opens 80 ms before the first phoneme of a run of speech and
closes over 100 ms after its last one, so without scheduled speech the mouth is exactly at rest
(all weights zero) and an interruption (``cut``) relaxes the mouth within 100 ms.

Everything here is a pure function of the phoneme timeline; ``values_at`` is vectorised over time.
A quick look::

    python -c "from anima.face.viseme import phoneme_visemes; print(phoneme_visemes(\"h@l'oU\"))"
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from anima.core.frames.audio import SpeechEvent
from anima.easing import smoothstep

# ---------------------------------------------------------------------------------------------
# Channels and viseme targets

# The ARKit weights the speaking mouth drives (jawOpen is a 0..1 weight; the face converts it to
# the jaw angle with params.JAW_OPEN_MAX_RAD).
CHANNELS: tuple[str, ...] = (
    "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthRollLower", "mouthRollUpper", "mouthPressLeft", "mouthPressRight", "mouthShrugUpper",
    "mouthSmileLeft", "mouthSmileRight", "tongueOut",
)
CHANNEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(CHANNELS)}
# Channels that follow the jaw's dominance; all others follow the lips'.
_JAW_CHANNELS = frozenset({"jawOpen", "tongueOut"})


def _lr(base: str, value: float) -> dict[str, float]:
    """A symmetric pair of ARKit weights, e.g. ``_lr("mouthStretch", 0.3)``."""
    return {f"{base}Left": value, f"{base}Right": value}


# Viseme class -> target ARKit weights (unlisted channels are 0). Rest is all zeros.
VISEMES: dict[str, dict[str, float]] = {
    "sil": {},
    "PP": {"jawOpen": 0.02, "mouthClose": 0.85, **_lr("mouthPress", 0.5), "mouthRollLower": 0.12,
           "mouthRollUpper": 0.08},
    "FF": {"jawOpen": 0.07, "mouthClose": 0.25, "mouthRollLower": 0.6, **_lr("mouthUpperUp", 0.25),
           "mouthShrugUpper": 0.1},
    "TH": {"jawOpen": 0.18, "tongueOut": 0.35, **_lr("mouthStretch", 0.1), **_lr("mouthLowerDown", 0.12)},
    "DD": {"jawOpen": 0.17, **_lr("mouthStretch", 0.15), **_lr("mouthLowerDown", 0.1),
           **_lr("mouthUpperUp", 0.05)},
    "kk": {"jawOpen": 0.22, **_lr("mouthStretch", 0.15), **_lr("mouthLowerDown", 0.08)},
    "CH": {"jawOpen": 0.14, "mouthFunnel": 0.45, "mouthPucker": 0.3, **_lr("mouthUpperUp", 0.2),
           **_lr("mouthLowerDown", 0.2)},
    "SS": {"jawOpen": 0.07, **_lr("mouthStretch", 0.35), **_lr("mouthUpperUp", 0.15),
           **_lr("mouthLowerDown", 0.15)},
    "nn": {"jawOpen": 0.15, **_lr("mouthStretch", 0.1), **_lr("mouthLowerDown", 0.06)},
    "RR": {"jawOpen": 0.2, "mouthFunnel": 0.35, "mouthPucker": 0.25},
    "aa": {"jawOpen": 0.85, **_lr("mouthLowerDown", 0.3), **_lr("mouthUpperUp", 0.1),
           **_lr("mouthStretch", 0.1)},
    "E": {"jawOpen": 0.5, **_lr("mouthStretch", 0.35), **_lr("mouthLowerDown", 0.2),
          **_lr("mouthUpperUp", 0.12), **_lr("mouthSmile", 0.08)},
    "I": {"jawOpen": 0.22, **_lr("mouthStretch", 0.55), **_lr("mouthSmile", 0.15),
          **_lr("mouthUpperUp", 0.1), **_lr("mouthLowerDown", 0.1)},
    "O": {"jawOpen": 0.55, "mouthFunnel": 0.6, "mouthPucker": 0.25, **_lr("mouthLowerDown", 0.1)},
    "U": {"jawOpen": 0.15, "mouthPucker": 0.75, "mouthFunnel": 0.35},
}
VISEME_NAMES: tuple[str, ...] = tuple(VISEMES)

# Dominance (jaw, lips) per viseme: how strongly a segment imposes its target on each group.
# Bilabials/labiodentals win the lips (and the jaw, which must nearly close for them); rounded
# vowels win the lips; coronal/velar consonants leave the lips to their neighbours.
DOMINANCE: dict[str, tuple[float, float]] = {
    "sil": (0.5, 0.5),
    "PP": (1.5, 1.0), "FF": (1.2, 1.0), "TH": (0.6, 0.4), "DD": (0.4, 0.25), "kk": (0.35, 0.2),
    "CH": (0.5, 0.9), "SS": (0.6, 0.6), "nn": (0.35, 0.2), "RR": (0.4, 0.6),
    "aa": (1.0, 0.6), "E": (0.8, 0.5), "I": (0.7, 0.6), "O": (0.9, 0.9), "U": (0.6, 1.0),
}
CLOSURE_VISEMES = frozenset({"PP", "FF"})

_TARGETS = np.array([[VISEMES[v].get(c, 0.0) for c in CHANNELS] for v in VISEME_NAMES])  # (V, K)
_ALPHAS = np.array(
    [[DOMINANCE[v][0] if c in _JAW_CHANNELS else DOMINANCE[v][1] for c in CHANNELS] for v in VISEME_NAMES]
)  # (V, K)
_VISEME_ID = {v: i for i, v in enumerate(VISEME_NAMES)}

# ---------------------------------------------------------------------------------------------
# espeak-ng mnemonics -> visemes

# Mnemonic -> ((viseme, share of the phoneme's duration), ...), amplitude, dominance scale.
# Amplitude < 1 marks reduced vowels (schwa); the dominance scale < 1 marks sounds whose mouth
# shape comes from their neighbours (h, glottal stop).
_P = tuple[tuple[tuple[str, float], ...], float, float]


def _one(viseme: str, amplitude: float = 1.0, dominance: float = 1.0) -> _P:
    return ((viseme, 1.0),), amplitude, dominance


_PHONEMES: dict[str, _P] = {
    # consonants
    **{p: _one("PP") for p in ("p", "b", "m", "m-")},
    **{p: _one("FF") for p in ("f", "v")},
    **{p: _one("TH") for p in ("T", "D")},
    **{p: _one("DD") for p in ("t", "d", "t#", "d#", "t2", "d2", "t[", "d[")},
    **{p: _one("kk") for p in ("k", "g", "x", "c", "J")},
    **{p: _one("CH") for p in ("tS", "dZ", "S", "Z", "S;", "Z;")},
    **{p: _one("SS") for p in ("s", "z", "s2")},
    **{p: _one("nn") for p in ("n", "N", "l", "L", "n-", "l-", "l/", "n#")},
    **{p: _one("RR") for p in ("r", "r-", "R", "r/", "*")},
    "w": _one("U"), "W": _one("U"),
    "j": _one("I", 0.8),
    "h": _one("E", 0.5, 0.15),
    "?": _one("sil", 1.0, 0.3),
    # vowels (diphthongs glide between two visemes)
    **{p: _one("aa") for p in ("a", "aa", "A:", "A@", "A", "a2")},
    "a#": _one("aa", 0.6),  # reduced [ɐ], as in the end of "over" / "mama" in some voices
    "V": _one("aa", 0.8),
    **{p: _one("E") for p in ("E", "e", "e@", "e#", "E2", "E:")},
    **{p: _one("E", 0.55) for p in ("@", "@2", "@5", "@#", "3", "a#2")},
    "3:": _one("E", 0.8),
    **{p: _one("I") for p in ("i", "i:", "I", "y")},
    **{p: _one("I", 0.8) for p in ("I2", "I#", "i#")},
    **{p: _one("O") for p in ("0", "O:", "O", "O@", "o@", "o", "Q")},
    **{p: _one("U") for p in ("u:", "U", "u")},
    "aI": ((("aa", 0.65), ("I", 0.35)), 1.0, 1.0),
    "aU": ((("aa", 0.65), ("U", 0.35)), 1.0, 1.0),
    "eI": ((("E", 0.6), ("I", 0.4)), 1.0, 1.0),
    "oU": ((("O", 0.55), ("U", 0.45)), 1.0, 1.0),
    "OI": ((("O", 0.6), ("I", 0.4)), 1.0, 1.0),
    "i@": ((("I", 0.6), ("E", 0.4)), 1.0, 1.0),
    "i@3": ((("I", 0.6), ("E", 0.4)), 1.0, 1.0),
    "U@": ((("U", 0.6), ("E", 0.4)), 1.0, 1.0),
    "aI@": ((("aa", 0.5), ("I", 0.25), ("E", 0.25)), 1.0, 1.0),
    "aI3": ((("aa", 0.5), ("I", 0.25), ("E", 0.25)), 1.0, 1.0),
    "aU@": ((("aa", 0.5), ("U", 0.25), ("E", 0.25)), 1.0, 1.0),
    "aU3": ((("aa", 0.5), ("U", 0.25), ("E", 0.25)), 1.0, 1.0),
}
_VOWEL_START = set("aAeEiIoOuUV03@y")
_MAX_MNEMONIC = max(len(p) for p in _PHONEMES)
_STRESS = {"'": 1.0, ",": 0.9}  # primary / secondary stress before a vowel
_UNSTRESSED = 0.85  # amplitude of full vowels without a stress mark
_SKIP = set("%=;:#|-!^~ ")  # espeak decorations that are not phonemes on their own


@dataclass(frozen=True)
class PhonemePart:
    """One viseme piece of a phoneme: which viseme, its share of the phoneme, amplitude, dominance."""

    viseme: str
    share: float
    amplitude: float
    dominance: float
    vowel: bool


def phoneme_visemes(text: str, strict: bool = False) -> list[list[PhonemePart]]:
    """Split an espeak-ng mnemonic string into phonemes, each a list of viseme parts.

    Accepts one phoneme (``"'oU"``), space-separated phonemes (``"h @ l 'oU"``) or espeak's packed
    word form (``"h@l'oU"``); longest mnemonic wins (``aI@`` before ``aI``). Pauses (``_``,
    ``_:``, ``_!``) are ``sil``. Unknown symbols are skipped, so odd input never raises, unless
    ``strict`` is set (then a ValueError names the first one; espeak decorations are still skipped).
    """
    phonemes: list[list[PhonemePart]] = []
    stress: float | None = None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _STRESS:
            stress = _STRESS[ch]
            i += 1
            continue
        if ch == "_":  # pause: "_", "_:", "_!", "_^_"
            i += 1
            while i < n and text[i] in ":!^_":
                i += 1
            phonemes.append([PhonemePart("sil", 1.0, 1.0, 1.0, False)])
            continue
        for length in range(min(_MAX_MNEMONIC, n - i), 0, -1):
            entry = _PHONEMES.get(text[i : i + length])
            if entry is not None:
                parts, amplitude, dominance = entry
                vowel = text[i] in _VOWEL_START
                if vowel:
                    amplitude *= stress if stress is not None else _UNSTRESSED
                    stress = None
                phonemes.append([PhonemePart(v, s, amplitude, dominance, vowel) for v, s in parts])
                i += length
                break
        else:
            if strict and ch not in _SKIP:
                raise ValueError(f"unknown espeak phoneme symbol {ch!r} at {i} in {text!r}")
            i += 1  # decoration or an unknown symbol: skip it
    return phonemes


@functools.lru_cache(maxsize=4096)
def _layout(text: str) -> tuple[tuple[float, float, int, float, float], ...]:
    """Viseme pieces of one phoneme event as (start, end) fractions of its duration, viseme id,
    amplitude, dominance. Vowels get 1.6x a consonant's share of a multi-phoneme event."""
    phonemes = phoneme_visemes(text)
    weights = [1.6 if p[0].vowel else 1.0 for p in phonemes]
    total = sum(weights)
    pieces = []
    position = 0.0
    for weight, parts in zip(weights, phonemes, strict=True):
        length = weight / total
        offset = 0.0
        for part in parts:
            start = position + length * offset
            offset += part.share
            end = position + length * offset
            pieces.append((start, end, _VISEME_ID[part.viseme], part.amplitude, part.dominance))
        position += length
    return tuple(pieces)


# ---------------------------------------------------------------------------------------------
# The track


@dataclass(frozen=True)
class CoarticulationConfig:
    """Timing constants of the dominance model and the speech gate."""

    anticipation_rate: float = 35.0  # 1/s, dominance decay before a segment's core (lips lead the sound)
    carryover_rate: float = 60.0  # 1/s, dominance decay after a segment's core
    core_fraction: float = 0.5  # middle fraction of a segment held at full dominance
    rest_dominance: float = 1e-3  # weight of the rest pose, so far from any segment the mouth rests
    onset_s: float = 0.08  # the gate opens this long before the first phoneme of a run
    release_s: float = 0.10  # ... and closes over this long after the last one (or a cut)
    last_phoneme_s: float = 0.12  # duration of a phoneme with no following phoneme/end event yet
    max_phoneme_s: float = 0.5  # a longer gap to the next event is silence, not a held phoneme
    span_gap_s: float = 0.02  # segments closer than this belong to one run of speech
    closure_rate: float = 60.0  # 1/s, decay of the hard lip-closure constraint around m/b/p/f/v cores
    window_s: float = 0.6  # segments further than this from t do not matter (dominance < 1e-6)
    history_s: float = 3.0  # events older than this before the newest query are pruned


_KIND_ORDER = {"end": 0, "sentence": 1, "word": 2, "phoneme": 3}


class VisemeTrack:
    """A phoneme timeline (absolute media seconds) and the coarticulated mouth it implies.

    ``add`` schedules events (duplicates are ignored, so re-sending everything known so far is
    fine), ``cut`` interrupts, ``values_at``/``weights_at`` evaluate. Phoneme durations run to the
    next phoneme or "end" event (the last known one gets ``last_phoneme_s`` until more arrive).
    """

    def __init__(self, config: CoarticulationConfig | None = None) -> None:
        self.config = config or CoarticulationConfig()
        self.reset()

    def reset(self) -> None:
        """Forget every event and cut."""
        self._events: list[tuple[float, int, str]] = []  # (time, kind order, text), sorted
        self._seen: set[tuple[float, str, str]] = set()
        self._blocked_origins: set[float] = set()  # utterances interrupted by a cut
        self._origins: dict[float, float] = {}  # event time -> its utterance origin (for cut)
        self._horizon_s = -np.inf  # events before this were pruned; re-sent ones are ignored
        self._last_batch: tuple | None = None
        self._rebuild()

    # -- scheduling -------------------------------------------------------------------------

    def add(self, events: Sequence[tuple[float, SpeechEvent]]) -> None:
        """Schedule ``(absolute media time, event)`` pairs; already known ones are ignored.

        Events of an utterance that was cut are ignored too (recognised by their utterance
        origin, ``media time - event.time_s``), so late chunks of an interrupted reply stay silent.
        """
        if isinstance(events, tuple) and events is self._last_batch:
            return  # the very same (immutable) batch again, e.g. PlayedAudioFrame.agent_events
        self._last_batch = events if isinstance(events, tuple) else None
        changed = False
        for time_s, event in events:
            time_s = float(time_s)
            if not np.isfinite(time_s) or time_s < self._horizon_s or event.kind not in _KIND_ORDER:
                continue
            key = (round(time_s, 6), event.kind, event.text)
            if key in self._seen:
                continue
            self._seen.add(key)
            origin = round(time_s - float(event.time_s), 3)
            if origin in self._blocked_origins:
                continue
            self._events.append((time_s, _KIND_ORDER[event.kind], event.text))
            self._origins[time_s] = origin
            changed = True
        if changed:
            self._events.sort()
            self._rebuild()

    def cut(self, t_s: float) -> None:
        """Interrupt at media time ``t_s``: drop everything after it; the mouth rests by t + release."""
        t_s = float(t_s)
        if not np.isfinite(t_s):
            raise ValueError(f"VisemeTrack.cut: t_s must be finite, got {t_s}")
        kept = [e for e in self._events if e[0] < t_s]
        dropped = [e for e in self._events if e[0] >= t_s]
        self._blocked_origins.update(self._origins[e[0]] for e in dropped if e[0] in self._origins)
        if kept and kept[-1][1] != _KIND_ORDER["end"] and kept[-1][0] in self._origins:
            self._blocked_origins.add(self._origins[kept[-1][0]])
        # A synthetic end event truncates the phoneme sounding at t_s.
        self._events = [*kept, (t_s, _KIND_ORDER["end"], "")]
        self._rebuild()

    def prune(self, before_s: float) -> None:
        """Drop events older than ``before_s`` (they no longer influence anything after it)."""
        horizon = before_s - self.config.window_s
        self._horizon_s = max(self._horizon_s, horizon)
        if self._events and self._events[0][0] < horizon:
            self._events = [e for e in self._events if e[0] >= horizon]
            self._seen = {k for k in self._seen if k[0] >= horizon}
            self._origins = {t: o for t, o in self._origins.items() if t >= horizon}
            self._rebuild()

    @property
    def oldest_event_s(self) -> float | None:
        """Media time of the oldest retained event, or None."""
        return self._events[0][0] if self._events else None

    def _rebuild(self) -> None:
        """Turn the sorted event list into viseme segments and speech spans (numpy arrays)."""
        cfg = self.config
        starts: list[float] = []
        ends: list[float] = []
        ids: list[int] = []
        amps: list[float] = []
        doms: list[float] = []
        events = [e for e in self._events if e[1] in (_KIND_ORDER["phoneme"], _KIND_ORDER["end"])]
        for k, (time_s, kind, text) in enumerate(events):
            if kind != _KIND_ORDER["phoneme"]:
                continue
            nxt = events[k + 1][0] if k + 1 < len(events) else time_s + cfg.last_phoneme_s
            duration = min(nxt - time_s, cfg.max_phoneme_s)
            if duration <= 1e-4:
                continue
            for rel_start, rel_end, viseme_id, amplitude, dominance in _layout(text):
                starts.append(time_s + duration * rel_start)
                ends.append(time_s + duration * rel_end)
                ids.append(viseme_id)
                amps.append(amplitude)
                doms.append(dominance)
        self._start = np.array(starts)  # (S,)
        self._end = np.array(ends)  # (S,)
        id_array = np.array(ids, dtype=np.int64)
        amp_array = np.array(amps)
        self._target = _TARGETS[id_array] * amp_array[:, None]  # (S, K)
        self._alpha = _ALPHAS[id_array] * np.array(doms)[:, None]  # (S, K)
        half_margin = 0.5 * (1.0 - cfg.core_fraction) * (self._end - self._start)
        self._core_lo = self._start + half_margin
        self._core_hi = self._end - half_margin
        closure = np.isin(id_array, [_VISEME_ID[v] for v in CLOSURE_VISEMES])
        self._closure_centres = 0.5 * (self._start + self._end)[closure]  # sorted: segments are
        self._closure_lo = self._core_lo[closure]
        self._closure_hi = self._core_hi[closure]
        self._closure_target = self._target[closure]  # (C, K)
        # Runs of contiguous speech for the gate.
        span_s: list[float] = []
        span_e: list[float] = []
        for s, e in zip(starts, ends, strict=True):
            if span_e and s - span_e[-1] <= cfg.span_gap_s:
                span_e[-1] = max(span_e[-1], e)
            else:
                span_s.append(s)
                span_e.append(e)
        self._span_start = np.array(span_s)
        self._span_end = np.array(span_e)

    # -- evaluation -------------------------------------------------------------------------

    def gate_at(self, times: float | np.ndarray) -> np.ndarray:
        """Speech gate in [0, 1] at each time: 1 inside a run of speech, ramps at its edges. # (T,)"""
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))  # (T,)
        if self._span_start.size == 0:
            return np.zeros(t.shape)
        cfg = self.config
        ramp_in = smoothstep((t[:, None] - self._span_start[None] + cfg.onset_s) / cfg.onset_s)  # (T, P)
        ramp_out = smoothstep((self._span_end[None] + cfg.release_s - t[:, None]) / cfg.release_s)
        gate = np.minimum(ramp_in, ramp_out).max(axis=1)
        gate[gate < 1e-9] = 0.0  # exactly at rest at the ramp ends despite rounding
        return gate

    def values_at(self, times: float | np.ndarray, frame_period_s: float = 0.0) -> np.ndarray:
        """Mouth weights in ``CHANNELS`` order at each time. # (T, K)

        With ``frame_period_s`` > 0 (video sampling), a time within half a frame of a bilabial or
        labiodental centre is moved onto that centre, so every m/b/p/f/v closure shows on a
        frame even when it is shorter than the frame period.
        """
        t = np.atleast_1d(np.asarray(times, dtype=np.float64)).copy()  # (T,)
        out = np.zeros((t.size, len(CHANNELS)))
        if self._start.size == 0:
            return out
        if frame_period_s > 0 and self._closure_centres.size:
            centres = self._closure_centres
            idx = np.clip(np.searchsorted(centres, t), 1, max(centres.size - 1, 1))
            left = centres[idx - 1]
            right = centres[np.minimum(idx, centres.size - 1)]
            nearest = np.where(np.abs(t - left) <= np.abs(right - t), left, right)
            snap = np.abs(nearest - t) <= 0.5 * frame_period_s
            t[snap] = nearest[snap]
        cfg = self.config
        lo = np.searchsorted(self._end, t.min() - cfg.window_s)
        hi = np.searchsorted(self._start, t.max() + cfg.window_s)
        if hi <= lo:
            return out
        core_lo, core_hi = self._core_lo[lo:hi], self._core_hi[lo:hi]  # (S,)
        before = np.maximum(core_lo[None] - t[:, None], 0.0)  # (T, S)
        after = np.maximum(t[:, None] - core_hi[None], 0.0)  # (T, S)
        decay = np.exp(-(cfg.anticipation_rate * before + cfg.carryover_rate * after))  # (T, S)
        alpha = self._alpha[lo:hi]  # (S, K)
        numerator = decay @ (alpha * self._target[lo:hi])  # (T, K)
        denominator = decay @ alpha + cfg.rest_dominance  # (T, K)
        values = numerator / denominator  # (T, K)
        if self._closure_centres.size:
            # Hard constraint: around the core of a bilabial/labiodental the mouth is pulled onto
            # its target whatever the dominance blend says, so fast speech still closes the lips.
            c_lo = np.searchsorted(self._closure_hi, t.min() - cfg.window_s)
            c_hi = np.searchsorted(self._closure_lo, t.max() + cfg.window_s)
            if c_hi > c_lo:
                distance = np.maximum(self._closure_lo[None, c_lo:c_hi] - t[:, None], 0.0) + np.maximum(
                    t[:, None] - self._closure_hi[None, c_lo:c_hi], 0.0
                )  # (T, C)
                nearest = distance.argmin(axis=1)  # (T,)
                pull = np.exp(-cfg.closure_rate * distance[np.arange(t.size), nearest])[:, None]  # (T, 1)
                values += pull * (self._closure_target[c_lo + nearest] - values)
        return values * self.gate_at(t)[:, None]

    def weights_at(self, t_s: float) -> dict[str, float]:
        """The mouth at one time as ``{ARKit name: weight}`` (jawOpen as a 0..1 weight)."""
        values = self.values_at(t_s)[0]
        return {name: float(v) for name, v in zip(CHANNELS, values, strict=True)}
