"""``anima talker eval``: every codec on the same corpus clips, side by side.

For each split (test sentences of the training voices; held-out voices) a seeded sample of clips is
drawn once, and every codec reconstructs exactly those clips. Per clip and codec: STOI, PESQ-NB,
PESQ-WB, pitch agreement (pYIN F0 RMSE in cents, gross pitch errors, voicing agreement), the codec's real-time factor,
and, when a judge is given, phoneme error rate of the original and of the reconstruction
(``phoneme_recognizer``: wav -> phoneme symbols) and speaker similarity original vs reconstruction
(``speaker_embedder``: wav -> vector). Results are summarised (mean and 95 % CI) per split and per
voice kind (``espeak`` / ``piper``, from the voice name before ``:``). A metric that cannot score a
clip is recorded in ``failures`` and left out of the means; it does not stop the run.

    anima talker eval --corpus out/talker/corpus --max-clips 20 --json out/talker/eval.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anima.talker.data.manifest import SILENCE, SPLITS, Utterance, load_wav, read_manifest
from anima.talker.training import speech_metrics as sm
from anima.talker.training.codecs import BASELINES, SAMPLE_RATE, Codec, TokenizerCodec, make_codec

logger = logging.getLogger(__name__)

DEFAULT_CORPUS = "out/talker/corpus"
# (key, column title, format) in table order; columns no clip has a value for are left out.
COLUMNS = (("stoi", "STOI", "{:.3f}"), ("pesq_nb", "PESQ-NB", "{:.2f}"), ("pesq_wb", "PESQ-WB", "{:.2f}"),
           ("f0_rmse_cents", "F0 cents", "{:.0f}"),
           ("f0_gross_error", "F0 gross", "{:.3f}"), ("voicing_agreement", "voiced", "{:.2f}"),
           ("per_original", "PER orig", "{:.3f}"), ("per", "PER rec", "{:.3f}"), ("speaker_sim", "spk sim", "{:.3f}"))
METRICS = tuple(key for key, _, _ in COLUMNS)


def voice_kind(utt: Utterance) -> str:
    """``espeak`` / ``piper`` (the voice name before its first ``:``)."""
    return utt.voice.split(":", 1)[0]


def select_clips(corpus: str | Path, splits: Sequence[str], max_clips: int, seed: int) -> dict[str, list[Utterance]]:
    """Up to ``max_clips`` utterances per split, drawn with ``seed`` (the same draw for every codec)."""
    if max_clips < 1:
        raise ValueError(f"max_clips must be at least 1, got {max_clips}")
    rng = np.random.default_rng(seed)
    chosen = {}
    for split in splits:
        utts = sorted(read_manifest(corpus, split), key=lambda u: u.id)
        picks = rng.permutation(len(utts))[:max_clips]
        chosen[split] = [utts[i] for i in sorted(picks)]
    if not any(chosen.values()):
        raise ValueError(f"{corpus}: no utterances in split(s) {', '.join(splits)}")
    return chosen


def _score(metrics: dict, failures: list, clip: str, codec: str, key: str, fn: Callable[[], Any]) -> None:
    """Run one metric; a ``MetricError`` becomes a recorded failure instead of stopping the run."""
    try:
        value = fn()
    except sm.MetricError as e:
        failures.append({"clip": clip, "codec": codec, "metric": key, "error": str(e)})
        logger.warning("%s / %s: %s", clip, codec, e)
        return
    if isinstance(value, dict):
        metrics.update(value)
    else:
        metrics[key] = value


def evaluate_codecs(
    corpus: str | Path,
    codecs: Sequence[Codec],
    splits: Sequence[str] = ("test", "heldout"),
    max_clips: int = 20,
    seed: int = 0,
    *,
    phoneme_recognizer: Callable[[np.ndarray], Sequence[str]] | None = None,
    speaker_embedder: Callable[[np.ndarray], np.ndarray] | None = None,
    pitch: bool = True,
    progress: bool = True,
) -> dict:
    """Run every codec on the same clips; returns a JSON-ready dict (see ``format_table``).

    Keys: ``clips`` (split -> utterance ids), ``codecs`` (name -> bitrate, delay, rtf),
    ``summary`` (rows of split, voice_kind ("all" too), codec, metric -> {mean, ci95, n}),
    ``per_clip`` (every clip x codec), ``failures`` (metric failures, per clip).
    """
    if not codecs:
        raise ValueError("no codecs to evaluate")
    names = [c.name for c in codecs]
    if len(set(names)) != len(names):
        raise ValueError(f"codec names must be unique, got {names}")
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    from tqdm import tqdm

    clips = select_clips(corpus, splits, max_clips, seed)
    per_clip, failures = [], []
    seconds = dict.fromkeys(names, 0.0)
    audio_s = 0.0
    todo = [(split, u) for split in splits for u in clips[split]]
    for split, utt in tqdm(todo, desc="eval", unit="clip", disable=not progress):
        x = load_wav(corpus, utt)
        if x.size == 0:
            failures.append({"clip": utt.id, "codec": None, "metric": None, "error": "empty WAV"})
            continue
        audio_s += x.size / SAMPLE_RATE
        ref_track = sm.f0_track(x, SAMPLE_RATE) if pitch else None
        ref_phonemes = [s for s, _, _ in utt.phonemes if s != SILENCE]
        clip_metrics: dict[str, float] = {}
        if phoneme_recognizer is not None:
            if ref_phonemes:
                clip_metrics["per_original"] = sm.phoneme_error_rate(ref_phonemes, list(phoneme_recognizer(x)))
            else:
                failures.append({"clip": utt.id, "codec": None, "metric": "per", "error": "no reference phonemes"})
        x_embedding = np.asarray(speaker_embedder(x)) if speaker_embedder is not None else None
        for codec in codecs:
            t0 = time.perf_counter()
            y = codec.reconstruct(x)
            seconds[codec.name] += time.perf_counter() - t0
            if y.shape != x.shape:
                raise RuntimeError(f"{codec.name}: reconstruction has shape {y.shape}, the input {x.shape}")
            m: dict[str, float] = dict(clip_metrics)
            _score(m, failures, utt.id, codec.name, "stoi", lambda: sm.stoi(x, y, SAMPLE_RATE))  # noqa: B023
            _score(m, failures, utt.id, codec.name, "pesq_nb", lambda: sm.pesq_nb(x, y, SAMPLE_RATE))  # noqa: B023
            _score(m, failures, utt.id, codec.name, "pesq_wb", lambda: sm.pesq_wb(x, y, SAMPLE_RATE))  # noqa: B023
            if ref_track is not None:
                _score(m, failures, utt.id, codec.name, "f0",
                       lambda: sm.compare_f0(ref_track, sm.f0_track(y, SAMPLE_RATE)))  # noqa: B023
            if phoneme_recognizer is not None and ref_phonemes:
                m["per"] = sm.phoneme_error_rate(ref_phonemes, list(phoneme_recognizer(y)))
            if x_embedding is not None:
                _score(m, failures, utt.id, codec.name, "speaker_sim",
                       lambda: sm.cosine(x_embedding, np.asarray(speaker_embedder(y))))  # noqa: B023
            per_clip.append({"clip": utt.id, "split": split, "voice": utt.voice, "voice_kind": voice_kind(utt),
                             "codec": codec.name, **m})

    summary = []
    for split in splits:
        rows = [r for r in per_clip if r["split"] == split]
        for kind in sorted({r["voice_kind"] for r in rows}) + ["all"]:
            for name in names:
                sel = [r for r in rows if r["codec"] == name and kind in ("all", r["voice_kind"])]
                if not sel:
                    continue
                stats = {k: sm.mean_ci95([r[k] for r in sel if k in r]) for k in METRICS}
                summary.append({"split": split, "voice_kind": kind, "codec": name, "clips": len(sel),
                                "metrics": {k: v for k, v in stats.items() if v["n"]}})
    return {
        "corpus": str(corpus), "splits": list(splits), "max_clips": max_clips, "seed": seed,
        "clips": {s: [u.id for u in us] for s, us in clips.items()},
        "audio_s": audio_s,
        "codecs": {c.name: {"bitrate": c.bitrate, "delay_samples": c.delay_samples,
                            "rtf": seconds[c.name] / audio_s if audio_s else None} for c in codecs},
        "summary": summary, "per_clip": per_clip, "failures": failures,
    }


def jsonable(obj: Any) -> Any:
    """The result with NaN/inf as null (strict JSON)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    return obj


