"""Score the Kodama TTS: intelligibility against the recordings, cloning of held-out voices, emotion.

    anima talker eval-tts [--weights DIR] [--corpus out/talker/corpus] [--sentences 12] [--json OUT]

- **Intelligibility**: test sentences (never trained on) spoken by bank voices; the phoneme judge
  reads the generated audio and the corpus recordings of the same sentences by the same voices;
  PER against what each was meant to say (the phonemes the TTS was given; the recording's own
  phoneme timeline). The acceptance: generated within 10 points of the recordings. Also the same
  recordings through the tokenizer (encode + decode): the ceiling the decoder puts on generated audio.
- **Cloning**: each held-out voice (never in training, not in the bank) is cloned from one of its
  recordings (codes + speaker vector + transcript); the clone speaks other test sentences; the speaker
  encoder compares it with *another* recording of that voice and with recordings of other voices.
- **Emotion**: one voice says the same sentences with each emotion; median F0 (pYIN) and speech rate
  (judge phonemes per second) against neutral, next to the direction the corpus prosody table intends.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from anima.core.plan import EMOTIONS
from anima.talker.data.manifest import load_wav, read_manifest
from anima.talker.data.prosody import EMOTION_PROSODY
from anima.talker.training import speech_metrics as sm

DEFAULT_VOICES = ("piper:joe", "espeak:en-us", "espeak:en-gb-scotland")


def _speech(phonemes) -> list[str]:
    return [p for p in phonemes if not p.startswith("_")]


def _heard(judge, audio: np.ndarray) -> list[str]:
    """The judge's phonemes; nothing for an empty utterance (the model ended at once: all deletions)."""
    return judge.recognize(audio) if audio.size else []


