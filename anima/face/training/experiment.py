"""The paper's key experiment on the synthetic corpus: one-stage vs two-stage training.

Every model generates both speakers of every held-out dialogue (the same weights, the two audio
tracks swapped), free-running from its own samples, and is scored against the procedural ground
truth with ``anima.face.training.metrics``. The style clip is the last 4 s of the speaker's own track, and
those frames are left out of the scores.

    python -m anima.face.training.experiment --corpus out/face_corpus --split test \
        --model two-stage=out/face/stage2 --model one-stage=out/face/onestage \
        --model stage-1-prior=out/face/stage1 --out out/face/experiment.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from anima.face.data.corpus import Track, load_tracks
from anima.face.model.unils import SamplingConfig, UniLS, load_unils
from anima.face.training.metrics import TrackPair, evaluate

STYLE_FRAMES = 100
SILENCE = -2.0  # log-mel feature of digital silence


def style_clip(track: Track, frames: int = STYLE_FRAMES) -> np.ndarray:
    """The last ``frames`` of the track's motion. # (frames, 50)"""
    return track.motion[-frames:]


@torch.no_grad()
def generate_tracks(model: UniLS, tracks: list[Track], sampling: SamplingConfig | None = None, seed: int = 0,
                    batch: int = 8) -> list[np.ndarray]:
    """Free-running motion (T - 100, 50) for each track, in natural units, batched over tracks.
    (LoRA updates are merged into the weights first, as the runtime does.)"""
    model.generator.merge_lora()
    q = model.quantizer
    outs: list[np.ndarray] = [np.zeros(0)] * len(tracks)
    for start in range(0, len(tracks), batch):
        group = tracks[start:start + batch]
        n = [t.motion.shape[0] - STYLE_FRAMES for t in group]
        T = max(n)
        ref = torch.from_numpy(np.stack([style_clip(t) for t in group]))
        ref = q.normalize(ref)
        own = np.full((len(group), T, model.config.audio_dim), SILENCE, dtype=np.float32)
        other = own.copy()
        for i, t in enumerate(group):
            own[i, :n[i]] = t.own[:n[i]]
            other[i, :n[i]] = t.other[:n[i]]
        audio = model.config.audio
        motion = model.generate(ref, T, torch.from_numpy(own) if audio else None, torch.from_numpy(other) if audio else None,
                                sampling=sampling, seed=seed + start)
        motion = q.denormalize(motion).numpy()
        for i in range(len(group)):
            outs[start + i] = motion[i, :n[i]]
    return outs


def score(tracks: list[Track], predictions: list[np.ndarray]) -> dict[str, float]:
    pairs = []
    for t, p in zip(tracks, predictions, strict=True):
        n = p.shape[0]
        pairs.append(TrackPair(p, t.motion[:n], t.speaking[:n], t.energy_db[:n]))
    return evaluate(pairs)


def baseline_predictions(kind: str, tracks: list[Track]) -> list[np.ndarray]:
    """Reference rows: 'ground truth' (a perfect model) and 'static' (a frozen mean face: a zombie)."""
    out = []
    for t in tracks:
        n = t.motion.shape[0] - STYLE_FRAMES
        match kind:
            case "ground-truth":
                out.append(t.motion[:n].copy())
            case "static":
                out.append(np.repeat(t.motion[:n].mean(0, keepdims=True), n, axis=0))
            case _:
                raise KeyError(f"unknown baseline {kind!r}; valid: ground-truth, static")
    return out


