"""The Piper talker on this CPU: first chunk, real-time factor, cancel latency, emotion tempo, timing accuracy.

    python benchmarks/talker_piper.py [--threads 1] [--json benchmarks/results/talker_piper.json]

- speed: seconds from ``stream(text)`` to the first 40 ms chunk, and compute seconds per second of
  speech over whole utterances (the model loaded once before, as in a server);
- cancel: seconds from ``cancel.set()`` (after the first chunk) until the stream stops;
- emotion: utterance length per emotion relative to neutral (mean over the sentences);
- timing: the phoneme timings the talker reports (the model's own durations) against the other honest
  method at hand, DTW transfer of an espeak-ng rendition's phoneme events onto the Piper audio
  (``anima.talker.data.alignment``). Two measures, both from the audio alone:
  * fricative energy: the share of 4-11 kHz energy (where s z S Z f T sit) inside the spans a method
    labels as those fricatives, divided by the spans' share of the speech time (1 = no better than
    chance; higher = the spans sit on the hiss). The model's timings are also shifted by +-20/40 ms:
    if they are right the score peaks at 0;
  * the median |start difference| between the two methods on phonemes matched by symbol;
- words: a word starts at its phoneme group when the phonemes have one group per word (timed by the
  model), else at its share of the sentence's phonemes; the error of that fallback is measured on
  the sentences where both exist.
"""

from __future__ import annotations

import argparse
import difflib
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from talker_speed import SENTENCES  # noqa: E402  the Kodama speed benchmark's sentences: the two talkers compare

LONG = " ".join(SENTENCES[:4])
SR = 24000
FRICATIVES = {"s", "z", "S", "Z", "f", "T", "s2"}
SHIFTS_S = (-0.04, -0.02, 0.0, 0.02, 0.04)


def _phones(events, duration: float) -> list[tuple[str, float, float]]:
    """(symbol without stress, start, end) from phoneme events: each ends where the next starts."""
    starts = [(e.text.lstrip("',"), e.time_s) for e in events if e.kind == "phoneme"]
    return [(s, t, starts[i + 1][1] if i + 1 < len(starts) else duration) for i, (s, t) in enumerate(starts)]