def evaluate_tts(tts, corpus: str | Path, judge, speaker, voices=DEFAULT_VOICES, sentences: int = 12,
                 seed: int = 0, emotion_voice: str = "espeak:en-us", emotions: tuple[str, ...] = EMOTIONS,
                 progress: bool = True) -> dict:
    """The three measurements above; ``judge``: PhonemeJudge, ``speaker``: SpeakerEncoder."""
    from anima.talker.data.phonemize import phonemize
    from anima.talker.training.codecs import TokenizerCodec

    corpus = Path(corpus)
    rng = np.random.default_rng(seed)
    test = read_manifest(corpus, "test")
    by_voice = defaultdict(list)
    for u in test:
        by_voice[u.voice].append(u)
    # The recordings through the talker's own tokenizer: the TTS's audio comes out of the same decoder, so
    # the judge's PER on them is the best the TTS could score.
    codec = TokenizerCodec(tts.tokenizer)
    result: dict = {"intelligibility": {}, "cloning": {}, "emotion": {}}
    t0 = time.perf_counter()

    # Intelligibility: bank voices on their own test recordings' sentences.
    for voice in voices:
        if voice not in tts.voices or not by_voice[voice]:
            continue
        picks = [by_voice[voice][i] for i in rng.permutation(len(by_voice[voice]))[:sentences]]
        gen_refs, gen_hyps, rec_refs, rec_hyps, codec_hyps = [], [], [], [], []
        for u in picks:
            audio = tts.synthesize(u.text, voice=voice, emotion=u.emotion).samples
            gen_refs.append(_speech(phonemize(u.text)))
            gen_hyps.append(_heard(judge, audio))
            rec_refs.append(_speech(p[0] for p in u.phonemes))
            recording = load_wav(corpus, u)
            rec_hyps.append(judge.recognize(recording))
            codec_hyps.append(judge.recognize(codec.reconstruct(recording)))
        result["intelligibility"][voice] = {
            "sentences": len(picks), "per_generated": sm.error_rate(gen_refs, gen_hyps),
            "per_recordings": sm.error_rate(rec_refs, rec_hyps),
            "per_recordings_through_codec": sm.error_rate(rec_refs, codec_hyps)}
        if progress:
            print(f"  {voice}: {result['intelligibility'][voice]}", flush=True)

    # Cloning of held-out voices.
    heldout = defaultdict(list)
    for u in read_manifest(corpus, "heldout"):
        heldout[u.voice].append(u)
    others = [u for v, us in by_voice.items() for u in us[:3]]
    for voice, utts in sorted(heldout.items()):
        order = [utts[i] for i in rng.permutation(len(utts))]
        prompt = next((u for u in order if 1.5 <= u.duration_s <= 5.5), order[0])
        clone = tts.voice_from_audio(load_wav(corpus, prompt), prompt.text)
        tts.voices[clone.name] = clone
        refs = [u for u in order if u is not prompt][: max(2, sentences // 3)]
        same, other, empty = [], [], 0
        for target in refs:
            audio = tts.synthesize(target.text, voice=clone.name).samples
            if audio.size < 2400:  # under 0.1 s: no voice to compare
                empty += 1
                continue
            emb = speaker.embed(audio)
            same.append(sm.cosine(emb, speaker.embed(load_wav(corpus, target))))
            stranger = others[int(rng.integers(len(others)))]
            other.append(sm.cosine(emb, speaker.embed(load_wav(corpus, stranger))))
        del tts.voices[clone.name]
        result["cloning"][voice] = {"sentences": len(refs), "empty": empty,
                                    "similarity_to_voice": float(np.mean(same)) if same else float("nan"),
                                    "similarity_to_other_voices": float(np.mean(other)) if other else float("nan")}
        if progress:
            print(f"  clone {voice}: {result['cloning'][voice]}", flush=True)

    # Emotion: pitch and rate against neutral.
    if emotion_voice in tts.voices:
        texts = [u.text for u in test[: max(1, sentences // 3)]]
        stats = {}
        for emotion in ("neutral", *(e for e in emotions if e != "neutral")):
            f0s, rates = [], []
            for text in texts:
                audio = tts.synthesize(text, voice=emotion_voice, emotion=emotion).samples
                if audio.size < 2400:
                    continue
                f0, voiced = sm.f0_track(audio, 24000)
                if voiced.any():
                    f0s.append(float(np.median(f0[voiced])))
                rates.append(len(_heard(judge, audio)) / (audio.size / 24000))
            stats[emotion] = {"f0_hz": float(np.mean(f0s)) if f0s else float("nan"),
                              "phonemes_per_s": float(np.mean(rates)) if rates else float("nan"), "spoken": len(rates)}
        base = stats["neutral"]
        for emotion, s in stats.items():
            intended = EMOTION_PROSODY[emotion]
            s["f0_change"] = s["f0_hz"] / base["f0_hz"] - 1
            s["rate_change"] = s["phonemes_per_s"] / base["phonemes_per_s"] - 1
            s["intended_pitch"] = int(np.sign(intended.pitch))
            s["intended_rate"] = int(np.sign(round(intended.rate - 1, 3)))
            s["pitch_ok"] = intended.pitch == 0 or np.sign(s["f0_change"]) == np.sign(intended.pitch)
            s["rate_ok"] = abs(intended.rate - 1) < 1e-3 or np.sign(s["rate_change"]) == np.sign(intended.rate - 1)
        result["emotion"] = {"voice": emotion_voice, "sentences": len(texts), "per_emotion": stats}
    result["seconds"] = time.perf_counter() - t0
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from anima.talker.kodama import DEFAULT_WEIGHTS

    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="talker weights folder (with judge/ and speaker/)")
    parser.add_argument("--corpus", type=Path, default=Path("out/talker/corpus"))
    parser.add_argument("--voices", nargs="+", default=list(DEFAULT_VOICES))
    parser.add_argument("--sentences", type=int, default=12, help="test sentences per voice")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)


def run(args: argparse.Namespace) -> dict:
    import torch

    from anima.talker.kodama import KodamaTTS
    from anima.talker.model.phoneme_judge import PhonemeJudge
    from anima.talker.model.speaker_encoder import SpeakerEncoder

    torch.set_num_threads(1)
    for part in ("judge", "speaker"):
        if not (args.weights / part).is_dir():
            raise FileNotFoundError(f"{args.weights}: no {part}/ (export with --judge and --speaker)")
    tts = KodamaTTS.load(args.weights, seed=args.seed)
    result = evaluate_tts(tts, args.corpus, PhonemeJudge.from_pretrained(args.weights / "judge"),
                          SpeakerEncoder.from_pretrained(args.weights / "speaker"), args.voices, args.sentences, args.seed)
    text = json.dumps(result, indent=1, default=lambda o: bool(o) if isinstance(o, np.bool_) else float(o))
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    return result
