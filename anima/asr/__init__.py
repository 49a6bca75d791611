"""Speech recognition: streaming recognisers (PocketSphinx offline by default) and domain adaptation.

    from anima.asr import load_recognizer
    recognizer = load_recognizer("pocketsphinx", character="nemo")   # adapted to the character's world
    stream = recognizer.new_stream()                                  # one per user/session
    partial = stream.accept(chunk_24k)                                # str when the hypothesis changed
    text = stream.finish()                                            # final transcript; stream restarts
"""

from anima.asr.base import Recognizer, RecognizerStream, transcribe

__all__ = ["Recognizer", "RecognizerStream", "load_recognizer", "transcribe", "transcribe_file"]


def load_recognizer(kind: str = "pocketsphinx", character: str | None = None, world=None, adapt: bool = True) -> Recognizer:
    """A recogniser by name; ``adapt`` builds the domain (dictionary + language model) for ``character``."""
    if kind != "pocketsphinx":
        raise ValueError(f"unknown speech recogniser {kind!r}; available: pocketsphinx")
    from anima.asr.pocketsphinx import PocketSphinxRecognizer

    domain = None
    if adapt:
        from anima.asr.domain import build_domain

        domain = build_domain(character=character, world=world)
    return PocketSphinxRecognizer(domain)


def transcribe_file(path, character: str | None = None, world=None) -> str:
    """The offline transcript of a sound file (any rate), adapted to ``character``'s world."""
    from anima.asr.base import read_audio

    samples, rate = read_audio(path)
    return load_recognizer("pocketsphinx", character=character, world=world).transcribe(samples, rate)