def format_table(result: dict) -> str:
    """The summary as a fixed-width table: mean +- 95 % CI per metric, kbit/s and real-time factor."""
    present = [(k, t, f) for k, t, f in COLUMNS if any(k in r["metrics"] for r in result["summary"])]
    head = f"{'split':8} {'voices':7} {'codec':16} {'clips':>5} {'kbit/s':>7} {'RTF':>7} " + " ".join(f"{t:>13}" for _, t, _ in present)
    lines = [head, "-" * len(head)]
    for r in result["summary"]:
        info = result["codecs"][r["codec"]]
        cells = []
        for k, _, fmt in present:
            s = r["metrics"].get(k)
            if s is None:
                cells.append(f"{'-':>13}")
            else:
                ci = "" if not np.isfinite(s["ci95"]) else "±" + fmt.format(s["ci95"])
                cells.append(f"{fmt.format(s['mean']) + ci:>13}")
        rtf = "-" if info["rtf"] is None else f"{info['rtf']:.4f}"
        lines.append(f"{r['split']:8} {r['voice_kind']:7} {r['codec']:16} {r['clips']:5d} {info['bitrate'] / 1000:7.2f} {rtf:>7} " + " ".join(cells))
    if result["failures"]:
        lines.append(f"{len(result['failures'])} metric failure(s), e.g. {result['failures'][0]}")
    return "\n".join(lines)


