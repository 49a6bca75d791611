"""Kodama Talker: the neural voice. The TTS language model writes speech tokens, the tokenizer decodes them.

Text -> espeak-ng phonemes (``phonemize``) -> ``KodamaTTS.stream`` yields one 12.5 Hz frame of 8
codes at a time -> ``SpeechTokenizer.decode_step`` turns each into its 80 ms of 24 kHz audio at
once, so the first chunk leaves after the first frame (one transformer prefill + a few steps).

Voices live in the weights folder's ``voices.json``: per voice a speaker vector (the GE2E speaker
encoder's mean embedding of that voice) and a short prompt utterance (its phonemes and codes) the
model continues, which is how it keeps the voice (in-context cloning). A character's voice name is
matched exactly, then as ``espeak:NAME``; anything else speaks with the bank's default voice.

Lip sync: the audio carries no phoneme events of its own, so they are recovered from the generated
tokens: the tokenizer's semantic head (trained to predict each 20 ms frame's phoneme from the two
semantic codebooks) labels the frames; a phoneme event is emitted where the label changes. Word
events are placed by counting those phonemes against the text's phonemes (approximate: word starts
can be off by a phoneme). Both are "recovered from the audio", not given by a synthesiser.

    tts = KodamaTTS.load()                      # anima/assets/weights/talker
    for chunk in tts.stream("Hello there.", voice="piper:joe", emotion="happy"):
        play(chunk.samples)                     # (1920,) float32 at 24 kHz
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anima.core.frames import SAMPLE_RATE, SpeechEvent
from anima.core.plan import EMOTIONS
from anima.talker.base import SpeechChunk

logger = logging.getLogger(__name__)

SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "weights" / "talker"
# ANIMA_TALKER_WEIGHTS points --talker kodama (render, demo, serve) at a folder of your own.
DEFAULT_WEIGHTS = Path(os.environ.get("ANIMA_TALKER_WEIGHTS") or SHIPPED_WEIGHTS)
VOICES_FILE = "voices.json"
MAX_TEXT_CHARS = 2000
MAX_PROMPT_S = 6.0  # a cloning prompt longer than this is cut (its transcript is then recognised)
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+")


@dataclass(frozen=True)
class Voice:
    """One voice of the bank: what the model is conditioned on to speak with it."""

    name: str
    speaker: np.ndarray  # (D_spk,) float32
    prompt_phonemes: tuple[str, ...]
    prompt_codes: np.ndarray  # (8, P) int64


def load_voices(directory: str | Path) -> tuple[dict[str, Voice], str]:
    """The voice bank of a weights folder and its default voice's name."""
    path = Path(directory) / VOICES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {VOICES_FILE} (the voice bank); build it with `anima talker export`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        voices = {
            name: Voice(name, np.asarray(v["speaker"], np.float32), tuple(v["prompt_phonemes"]),
                        np.asarray(v["prompt_codes"], np.int64))
            for name, v in data["voices"].items()
        }
        default = data["default"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a voice bank ({e})") from e
    if default not in voices:
        raise ValueError(f"{path}: the default voice {default!r} is not in the bank")
    return voices, default


class KodamaTTS:
    """Streaming neural TTS (``anima.talker.base.TTS``) over a weights folder: tokenizer/, tts/, voices.json."""

    sample_rate = SAMPLE_RATE

    def __init__(self, tokenizer, model, voices: dict[str, Voice], default_voice: str, voice: str | None = None,
                 seed: int = 0, temperature: float = 0.8, top_k: int = 50) -> None:
        from anima.talker.model.kodama_tts import Sampling

        self.tokenizer = tokenizer
        self.model = model
        self.voices = voices
        self.default_voice = default_voice
        self.voice = voice or default_voice
        self.seed = seed
        self.sampling = Sampling(temperature=temperature, top_k=top_k)
        self._utterances = 0
        self._lock = threading.Lock()
        # The semantic head's classes are the corpus inventory the TTS model reads too (both trained
        # on one corpus; the export checks it): without such a head there are no phoneme events.
        symbols = tuple(model.config.symbols)
        head = hasattr(tokenizer, "semantic_head") and tokenizer.config.teacher_kind == "classes"
        self.labels = symbols if head and tokenizer.config.teacher_dim == len(symbols) else ()

    @classmethod
    def load(cls, directory: str | Path = DEFAULT_WEIGHTS, **kwargs) -> KodamaTTS:
        """Load a weights folder (models shared per process); a clear error when it is missing or broken."""
        from anima.talker.model.kodama_tts import KodamaTTS as Model
        from anima.talker.model.tokenizer import SpeechTokenizer

        directory = Path(directory)
        if not (directory / "tokenizer").is_dir() or not (directory / "tts").is_dir():
            raise FileNotFoundError(
                f"{directory}: no talker weights (tokenizer/ and tts/); train them (docs/talker.md) "
                "or use --talker espeak")
        voices, default = load_voices(directory)
        tokenizer = SpeechTokenizer.from_pretrained(directory / "tokenizer")
        model = Model.from_pretrained(directory / "tts")
        if model.config.n_codebooks != tokenizer.num_codebooks or model.config.codebook_size != tokenizer.codebook_size:
            raise ValueError(f"{directory}: the TTS model writes {model.config.n_codebooks} x {model.config.codebook_size} "
                             f"codes, the tokenizer reads {tokenizer.num_codebooks} x {tokenizer.codebook_size}")
        tts = cls(tokenizer, model, voices, default, **kwargs)
        tts.directory = directory
        return tts

    directory: Path | None = None

    def voice_from_audio(self, samples: np.ndarray, transcript: str | None = None) -> Voice:
        """A new voice cloned from a recording (24 kHz mono): its codes as the prompt, its speaker vector.

        The model continues the prompt, so it needs what the prompt says: ``transcript`` when given,
        else the phoneme judge's reading of it (weights folder ``judge/``).
        """
        import torch

        samples = np.asarray(samples, np.float32)
        if samples.ndim != 1 or samples.size < SAMPLE_RATE // 2:
            raise ValueError(f"voice prompt: need at least 0.5 s of mono audio, got shape {samples.shape}")
        if samples.size > MAX_PROMPT_S * SAMPLE_RATE:
            if transcript is not None:
                raise ValueError(f"voice prompt of {samples.size / SAMPLE_RATE:.1f} s with a transcript: cut it to "
                                 f"{MAX_PROMPT_S:.0f} s or leave the transcript out (then it is cut and recognised)")
            samples = samples[: int(MAX_PROMPT_S * SAMPLE_RATE)]
        folder = self.directory or DEFAULT_WEIGHTS
        if transcript is not None:
            from anima.talker.data.phonemize import phonemize

            phonemes = phonemize(transcript)
        elif (folder / "judge").is_dir():
            from anima.talker.model.phoneme_judge import PhonemeJudge

            phonemes = PhonemeJudge.from_pretrained(folder / "judge").recognize(samples)
        else:
            raise ValueError("voice prompt: give its transcript (no phoneme judge in the weights to recognise it)")
        known = set(self.model.config.symbols)
        phonemes = [p for p in phonemes if p in known]
        if not phonemes:
            raise ValueError("voice prompt: no speech recognised in it")
        speaker = np.zeros(self.model.config.d_speaker, np.float32)
        if (folder / "speaker").is_dir():
            from anima.talker.model.speaker_encoder import SpeakerEncoder

            speaker = SpeakerEncoder.from_pretrained(folder / "speaker").embed(samples).astype(np.float32)
        codes = self.tokenizer.encode(torch.from_numpy(samples)[None])[0].numpy()  # (8, P)
        return Voice(f"clone:{len(self.voices)}", speaker, tuple(phonemes), codes)

    def resolve_voice(self, name: str | None) -> Voice:
        """The bank's voice for a name: exact, ``espeak:NAME``, else the default voice."""
        name = name or self.voice
        for candidate in (name, f"espeak:{name}"):
            if candidate in self.voices:
                return self.voices[candidate]
        return self.voices[self.default_voice]

    def sentences(self, text: str) -> list[list[str]]:
        """Text -> phoneme lists, one per sentence (each fits the model's context)."""
        from anima.talker.data.phonemize import phonemize

        if not isinstance(text, str) or not text.strip():
            raise ValueError("kodama talker: empty text")
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"kodama talker: text of {len(text)} characters; at most {MAX_TEXT_CHARS} per utterance")
        limit = self.model.config.max_phonemes
        known = set(self.model.config.symbols)
        out = []
        for sentence in _SENTENCE.split(text.strip()):
            if not sentence.strip() or not re.search(r"\w", sentence):
                continue
            phonemes = phonemize(sentence)
            unknown = {p for p in phonemes if p not in known}
            if unknown:  # a sound the corpus never had (a foreign word): skipped rather than failing the turn
                logger.warning("kodama talker: skipping phonemes the model does not know: %s", " ".join(sorted(unknown)))
                phonemes = [p for p in phonemes if p in known]
            if not any(not p.startswith("_") for p in phonemes):
                continue
            while len(phonemes) > limit:  # a run-on sentence: cut at the last pause that fits
                cut = max((i for i, p in enumerate(phonemes[:limit]) if p.startswith("_")), default=limit - 1) + 1
                out.append(phonemes[:cut])
                phonemes = phonemes[cut:]
            if phonemes:
                out.append(phonemes)
        if not out:
            raise ValueError(f"kodama talker: nothing to say in {text[:40]!r}")
        return out

    def stream(self, text: str, *, voice: str | None = None, emotion: str | None = None,
               cancel: threading.Event | None = None) -> Iterator[SpeechChunk]:
        """Synthesise ``text`` as 80 ms chunks while the model writes it; stop when ``cancel`` is set.

        Raises ``ValueError`` (before the first chunk) for empty or too long text or an unknown emotion.
        """
        if emotion is not None and emotion not in EMOTIONS:
            raise ValueError(f"kodama talker: unknown emotion {emotion!r}; choose one of {', '.join(EMOTIONS)}")
        sentences = self.sentences(text)
        chosen = self.resolve_voice(voice)
        with self._lock:
            self._utterances += 1
            seed = self.seed * 1_000_003 + self._utterances
        return self._chunks(text, sentences, chosen, emotion or "neutral", seed, cancel)

    def _chunks(self, text: str, sentences: list[list[str]], voice: Voice, emotion: str, seed: int,
                cancel: threading.Event | None) -> Iterator[SpeechChunk]:
        import torch

        words = WordClock(text, sum(spoken_count(s) for s in sentences))
        decoder = self.tokenizer.new_decoder_state()
        speaker = torch.from_numpy(voice.speaker)
        prompt = torch.from_numpy(voice.prompt_codes)
        frame_s = 1.0 / self.tokenizer.frame_rate
        t = 0.0
        last_label = 0
        pending: SpeechChunk | None = None
        for n, phonemes in enumerate(sentences):
            for frame in self.model.stream(phonemes, speaker=speaker, emotion=emotion,
                                           prompt_phonemes=voice.prompt_phonemes, prompt_codes=prompt,
                                           sampling=self.sampling, seed=seed + n, cancel=cancel):
                if cancel is not None and cancel.is_set():
                    return
                codes = frame.reshape(1, -1, 1)  # (1, 8, 1)
                samples = self.tokenizer.decode_step(decoder, codes)[0].numpy().astype(np.float32)  # (1920,)
                events: list[SpeechEvent] = []
                labels = self.frame_labels(codes)
                for i, label in enumerate(labels):
                    if label != last_label and not self.labels[label].startswith("_"):  # pauses are no phonemes
                        at = t + i * frame_s / len(labels)
                        events.append(SpeechEvent("phoneme", at, self.labels[label]))
                        events.extend(words.on_phoneme(at))
                    last_label = label
                if pending is not None:
                    yield pending
                pending = SpeechChunk(np.clip(samples, -1.0, 1.0), t, tuple(events))
                t += samples.size / self.sample_rate
        if cancel is not None and cancel.is_set():
            return
        if pending is None:
            pending = SpeechChunk(np.zeros(0, np.float32), t)
        yield SpeechChunk(pending.samples, pending.offset_s, (*pending.events, *words.finish(t), SpeechEvent("end", t)),
                          final=True)

    def frame_labels(self, codes) -> list[int]:
        """The semantic head's phoneme id for each 20 ms frame of one token (empty without a head)."""
        if not self.labels:
            return []
        import torch

        tok = self.tokenizer
        with torch.no_grad():
            k = tok.config.num_semantic_codebooks
            q = tok.sem_rvq.decode(codes[:, :k].long())  # (1, 1, Qd)
            logits = tok.semantic_head(q).reshape(-1, len(self.labels))  # (4, classes)
        return logits.argmax(-1).tolist()

    def synthesize(self, text: str, voice: str | None = None, emotion: str | None = None) -> SpeechChunk:
        """A whole utterance as one final chunk (concatenated ``stream``)."""
        chunks = list(self.stream(text, voice=voice, emotion=emotion))
        events = tuple(e for c in chunks for e in c.events)
        return SpeechChunk(np.concatenate([c.samples for c in chunks]), 0.0, events, final=True)


def spoken_count(phonemes: list[str]) -> int:
    return sum(1 for p in phonemes if not p.startswith("_"))


class WordClock:
    """Word events from phoneme events: word i starts when its share of the text's phonemes is spoken."""

    def __init__(self, text: str, total_phonemes: int) -> None:
        self.words = [(m.start(), m.group()) for m in re.finditer(r"\S+", text)]
        n_chars = max(1, len(text))
        self.starts = [int(total_phonemes * start / n_chars) for start, _ in self.words]  # phoneme index of each word
        self.spoken = 0
        self.next = 0

    def _emit(self, at: float) -> SpeechEvent:
        start, word = self.words[self.next]
        self.next += 1
        return SpeechEvent("word", at, word, start, len(word))

    def on_phoneme(self, at: float) -> list[SpeechEvent]:
        out = []
        while self.next < len(self.words) and self.starts[self.next] <= self.spoken:
            out.append(self._emit(at))
        self.spoken += 1
        return out

    def finish(self, at: float) -> list[SpeechEvent]:
        return [self._emit(at) for _ in range(len(self.words) - self.next)]
