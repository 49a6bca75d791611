"""Text -> espeak-ng phoneme mnemonics, the same symbols espeak's phoneme events carry.

The corpus times phonemes from espeak's synthesis events; the TTS model reads text as these
symbols at run time, so both must agree. ``espeak_TextToPhonemes`` (one clause per call, phonemes
separated by ``|``, stress marks in front) gives them without synthesising audio: stress marks are
dropped and each clause ends with the pause pair espeak's events report there (``_:`` then ``_``).
About 0.2 ms per sentence.

    phonemize("Hello there.")  # ['h', '@', 'l', 'oU', 'D', 'e@', '_:', '_']
"""

from __future__ import annotations

import ctypes

from anima.talker import espeak

__all__ = ["phonemize", "CLAUSE_END"]

CLAUSE_END = ("_:", "_")  # the pause events espeak reports at the end of every clause
_STRESS = "',%="  # stress and syllable marks TextToPhonemes writes in front of a phoneme
_SEPARATOR = ord("|")
_CHARS_UTF8 = 1


def _bind(lib: ctypes.CDLL) -> None:
    fn = lib.espeak_TextToPhonemes
    if fn.restype is not ctypes.c_char_p:
        fn.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        fn.restype = ctypes.c_char_p


def phonemize(text: str, voice: str = "en-us") -> list[str]:
    """The espeak-ng phoneme mnemonics of ``text`` in ``voice``'s accent, clause pauses included.

    Raises:
        ValueError: empty text or an unknown voice.
        RuntimeError: libespeak-ng cannot be loaded.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"cannot phonemize empty text (got {text!r})")
    data = ctypes.c_char_p(text.encode("utf-8", errors="replace"))
    clauses: list[str] = []
    # espeak keeps global state and is not thread-safe: share the TTS engine and its lock.
    with espeak._LOCK:
        engine = espeak._engine_locked()
        name = engine.resolve_voice(voice)
        _bind(engine.lib)
        if engine.lib.espeak_SetVoiceByName(name) != 0:
            raise RuntimeError(f"espeak-ng could not select voice {voice!r}")
        for _ in range(len(text) + 1):  # one clause per call; the bound guards against a stuck pointer
            if not data.value:
                break
            out = engine.lib.espeak_TextToPhonemes(ctypes.byref(data), _CHARS_UTF8, _SEPARATOR << 8)
            clauses.append((out or b"").decode("utf-8", errors="replace"))
    symbols: list[str] = []
    for clause in clauses:
        for word in clause.split():
            symbols.extend(p.lstrip(_STRESS) for p in word.split("|") if p.lstrip(_STRESS))
        symbols.extend(CLAUSE_END)
    return symbols