def build_codecs(specs: Sequence[str], tokenizers: Sequence[str | Path] = ()) -> list[Codec]:
    """Baselines by name (``codecs.make_codec``) plus one ``TokenizerCodec`` per checkpoint directory."""
    codecs: list[Codec] = [make_codec(s) for s in specs]
    for directory in tokenizers:
        from anima.talker.model.tokenizer import SpeechTokenizer

        codecs.append(TokenizerCodec(SpeechTokenizer.from_pretrained(directory), name=f"tok:{Path(directory).name}"))
    return codecs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``anima talker eval``."""
    parser.add_argument("--corpus", default=DEFAULT_CORPUS, help="speech corpus folder (manifest.jsonl)")
    parser.add_argument("--splits", nargs="+", default=["test", "heldout"], choices=SPLITS)
    parser.add_argument("--max-clips", type=int, default=20, help="clips per split (the same for every codec)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clip draw")
    parser.add_argument("--codecs", nargs="*", default=list(BASELINES),
                        help=f"baselines: codec2-1200, codec2-700C, codec2-3200, opus-BITRATE, identity (default: {' '.join(BASELINES)})")
    parser.add_argument("--tokenizer", nargs="*", default=[], metavar="DIR", help="learned tokenizer checkpoint folder(s)")
    parser.add_argument("--judge", metavar="DIR", help="phoneme recogniser checkpoint: adds PER of originals and reconstructions")
    parser.add_argument("--speaker", metavar="DIR", help="speaker encoder checkpoint: adds speaker similarity")
    parser.add_argument("--no-pitch", action="store_true", help="skip the pYIN pitch metrics (the slowest part)")
    parser.add_argument("--json", type=Path, help="write the full result (summary, per clip, failures) here")


def run(args: argparse.Namespace) -> dict:
    """Evaluate, print the table, write the JSON; returns the result."""
    import torch

    torch.set_num_threads(1)
    codecs = build_codecs(args.codecs, args.tokenizer)
    recognizer = embedder = None
    if args.judge:
        from anima.talker.model.phoneme_judge import PhonemeJudge

        recognizer = PhonemeJudge.from_pretrained(args.judge).recognize
    if args.speaker:
        from anima.talker.model.speaker_encoder import SpeakerEncoder

        embedder = SpeakerEncoder.from_pretrained(args.speaker).embed
    result = evaluate_codecs(args.corpus, codecs, args.splits, args.max_clips, args.seed,
                             phoneme_recognizer=recognizer, speaker_embedder=embedder, pitch=not args.no_pitch)
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(jsonable(result), indent=1, allow_nan=False))
        print(f"wrote {args.json}")
    return result
