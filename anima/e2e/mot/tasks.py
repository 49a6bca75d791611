"""The three tasks of the mixture of transformers, on one model (paper section 3.3 and 4.2).

    codes, audio, tokens = speak(mot, tokenizer, phonemes, speaker, emotion)   # text -> speech + behaviour
    tokens = behave_to_audio(mot, phonemes, codes, speaker, emotion)          # given audio -> behaviour
    tokens = silent_command(mot, phonemes, seconds=3.0)                        # a silent command -> behaviour

Speech is autoregressive and causal in the frozen speech expert; behaviour is denoised window by
window after it (``anima.e2e.mot.sampling``). Given audio is teacher-forced: its codes are the
speech expert's input, as if it had written them (the paper's audio-driven comparison). A silent
command is a speech sequence with text and no audio at all: the behaviour sees the command's text.

Every function returns normalised-space tokens turned back to raw behaviour vectors: (history + T, 750).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from anima.e2e.mot.model import MixtureOfTransformers
from anima.e2e.mot.sampling import SamplerSettings, SampleStats, sample_behaviour
from anima.talker.model.kodama_tts import Sampling, make_sequence

FRAME_S = 0.08


def _condition(mot: MixtureOfTransformers, speaker: np.ndarray | None, emotion: str) -> tuple[torch.Tensor, torch.Tensor]:
    return mot.speech.condition(None if speaker is None else torch.as_tensor(speaker, dtype=torch.float32), emotion)


def _normalise(mot: MixtureOfTransformers, raw: np.ndarray | None) -> torch.Tensor | None:
    if raw is None:
        return None
    be = mot.behaviour
    return (torch.as_tensor(raw, dtype=torch.float32) - be.mean) / be.std


def _raw(mot: MixtureOfTransformers, tokens: torch.Tensor) -> np.ndarray:
    be = mot.behaviour
    return (tokens * be.std + be.mean).numpy()


@torch.no_grad()
def behave_to_audio(mot: MixtureOfTransformers, phonemes: Sequence[str], codes: np.ndarray | torch.Tensor,
                    speaker: np.ndarray | None = None, emotion: str = "neutral", history: np.ndarray | None = None,
                    settings: SamplerSettings | None = None, seed: int = 0, stats: SampleStats | None = None) -> np.ndarray:
    """Behaviour for given speech: ``codes`` (8, T) of the audio, ``phonemes`` what it says. -> (history + T, 750)"""
    codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    if codes.dim() != 2 or codes.shape[0] != mot.speech.config.n_codebooks:
        raise ValueError(f"codes: expected ({mot.speech.config.n_codebooks}, frames), got {tuple(codes.shape)}")
    ids = mot.speech.phoneme_ids(list(phonemes))
    seq = make_sequence(mot.speech.config, ids, codes)
    spk, emo = _condition(mot, speaker, emotion)
    kv, _ = mot.speech_pass(spk, emo, seq["text"][None], seq["audio"][None], seq["is_audio"][None])
    boa = 2 + len(ids)
    tokens = sample_behaviour(mot, kv, boa, kv[0][0].shape[2], codes.shape[1], _normalise(mot, history), settings,
                              seed=seed, stats=stats)
    return _raw(mot, tokens)


@torch.no_grad()
def speak(mot: MixtureOfTransformers, tokenizer, phonemes: Sequence[str], speaker: np.ndarray | None = None,
          emotion: str = "neutral", history: np.ndarray | None = None, settings: SamplerSettings | None = None,
          seed: int = 0, sampling: Sampling | None = None, max_frames: int = 300,
          stats: SampleStats | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Text -> speech codes (8, T) from the speech expert, their audio (N,) at 24 kHz, and behaviour (history + T, 750)."""
    spk, _ = _condition(mot, speaker, emotion)
    codes = mot.speech.generate(list(phonemes), speaker=spk[0], emotion=emotion, seed=seed, sampling=sampling,
                                max_frames=max_frames)  # (8, T)
    if codes.shape[1] == 0:
        raise ValueError("the speech expert ended the utterance before its first frame")
    audio = tokenizer.decode(codes[None])[0].numpy().astype(np.float32)
    tokens = behave_to_audio(mot, phonemes, codes, speaker, emotion, history, settings, seed, stats)
    return codes.numpy(), audio, tokens


@torch.no_grad()
def silent_command(mot: MixtureOfTransformers, phonemes: Sequence[str], seconds: float = 3.0,
                   history: np.ndarray | None = None, settings: SamplerSettings | None = None, seed: int = 0,
                   stats: SampleStats | None = None) -> np.ndarray:
    """Behaviour for a command's text with no speech: (history + seconds / 0.08, 750)."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    ids = mot.speech.phoneme_ids(list(phonemes))
    seq = make_sequence(mot.speech.config, ids, None)  # [phonemes][BOA]: no audio
    spk, emo = mot.speech.condition(None, "neutral")
    kv, _ = mot.speech_pass(spk, emo, seq["text"][None], seq["audio"][None], seq["is_audio"][None])
    boa = 2 + len(ids)
    n = round(seconds / FRAME_S)
    tokens = sample_behaviour(mot, kv, boa, kv[0][0].shape[2], n, _normalise(mot, history), settings, silent=True,
                              seed=seed, stats=stats)
    return _raw(mot, tokens)

