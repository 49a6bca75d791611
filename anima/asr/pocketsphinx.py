"""PocketSphinx (CMU, BSD licence): offline streaming speech recognition on the CPU.

The en-us acoustic model, the CMU dictionary and a general trigram language model ship in the
``pocketsphinx`` wheel. A ``Domain`` (see ``anima.asr.domain``) swaps in a language model written
from the character's world and adds the world's names to the dictionary. Audio arrives at 24 kHz
and is resampled to the model's 16 kHz with python-soxr's streaming resampler, one per stream.

Each stream owns its own ``Decoder`` (the decoder is stateful and not thread-safe); the decoder
reads its model files when the stream is created (~0.2 s, once per session).
"""

from __future__ import annotations

import numpy as np

from anima.asr.base import check_audio, to_internal_rate
from anima.asr.domain import Domain
from anima.core.frames import SAMPLE_RATE

MODEL_RATE = 16_000


class PocketSphinxStream:
    """One utterance at a time: ``accept`` chunks, read partials, ``finish`` for the final text."""

    def __init__(self, config: dict, partial_every_s: float = 0.2, new_words: dict[str, str] | None = None) -> None:
        import soxr
        from pocketsphinx import Decoder

        self._decoder = Decoder(**config)
        words = [(w, p) for w, p in (new_words or {}).items()]
        for i, (word, phones) in enumerate(words):  # into the dictionary and the general model's unigrams
            self._decoder.add_word(word, phones, i == len(words) - 1)  # the last one rebuilds the search
        self._soxr = soxr
        self._partial_every = int(partial_every_s * MODEL_RATE)
        self._start()

    def _start(self) -> None:
        self._resampler = self._soxr.ResampleStream(SAMPLE_RATE, MODEL_RATE, 1, dtype="float32", quality="HQ")
        self._decoder.start_utt()
        self._since_partial = 0
        self._partial = ""

    def _feed(self, samples16: np.ndarray) -> None:
        if samples16.size:
            pcm = (np.clip(samples16, -1.0, 1.0) * 32767.0).astype("<i2")
            self._decoder.process_raw(pcm.tobytes(), False, False)
            self._since_partial += samples16.size

    def accept(self, samples: np.ndarray) -> str | None:
        """Feed 24 kHz mono float32 samples; returns the partial hypothesis when it changed."""
        samples = check_audio(samples, "PocketSphinxStream.accept")
        self._feed(self._resampler.resample_chunk(samples))
        if self._since_partial < self._partial_every:
            return None
        self._since_partial = 0
        hyp = self._decoder.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        if text == self._partial:
            return None
        self._partial = text
        return text

    def finish(self) -> str:
        """The final transcript of everything accepted since the last ``finish``; starts a new utterance."""
        self._feed(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        self._start()
        return text


class PocketSphinxRecognizer:
    """PocketSphinx with the wheel's en-us model; ``vocabulary`` adapts it to a domain."""

    def __init__(self, vocabulary: Domain | None = None, partial_every_s: float = 0.2) -> None:
        import pocketsphinx  # noqa: F401  (fail here, not in the first session, when it is missing)

        self.domain = vocabulary
        self.partial_every_s = partial_every_s
        self.config: dict = {"samprate": MODEL_RATE, "loglevel": "FATAL"}
        if vocabulary is not None:
            self.config.update(lm=str(vocabulary.lm_path), dict=str(vocabulary.dict_path), lw=vocabulary.language_weight)

    def new_stream(self) -> PocketSphinxStream:
        return PocketSphinxStream(self.config, self.partial_every_s, self.domain.new_words if self.domain else None)

    def transcribe(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        """The transcript of a whole clip (mono float, any sample rate)."""
        stream = self.new_stream()
        stream.accept(to_internal_rate(samples, sample_rate))
        return stream.finish()