def run_experiment(corpus: str | Path, models: dict[str, str | Path], split: str = "test", seeds: tuple[int, ...] = (0, 1),
                   sampling: SamplingConfig | list[SamplingConfig] | None = None, limit: int | None = None,
                   baselines: bool = True) -> dict:
    """Scores of each model (averaged over ``seeds``) and of the reference baselines.

    With several samplings, every model runs with each and its rows are named "name (T=..)".
    """
    tracks = load_tracks(corpus, split, limit)
    samplings = sampling if isinstance(sampling, list) else [sampling or SamplingConfig()]
    results: dict[str, dict] = {}
    if baselines:
        for kind in ("ground-truth", "static"):
            results[kind] = score(tracks, baseline_predictions(kind, tracks))
    for name, directory in models.items():
        model, meta = load_unils(directory)
        for s in samplings:
            runs, t0 = [], time.time()
            for seed in seeds:
                runs.append(score(tracks, generate_tracks(model, tracks, s, seed)))
            keys = runs[0].keys()
            row = {k: float(np.nanmean([r[k] for r in runs])) for k in keys}
            row["_stage"] = meta["config"].get("stage", "?")
            row["_steps"] = meta.get("step", 0)
            row["_temperature"] = s.temperature
            row["_top_k"] = s.top_k
            row["_generate_s"] = round(time.time() - t0, 1)
            label = name if len(samplings) == 1 else f"{name} (T={s.temperature:g}{f', top-{s.top_k}' if s.top_k else ''})"
            results[label] = row
    return {"corpus": str(corpus), "split": split, "tracks": len(tracks), "seeds": list(seeds),
            "seconds": float(sum(t.motion.shape[0] - STYLE_FRAMES for t in tracks) / 25.0), "results": results}


SPEAK_COLUMNS = (("speak_lip_max_err", "lip max err (LVE-p)"), ("speak_param_err", "param err (MHD-p)"),
                 ("speak_upper_dd", "upper DD (FDD-p)"), ("speak_head_dd_deg", "head DD ° (PDD-p)"),
                 ("speak_jaw_dd_deg", "jaw DD ° (JDD-p)"))
LISTEN_COLUMNS = (("listen_upper_dd", "upper DD (FDD-p)"), ("listen_head_dd_deg", "head DD ° (PDD-p)"),
                  ("listen_jaw_dd_deg", "jaw DD ° (JDD-p)"), ("listen_expr_fd", "expr FD (F-FID-p)"),
                  ("listen_pose_fd", "pose FD x1e3 (P-FID-p)"))
ACCEPT_COLUMNS = (("jaw_energy_r", "jaw-energy r"), ("jaw_energy_r_speaking", "r (speaking)"),
                  ("listen_std_ratio_head", "listen head std ratio"), ("listen_std_ratio_expr", "listen expr std ratio"))


def _fmt(key: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key == "listen_pose_fd":
        value *= 1e3
    return f"{value:.3f}"


def markdown_tables(report: dict) -> str:
    """The speaking / listening / acceptance tables of a ``run_experiment`` report, as markdown."""
    lines = []
    for title, cols in (("Speaking (own speech active)", SPEAK_COLUMNS), ("Listening (own speech not active)", LISTEN_COLUMNS),
                        ("Acceptance checks", ACCEPT_COLUMNS)):
        lines.append(f"**{title}** (lower is better{'' if cols is not ACCEPT_COLUMNS else '; except r: higher; ratios: 1.0 is ideal'})\n")
        lines.append("| model | " + " | ".join(label for _, label in cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for name, row in report["results"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(k, row.get(k, float('nan'))) for k, _ in cols) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One-stage vs two-stage face model experiment.")
    parser.add_argument("--corpus", type=Path, default=Path("out/face_corpus"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR", help="a trained UniLS checkpoint")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--temperature", default="1.0", help="sampling temperature(s), comma-separated")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="only the first N dialogues")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("out/face/experiment.json"))
    args = parser.parse_args(argv)
    return run_cli(args)


def run_cli(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, args.threads))
    models = {}
    for item in args.model:
        if "=" not in item:
            raise SystemExit(f"--model {item!r}: expected NAME=DIR")
        name, directory = item.split("=", 1)
        models[name] = directory
    seeds = tuple(int(s) for s in str(args.seeds).split(",") if s)
    samplings = [SamplingConfig(float(t), args.top_k) for t in str(args.temperature).split(",") if t]
    report = run_experiment(args.corpus, models, args.split, seeds, samplings if len(samplings) > 1 else samplings[0], args.limit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(markdown_tables(report))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