def _hiss(audio: np.ndarray) -> tuple[np.ndarray, float]:
    """Per 10 ms frame 4-11 kHz energy (STFT), and the frame hop in seconds."""
    hop, n_fft = 240, 512
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(audio, (n_fft // 2, n_fft // 2)), n_fft)[::hop]
    spec = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2  # (T, 257)
    freqs = np.fft.rfftfreq(n_fft, 1 / SR)
    return spec[:, (freqs >= 4000) & (freqs <= 11000)].sum(axis=1), hop / SR


def _fricative_score(audio: np.ndarray, phones, shift: float = 0.0) -> float:
    """Share of high-band energy in the fricative spans over the spans' share of the speech time."""
    energy, hop = _hiss(audio)
    mask = np.zeros(energy.size, bool)
    speech = np.zeros(energy.size, bool)
    for symbol, a, b in phones:
        i, j = int(round((a + shift) / hop)), int(round((b + shift) / hop))
        i, j = max(i, 0), min(max(j, i + 1), energy.size)
        if symbol != "_":
            speech[i:j] = True
        if symbol in FRICATIVES:
            mask[i:j] = True
    if not mask.any():
        return float("nan")
    share = energy[mask].sum() / max(energy[speech | mask].sum(), 1e-12)
    return float(share / (mask.sum() / max((speech | mask).sum(), 1)))


def _speech_span(audio: np.ndarray, floor_db: float = 40.0, pad_s: float = 0.05) -> tuple[int, int]:
    """First and one-past-last sample within ``floor_db`` of the loudest 10 ms frame, padded (as the corpus trims)."""
    hop = SR // 100
    n = audio.size // hop
    level = 10 * np.log10(np.mean(audio[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1) + 1e-12)
    active = np.flatnonzero(level > level.max() - floor_db)
    pad = int(SR * pad_s)
    return max(active[0] * hop - pad, 0), min((active[-1] + 1) * hop + pad, audio.size)


def _dtw_phones(tts_espeak, text: str, audio: np.ndarray):
    """The DTW method: espeak en-us rendition's phoneme events warped onto ``audio`` (both trimmed)."""
    from anima.talker.data.alignment import dtw_transfer, phonemes_from_events, trim_silence

    ref = tts_espeak.synthesize(text)
    ref_phones = phonemes_from_events(ref.events, ref.samples.size / SR)
    ref_audio, ref_phones = trim_silence(ref.samples, ref_phones, SR)
    a, b = _speech_span(audio)
    warped = dtw_transfer(ref_audio, ref_phones, audio[a:b], SR)
    return [(s.lstrip("',"), t0 + a / SR, t1 + a / SR) for s, t0, t1 in warped]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per synthesis")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "talker_piper.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from anima.talker.espeak import EspeakTTS
    from anima.talker.piper import EMOTION_PROSODY, PiperTTS

    t0 = time.perf_counter()
    tts = PiperTTS(threads=args.threads).load()
    load_s = time.perf_counter() - t0
    tts.synthesize("Warm up.")

    # Speed: first chunk and RTF per utterance.
    rows = []
    for text in SENTENCES + [LONG]:
        t0 = time.perf_counter()
        stream = tts.stream(text)
        first = next(stream)
        first_s = time.perf_counter() - t0
        chunks = [first, *stream]
        total_s = time.perf_counter() - t0
        audio_s = sum(c.samples.size for c in chunks) / SR
        rows.append({"text": text, "chars": len(text), "audio_s": round(audio_s, 3),
                     "first_chunk_ms": round(first_s * 1000, 1), "rtf": round(total_s / audio_s, 4)})

    # Cancel latency.
    cancels = []
    for _ in range(3):
        cancel = threading.Event()
        stream = tts.stream(LONG, cancel=cancel)
        next(stream)
        t0 = time.perf_counter()
        cancel.set()
        for _ in stream:
            pass
        cancels.append(time.perf_counter() - t0)

    # Emotion -> tempo.
    base = {t: statistics.mean(tts.synthesize(t).samples.size for _ in range(2)) for t in SENTENCES[:4]}
    emotion = {}
    for name in EMOTION_PROSODY:
        ratio = statistics.mean(tts.synthesize(t, emotion=name).samples.size / base[t] for t in base)
        emotion[name] = round(ratio, 3)

    # Timing accuracy.
    espeak = EspeakTTS(voice="en-us")
    timing = []
    for text in SENTENCES:
        clip = tts.synthesize(text)
        model = _phones(clip.events, clip.samples.size / SR)
        dtw = _dtw_phones(espeak, text, clip.samples)
        a = [s for s, _, _ in model]
        b = [s for s, _, _ in dtw]
        diffs = []
        for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
            for k in range(block.size):
                if a[block.a + k] != "_":
                    diffs.append(abs(model[block.a + k][1] - dtw[block.b + k][1]))
        timing.append({
            "text": text,
            "fricative_model": {f"{s:+.2f}": round(_fricative_score(clip.samples, model, s), 3) for s in SHIFTS_S},
            "fricative_dtw": round(_fricative_score(clip.samples, dtw), 3),
            "matched": len(diffs), "model_phonemes": len(model),
            "median_abs_diff_ms": round(1000 * float(np.median(diffs)), 1) if diffs else None,
        })

    # Word starts: the phoneme-share fallback against the group starts, where there is one group per word.
    from anima.talker import piper as P

    model = P._load(P.VOICES["joe"], args.threads)
    word_err = []
    for text in SENTENCES:
        spans = P._word_spans(text, 0, len(text))
        with model.lock:
            phon = [p for sent in model.voice.phonemize(text) for p in (sent + [" "]) if p in model.id_map]
        groups = [g for g in "".join(phon).split(" ") if any(c in P._IPA for c in g)]
        if len(groups) != len(spans):
            continue
        exact = P._word_starts(model, text, spans, phon)
        share = P._word_starts(model, text, spans, phon, share=True)
        words = sorted([(i, 0, f"e{k}") for k, i in enumerate(exact)] + [(i, 0, f"s{k}") for k, i in enumerate(share)])
        _, events = P._synthesise(model, P._Piece(phon, words), P.Prosody())
        at = {e.text: e.time_s for e in events if e.kind == "word"}
        word_err += [abs(at[f"e{k}"] - at[f"s{k}"]) for k in range(len(spans))]

    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 4)

    fric = {k: round(statistics.median(t["fricative_model"][k] for t in timing), 3) for k in timing[0]["fricative_model"]}
    summary = {
        "load_s": round(load_s, 2),
        "first_chunk_ms_median": med("first_chunk_ms"),
        "first_chunk_ms_max": max(r["first_chunk_ms"] for r in rows),
        "rtf_median": med("rtf"),
        "cancel_ms_max": round(1000 * max(cancels), 1),
        "emotion_length_vs_neutral": emotion,
        "fricative_score_model_by_shift_s": fric,
        "fricative_score_dtw": round(statistics.median(t["fricative_dtw"] for t in timing), 3),
        "word_share_fallback_error_ms": {"median": round(1000 * float(np.median(word_err)), 1),
                                         "p90": round(1000 * float(np.percentile(word_err, 90)), 1),
                                         "words": len(word_err)},
        "model_vs_dtw_median_abs_start_diff_ms": round(statistics.median(
            t["median_abs_diff_ms"] for t in timing if t["median_abs_diff_ms"] is not None), 1),
    }

    print(f"{'utterance':48s} {'audio s':>8s} {'first ms':>9s} {'RTF':>7s}")
    for r in rows:
        print(f"{r['text'][:48]:48s} {r['audio_s']:8.2f} {r['first_chunk_ms']:9.1f} {r['rtf']:7.3f}")
    print(f"\nload {summary['load_s']} s; first chunk median {summary['first_chunk_ms_median']} ms "
          f"(max {summary['first_chunk_ms_max']}); RTF median {summary['rtf_median']}; "
          f"cancel <= {summary['cancel_ms_max']} ms")
    print("length vs neutral: " + ", ".join(f"{k} {v:.2f}" for k, v in emotion.items()))
    print(f"\n{'timing method':34s} {'fricative score (1 = chance)':>28s}")
    for k, v in fric.items():
        print(f"{'model durations, shifted ' + k + ' s':34s} {v:28.3f}")
    print(f"{'DTW from espeak-ng':34s} {summary['fricative_score_dtw']:28.3f}")
    print(f"model vs DTW: median |start difference| {summary['model_vs_dtw_median_abs_start_diff_ms']} ms")
    w = summary["word_share_fallback_error_ms"]
    print(f"word starts by phoneme share vs by phoneme group: median {w['median']} ms, p90 {w['p90']} ms "
          f"({w['words']} words)")

    result = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
              "summary": summary, "utterances": rows, "timing": timing}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
