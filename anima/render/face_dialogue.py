"""Animate and render a two-party dialogue with UniLS: both faces from the two audio tracks.

``animate_pair`` runs one model for both speakers (the tracks swapped, batched) over whole
recordings; ``render_pair`` draws the two characters side by side (optionally with the ground truth
in a second row) into an MP4 with both voices mixed.

    python -m anima.render.face_dialogue --corpus out/face_corpus --split test --index 0 -o out/face/dialogue.mp4
    python -m anima.render.face_dialogue --wav a.wav b.wav -o out/face/pair.mp4    # any two recordings
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from anima.core.audio import load_wav
from anima.face import motion as motion_space
from anima.face.audio_features import log_mel, sanitize, tick_energy_db
from anima.face.data.corpus import FPS, SAMPLE_RATE, TICK, load_dialogue, read_manifest
from anima.face.model.unils import UniLS
from anima.face.unils import DEFAULT_WEIGHTS

logger = logging.getLogger(__name__)


def _load(weights: str | Path | None) -> tuple[UniLS, dict[str, np.ndarray], dict]:
    from safetensors.numpy import load_file

    from anima.face.model.unils import load_unils

    directory = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    model, meta = load_unils(directory)
    styles_path = directory / "styles.safetensors"
    styles = load_file(str(styles_path)) if styles_path.is_file() else {}
    return model, styles, meta


@torch.no_grad()
def animate_pair(model: UniLS, audio_a: np.ndarray, audio_b: np.ndarray, style_a: np.ndarray, style_b: np.ndarray,
                 sample_rate: int = SAMPLE_RATE, seed: int = 0, sampling=None) -> tuple[np.ndarray, np.ndarray]:
    """Both faces of a dialogue. audio_*: each party's own track (any rate, mono); style_*: (T_ref, 50)
    reference motion. Returns two (T, 112) face tracks at 25 fps, T = ceil(longer track / 40 ms).

    Tracks of different lengths are padded with silence (with a warning); non-finite samples are
    silence and samples beyond full scale are clipped.
    """
    if not model.config.audio:
        raise ValueError("animate_pair: needs an audio-conditioned model")
    a, b = sanitize(audio_a), sanitize(audio_b)
    if sample_rate != SAMPLE_RATE:
        fa, fb = log_mel(a, sample_rate=sample_rate), log_mel(b, sample_rate=sample_rate)
    else:
        fa, fb = log_mel(a), log_mel(b)
    if fa.shape[0] != fb.shape[0]:
        logger.warning("animate_pair: tracks differ in length (%d vs %d frames); padding the shorter with silence",
                       fa.shape[0], fb.shape[0])
    T = max(fa.shape[0], fb.shape[0], 1)
    silence = log_mel(np.zeros(TICK, dtype=np.float32))[0]
    feats = np.tile(silence, (2, T, 1))
    feats[0, :fa.shape[0]] = fa
    feats[1, :fb.shape[0]] = fb
    q = model.quantizer
    ref = q.normalize(torch.from_numpy(np.stack([np.asarray(style_a, np.float32), np.asarray(style_b, np.float32)])))
    own = torch.from_numpy(feats)
    other = torch.from_numpy(feats[::-1].copy())
    motion = q.denormalize(model.generate(ref, T, own, other, sampling=sampling, seed=seed)).numpy()
    return motion_space.from_motion(motion[0]), motion_space.from_motion(motion[1])


def render_pair(path: str | Path, faces: list[np.ndarray], audio: list[np.ndarray], names: tuple[str, str] = ("A", "B"),
                speaking: list[np.ndarray] | None = None, ground_truth: list[np.ndarray] | None = None,
                width: int = 640, height: int = 360, max_seconds: float | None = None, captions: list | None = None) -> Path:
    """Two characters side by side (row 1: the given faces; row 2: ``ground_truth`` if given) with
    both voices mixed into the soundtrack. faces / ground_truth: two (T, 112); audio: two 24 kHz tracks."""
    from anima.body.skeleton import REST_JOINTS
    from anima.render.character import CharacterRenderer, Overlay
    from anima.render.mp4 import MP4Writer

    renderer = CharacterRenderer(width, height)
    T = min(f.shape[0] for f in faces)
    if max_seconds is not None:
        T = min(T, int(max_seconds * FPS))
    n = T * TICK
    tracks = [np.pad(sanitize(a)[:n], (0, max(0, n - min(n, sanitize(a).size)))) for a in audio]
    mix = np.clip(0.8 * (tracks[0] + tracks[1]), -1.0, 1.0)
    levels = [np.clip((tick_energy_db(t, TICK) + 50.0) / 35.0, 0.0, 1.0) for t in tracks]
    if speaking is None:
        speaking = [tick_energy_db(t, TICK) > -45.0 for t in tracks]
    rows = [faces] + ([ground_truth] if ground_truth is not None else [])
    labels = ["model"] + (["ground truth"] if ground_truth is not None else [])
    writer = MP4Writer(path, 2 * width, len(rows) * height, fps=FPS, sample_rate=SAMPLE_RATE)
    try:
        for f in range(T):
            panels = []
            for row, label in zip(rows, labels, strict=True):
                images = []
                for k in range(2):
                    me, them = k, 1 - k
                    talking = "agent" if speaking[me][f] else "user" if speaking[them][f] else None
                    caption = ""
                    if captions is not None:
                        t = f / FPS
                        caption = next((c["text"] for c in captions if c["speaker"] == me and c["start_s"] - 0.2 <= t <= c["end_s"] + 0.3), "")
                    overlay = Overlay(
                        time_s=f / FPS, speaker=talking, agent_state="speaking" if speaking[me][f] else "listening",
                        caption=caption[:160], agent_name=f"{names[me]} ({label})", user_name=names[them],
                        agent_level=float(levels[me][f]), user_level=float(levels[them][f]),
                    )
                    images.append(renderer.draw(REST_JOINTS, row[k][f], overlay))
                panels.append(np.concatenate(images, axis=1))
            writer.write(np.concatenate(panels, axis=0), mix[f * TICK:(f + 1) * TICK])
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Animate both faces of a dialogue with UniLS and render an MP4.")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=None, help="checkpoint directory (default: shipped weights)")
    parser.add_argument("--corpus", type=Path, default=None, help="render a corpus dialogue (with its ground truth)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--wav", type=Path, nargs=2, default=None, metavar=("A_WAV", "B_WAV"), help="two recordings instead")
    parser.add_argument("--styles", nargs=2, default=None, help="style names for A and B (default: the first two)")
    parser.add_argument("--seconds", type=float, default=None, help="render at most this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    return run_cli(args)


def run_cli(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, args.threads))
    model, styles, _ = _load(args.weights)
    names = sorted(styles)
    chosen = args.styles or (names[:2] if len(names) >= 2 else names * 2)
    for s in chosen:
        if s not in styles:
            raise SystemExit(f"unknown style {s!r}; available: {', '.join(names)}")
    gt, captions, speaking = None, None, None
    if args.wav:
        audio = [load_wav(p, SAMPLE_RATE) for p in args.wav]
        style_a, style_b = styles[chosen[0]], styles[chosen[1]]
        labels = (args.wav[0].stem, args.wav[1].stem)
    elif args.corpus:
        ids = read_manifest(args.corpus)["splits"][args.split]
        if not 0 <= args.index < len(ids):
            raise SystemExit(f"--index {args.index}: the {args.split} split has {len(ids)} dialogues")
        d = load_dialogue(Path(args.corpus) / args.split / f"{ids[args.index]}.npz")
        audio = [d["audio"][k].astype(np.float32) / 32767.0 for k in range(2)]
        motion = [motion_space.to_motion(d["motion"][k]) for k in range(2)]
        style_a, style_b = motion[0][-100:], motion[1][-100:]  # the identities' own clips, as in the experiment
        gt = [d["motion"][0], d["motion"][1]]
        captions = [t for t in d["meta"]["turns"]]
        speaking = [d["speaking"][0], d["speaking"][1]]
        labels = tuple(s["voice"] for s in d["meta"]["speakers"])
    else:
        raise SystemExit("give --corpus (a corpus dialogue) or --wav A_WAV B_WAV")
    face_a, face_b = animate_pair(model, audio[0], audio[1], style_a, style_b, seed=args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    out = render_pair(args.output, [face_a, face_b], audio, labels, speaking, gt, max_seconds=args.seconds, captions=captions)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
