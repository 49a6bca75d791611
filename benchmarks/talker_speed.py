"""Speed of the neural talker on this CPU: tokenizer round trip, TTS first chunk, talker real-time factor.

    python benchmarks/talker_speed.py [--weights anima/assets/weights/talker | --untrained] [--threads 1]
                                      [--sentences 8] [--json benchmarks/results/talker_speed.json]

- tokenizer: encode + decode of 10 s of speech, at once and streamed in 80 ms chunks (x real time);
- TTS: seconds from ``stream(text)`` to the first 80 ms chunk (phonemise + prefill + the delay's steps
  + one decoder frame), and the talker's real-time factor (compute seconds per second of speech) over
  whole sentences.
``--untrained`` builds the small configs with random weights: same shapes, same cost per frame (a random
model rarely ends an utterance, so each sentence is capped at ``--max-frames`` frames).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTENCES = [
    "Where is the Nautilus bound tonight, captain?",
    "The sea is calm, and the lamps are lit.",
    "I have never seen such creatures in all my life.",
    "Ned Land wants to leave the ship as soon as he can.",
    "We shall dive at dawn.",
    "Professor, look at the coral forest below us!",
    "Nobody knows my name, and nobody ever will.",
    "The pressure at this depth would crush a whale.",
]


def _untrained_weights(folder: Path) -> Path:
    """Small tokenizer + small TTS with random weights and a two-voice bank (the corpus inventory size)."""
    import numpy as np
    import torch

    from anima.checkpoint import save_checkpoint
    from anima.talker.data.phonemize import phonemize
    from anima.talker.model.kodama_tts import KodamaTTS, KodamaTTSConfig
    from anima.talker.model.tokenizer import CONFIGS, SpeechTokenizer, TokenizerConfig, config_to_dict

    torch.manual_seed(0)
    symbols = ["_"] + sorted({p for s in SENTENCES for p in phonemize(s)} - {"_"})
    cfg = TokenizerConfig(**{**config_to_dict(CONFIGS["small"]), "teacher_dim": len(symbols)})
    save_checkpoint(folder / "tokenizer", SpeechTokenizer(cfg), {"tokenizer": config_to_dict(cfg)}, 0)
    tts = KodamaTTS(KodamaTTSConfig.preset("small", symbols=tuple(symbols)))
    save_checkpoint(folder / "tts", tts, tts.config_dict(), 0)
    rng = np.random.default_rng(0)
    voice = {"speaker": rng.normal(size=128).tolist(), "prompt_phonemes": phonemize("We shall dive at dawn."),
             "prompt_codes": rng.integers(0, 1024, (8, 30)).tolist()}
    (folder / "voices.json").write_text(json.dumps({"default": "v", "voices": {"v": voice}}))
    return folder


def tokenizer_speed(tokenizer, seconds: float = 10.0) -> dict:
    import torch

    wav = torch.randn(1, int(seconds * 24000)) * 0.1
    t0 = time.perf_counter()
    codes = tokenizer.encode(wav)
    tokenizer.decode(codes)
    offline = time.perf_counter() - t0
    enc, dec = tokenizer.new_encoder_state(), tokenizer.new_decoder_state()
    t0 = time.perf_counter()
    for start in range(0, wav.shape[1], 1920):
        tokenizer.decode_step(dec, tokenizer.encode_step(enc, wav[:, start:start + 1920]))
    streamed = time.perf_counter() - t0
    return {"audio_s": seconds, "offline_x_realtime": seconds / offline, "streamed_x_realtime": seconds / streamed,
            "params": sum(p.numel() for p in tokenizer.parameters())}


def tts_speed(tts, sentences: list[str], max_frames: int) -> dict:
    firsts, rtfs, speech = [], [], 0.0
    original = tts.model.stream

    def capped(*a, **k):
        k.setdefault("max_frames", max_frames)
        return original(*a, **k)

    tts.model.stream = capped
    try:
        for text in sentences:
            t0 = time.perf_counter()
            first = None
            n = 0
            for chunk in tts.stream(text, emotion="neutral"):
                if first is None:
                    first = time.perf_counter() - t0
                n += chunk.samples.size
            total = time.perf_counter() - t0
            firsts.append(first)
            rtfs.append(total / max(n / 24000, 1e-9))
            speech += n / 24000
    finally:
        tts.model.stream = original
    return {"sentences": len(sentences), "speech_s": speech, "first_chunk_ms_median": 1000 * statistics.median(firsts),
            "first_chunk_ms_max": 1000 * max(firsts), "rtf_median": statistics.median(rtfs), "rtf_max": max(rtfs),
            "first_chunk_ms": [round(1000 * f, 1) for f in firsts], "rtf": [round(r, 3) for r in rtfs],
            "tts_params": sum(p.numel() for p in tts.model.parameters()), "frames_cap": max_frames}


def main() -> None:
    from anima.talker.kodama import DEFAULT_WEIGHTS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--untrained", action="store_true", help="random small models (speed only)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sentences", type=int, default=8)
    ap.add_argument("--max-frames", type=int, default=40, help="cap per sentence (80 ms frames)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "talker_speed.json")
    args = ap.parse_args()

    import torch

    from anima.talker.kodama import KodamaTTS

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = _untrained_weights(Path(tmp)) if args.untrained else args.weights
        tts = KodamaTTS.load(folder)
        tts.synthesize("Warm up.")  # first-call allocations are not what a session pays per turn
        tok = tokenizer_speed(tts.tokenizer)
        speed = tts_speed(tts, (SENTENCES * 4)[: args.sentences], args.max_frames)
    result = {"machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores", "threads": args.threads,
              "weights": "untrained small configs" if args.untrained else str(args.weights), "tokenizer": tok, "tts": speed}
    print(f"talker speed ({result['weights']}, {args.threads} thread(s), {result['machine']})")
    print(f"tokenizer ({tok['params'] / 1e6:.1f} M params): encode+decode {tok['offline_x_realtime']:.1f}x real time, "
          f"streamed in 80 ms chunks {tok['streamed_x_realtime']:.1f}x")
    print(f"TTS ({speed['tts_params'] / 1e6:.1f} M params): first chunk median {speed['first_chunk_ms_median']:.0f} ms "
          f"(max {speed['first_chunk_ms_max']:.0f}), talker RTF median {speed['rtf_median']:.3f} (max {speed['rtf_max']:.3f}) "
          f"over {speed['sentences']} sentences, {speed['speech_s']:.1f} s of speech")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
