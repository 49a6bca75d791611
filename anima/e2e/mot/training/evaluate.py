"""Score a trained mixture of transformers: lip sync, silent commands, schedules, guidance, the frozen expert.

    python -m anima.e2e.mot.training.evaluate --mot out/mot/runs/expert --json out/mot/eval.json

- **Lip sync** (acceptance >= 0.6): text -> speech + behaviour on test sentences of the dialogue
  corpus (never trained on); Pearson correlation of jaw opening with the energy of the generated
  speech (``metrics.lip_sync``). Beside it, the same measure for behaviour generated from given
  audio (teacher-forced codes of the sentence as the agent said it) and for the corpus's own face
  on that audio (what the training data scores: the procedural face that drove the dialogues).
- **Silent commands**: each command said in phrasings never used in training (``HELDOUT_PHRASES``),
  several seeds; ``detectors.detect`` on the generated face and body: right / wrong / none.
- **Schedules**: uniform, pyramid and autoregressive matrices on the same sentences (given audio,
  so only the schedule differs): FID against the real behaviour of those sentences (our evaluator,
  4 s windows), jerk, lip sync, and the cost (behaviour-pass calls and seconds per second of behaviour).
- **Guidance**: none, vanilla (full vs masked) and the three-condition history guidance.
- **Speech ability**: NLL of the test utterances' audio codes (talker corpus, teacher-forced) and the
  PER of generated sentences by our phoneme judge, for the speech expert as the model has it now
  (frozen: identical to the TTS; dense: fine-tuned; lora: adapters merged).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anima.e2e.mot.behaviour import unpack
from anima.e2e.mot.sampling import GUIDANCE, SCHEDULES, SamplerSettings, SampleStats
from anima.e2e.mot.tasks import FRAME_S, behave_to_audio, silent_command, speak

SHIPPED = SamplerSettings()  # the schedule the runtime uses (sampling.SamplerSettings defaults)


def _face_body(tokens: np.ndarray, history: int) -> tuple[np.ndarray, np.ndarray]:
    return unpack(tokens[history:])


def _real(item, history: int) -> np.ndarray:
    """An item's recorded behaviour as the model sees it: its last ``history`` tokens before the speech, then the speech's."""
    return item.behaviour[-(history + item.codes.shape[1]):]


def lip_sync_eval(mot, tokenizer, items: list, settings: SamplerSettings, seed: int = 0) -> dict[str, Any]:
    """Lip sync on generated speech, on given audio, and of the corpus face on that audio."""
    from anima.e2e.mot.training.metrics import frozen_fraction, lip_sync

    H = mot.config.history
    generated, given, corpus, lags, frozen = [], [], [], [], []
    for i, it in enumerate(items):
        hist = _real(it, H)[:H]
        _, audio, tokens = speak(mot, tokenizer, it.phonemes, it.speaker, it.emotion, hist, settings, seed=seed + i)
        face, _ = _face_body(tokens, H)
        r, lag = lip_sync(face[: len(audio) * 25 // 24000], audio)
        generated.append(r)
        lags.append(lag)
        frozen.append(frozen_fraction(face))
        real_audio = tokenizer.decode(torch.as_tensor(it.codes.astype(np.int64))[None])[0].numpy()
        tokens = behave_to_audio(mot, it.phonemes, it.codes, it.speaker, it.emotion, hist, settings, seed=seed + i)
        face, _ = _face_body(tokens, H)
        given.append(lip_sync(face[: len(real_audio) * 25 // 24000], real_audio)[0])
        real_face, _ = _face_body(_real(it, H), H)
        corpus.append(lip_sync(real_face[: len(real_audio) * 25 // 24000], real_audio)[0])
    return {"sentences": len(items), "generated_speech": _mean(generated), "generated_lag_frames": _mean(lags),
            "given_audio": _mean(given), "corpus_face_on_same_audio": _mean(corpus), "frozen_fraction": _mean(frozen),
            "per_sentence_generated": generated}


def command_eval(mot, seeds: range, settings: SamplerSettings, heldout: bool = True) -> dict[str, Any]:
    """Silent commands in held-out phrasings: how often the detector finds the commanded behaviour."""
    from anima.e2e.mot.commands import COMMANDS, phrase_for
    from anima.e2e.mot.detectors import detect
    from anima.talker.data.phonemize import phonemize
    from anima.talker.model.kodama_tts import normalize_phonemes

    H = mot.config.history
    table = {c: {"right": 0, "wrong": 0, "none": 0} for c in COMMANDS}
    confusions: dict[str, dict[str, int]] = {c: {} for c in COMMANDS}
    for command in COMMANDS:
        for seed in seeds:
            phrase = phrase_for(command, seed, heldout=heldout)
            tokens = silent_command(mot, normalize_phonemes(phonemize(phrase)), 3.0, None, settings, seed=seed)
            face, body = _face_body(tokens, H)
            found = detect(face, body)
            key = "right" if found == command else "none" if found is None else "wrong"
            table[command][key] += 1
            confusions[command][str(found)] = confusions[command].get(str(found), 0) + 1
    n = sum(sum(v.values()) for v in table.values())
    return {"per_command": table, "confusions": confusions, "generations": n,
            "right": sum(v["right"] for v in table.values()) / n, "wrong": sum(v["wrong"] for v in table.values()) / n,
            "none": sum(v["none"] for v in table.values()) / n}


def schedule_eval(mot, tokenizer, evaluator, items: list, settings: SamplerSettings, seed: int = 0) -> dict[str, float]:
    """One sampler setting on given audio: FID vs the real behaviour, jerk, lip sync, cost per second."""
    from anima.e2e.mot.training.metrics import jerk, lip_sync

    H = mot.config.history
    stats = SampleStats()
    real, fake, jerks, syncs = [], [], [], []
    seconds = 0.0
    for i, it in enumerate(items):
        hist = _real(it, H)[:H]
        tokens = behave_to_audio(mot, it.phonemes, it.codes, it.speaker, it.emotion, hist, settings, seed=seed + i,
                                 stats=stats)
        seconds += it.codes.shape[1] * FRAME_S
        face, body = _face_body(tokens, H)
        fake.append((face, body))
        real.append(_face_body(_real(it, H), H))
        jerks.append(jerk(face, body))
        audio = tokenizer.decode(torch.as_tensor(it.codes.astype(np.int64))[None])[0].numpy()
        syncs.append(lip_sync(face[: len(audio) * 25 // 24000], audio)[0])
    return {"fid": evaluator.fid(real, fake), "body_jerk_mean": _mean([j["body_jerk_mean"] for j in jerks]),
            "face_param_jerk_mean": _mean([j["face_param_jerk_mean"] for j in jerks]), "lip_sync": _mean(syncs),
            "forwards_per_s": stats.forwards / seconds, "compute_s_per_s": stats.seconds / seconds,
            "behaviour_seconds": seconds}


def speech_ability(speech, tokenizer, judge, corpus: str | Path, sentences: int = 12, nll_utterances: int = 64,
                   voice: str = "espeak:en-us", seed: int = 0) -> dict[str, float]:
    """The speech expert alone: audio-code NLL on talker test utterances, PER of generated test sentences."""
    from anima.talker.data.manifest import read_manifest, read_phonemes
    from anima.talker.model.kodama_tts import make_sequence, normalize_phonemes
    from anima.talker.training import speech_metrics as sm
    from anima.talker.training.tts_data import collate, load_items

    config = speech.config
    if tuple(read_phonemes(corpus)) != config.symbols:
        raise ValueError(f"{corpus}: its phoneme inventory is not the speech expert's")
    items = load_items(corpus, "test", config)[:nll_utterances]
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(items), 8):
            chunk = items[i:i + 8]
            seqs = [make_sequence(config, it.text.tolist(), torch.from_numpy(it.codes.astype(np.int64))) for it in chunk]
            batch = collate(seqs, torch.from_numpy(np.stack([it.speaker for it in chunk])),
                            torch.from_numpy(np.stack([it.emotion for it in chunk])))
            _, stats = speech.loss(batch)
            n = int((batch["target"] != -100).sum())
            total += stats["loss"] * n
            count += n
    picks = [u for u in read_manifest(corpus, "test") if u.voice == voice][:sentences]
    speakers = {u.id: np.load(Path(corpus) / "speakers" / f"{u.id}.npy") for u in picks}
    refs, hyps = [], []
    with torch.no_grad():
        for k, u in enumerate(picks):
            phonemes = normalize_phonemes([p[0] for p in u.phonemes])
            codes = speech.generate(phonemes, speaker=torch.from_numpy(speakers[u.id]), emotion=u.emotion, seed=seed + k,
                                    max_frames=300)
            audio = tokenizer.decode(codes[None])[0].numpy() if codes.shape[1] else np.zeros(0, np.float32)
            refs.append([p for p in phonemes if not p.startswith("_")])
            hyps.append(judge.recognize(audio) if audio.size else [])
    return {"audio_code_nll": total / max(count, 1), "nll_utterances": len(items), "per_generated": sm.error_rate(refs, hyps),
            "per_sentences": len(picks), "voice": voice}


def merged_speech(mot):
    """The speech expert as the mixture computes it, as a plain Kodama TTS (LoRA adapters merged in)."""
    import copy

    speech = copy.deepcopy(mot.speech)
    if mot.config.mode == "lora":
        with torch.no_grad():
            for blk, lora in zip(speech.blocks, mot.behaviour.lora, strict=True):
                for name, linear in (("qkv", blk.attn.qkv), ("proj", blk.attn.proj), ("fc", blk.mlp[0]), ("out", blk.mlp[2])):
                    linear.weight += lora[name].b @ lora[name].a
    return speech.eval()


def _mean(values) -> float:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def test_items(data: str | Path, limit: int, min_s: float = 0.0, seed: int = 0) -> list:
    """Seeded test-split sentences of the MoT data (optionally at least ``min_s`` long)."""
    from anima.e2e.mot.training.data import load_split

    items = [it for it in load_split(data, "test") if it.codes.shape[1] * FRAME_S >= min_s]
    rng = np.random.default_rng(seed)
    return [items[i] for i in sorted(rng.permutation(len(items))[:limit])]


def evaluate(mot_dir: str | Path, data: str | Path, evaluator_dir: str | Path, tokenizer_dir: str | Path,
             judge_dir: str | Path | None, talker_corpus: str | Path | None, sentences: int = 16, command_seeds: int = 4,
             parts: tuple[str, ...] = ("lip", "commands", "schedules", "guidance", "speech"), steps: int = SHIPPED.steps,
             progress: bool = True) -> dict[str, Any]:
    from anima.e2e.mot.model import load_mot
    from anima.e2e.mot.training.evaluator import BehaviourEvaluator
    from anima.talker.model.tokenizer import SpeechTokenizer

    t0 = time.perf_counter()
    mot = load_mot(mot_dir)
    tokenizer = SpeechTokenizer.from_pretrained(tokenizer_dir)
    result: dict[str, Any] = {"mot": str(mot_dir), "mode": mot.config.mode, "shipped": vars(SHIPPED) | {"steps": steps}}
    shipped = SamplerSettings(**(vars(SHIPPED) | {"steps": steps}))

    def say(msg):
        if progress:
            print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    if "lip" in parts:
        result["lip_sync"] = lip_sync_eval(mot, tokenizer, test_items(data, sentences), shipped)
        say(f"lip sync {json.dumps({k: v for k, v in result['lip_sync'].items() if k != 'per_sentence_generated'})}")
    if "commands" in parts:
        result["commands"] = command_eval(mot, range(1000, 1000 + command_seeds), shipped)
        say(f"commands right {result['commands']['right']:.2f} wrong {result['commands']['wrong']:.2f}")
    long_items = test_items(data, sentences, min_s=4.0) if {"schedules", "guidance"} & set(parts) else []
    if long_items:
        evaluator = BehaviourEvaluator.from_pretrained(evaluator_dir)
    if "schedules" in parts:
        result["schedules"] = {}
        for kind in SCHEDULES:
            result["schedules"][kind] = schedule_eval(mot, tokenizer, evaluator, long_items,
                                                      SamplerSettings(**(vars(shipped) | {"schedule": kind})))
            say(f"schedule {kind}: {result['schedules'][kind]}")
    if "guidance" in parts:
        result["guidance"] = {}
        for g in GUIDANCE:
            result["guidance"][g] = schedule_eval(mot, tokenizer, evaluator, long_items,
                                                  SamplerSettings(**(vars(shipped) | {"guidance": g})))
            say(f"guidance {g}: {result['guidance'][g]}")
    if "speech" in parts and judge_dir is not None and talker_corpus is not None:
        from anima.talker.model.phoneme_judge import PhonemeJudge

        judge = PhonemeJudge.from_pretrained(judge_dir)
        result["speech"] = speech_ability(merged_speech(mot), tokenizer, judge, talker_corpus)
        say(f"speech {result['speech']}")
    result["seconds"] = time.perf_counter() - t0
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mot", type=Path, required=True, help="a MoT run folder")
    parser.add_argument("--data", type=Path, default=Path("out/mot/data"))
    parser.add_argument("--evaluator", type=Path, default=Path("out/mot/evaluator"))
    parser.add_argument("--tokenizer", type=Path, default=Path("out/talker/runs/tokenizer_dec1500_nogan"))
    parser.add_argument("--judge", type=Path, default=Path("out/talker/runs/judge"))
    parser.add_argument("--talker-corpus", type=Path, default=Path("out/talker/corpus"))
    parser.add_argument("--sentences", type=int, default=16)
    parser.add_argument("--command-seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=SHIPPED.steps, help="denoising steps of the shipped schedule")
    parser.add_argument("--parts", nargs="+", default=["lip", "commands", "schedules", "guidance", "speech"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = evaluate(args.mot, args.data, args.evaluator, args.tokenizer, args.judge, args.talker_corpus, args.sentences,
                      args.command_seeds, tuple(args.parts), args.steps)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
