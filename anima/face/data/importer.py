"""Import real face-capture data (tracked FLAME / ARKit parameters with audio) as a face corpus.

Expected layout (one directory per session; a session is a conversation of two people, or one
person alone: talking to camera, or motion without any audio for the stage-1 prior)::

    SRC/
      <session>/
        a.npz            speaker A's tracked parameters (required)
        a.wav            speaker A's own voice (optional: a close-talk mic or a separated track)
        b.npz, b.wav     speaker B (optional; without b.wav, B's audio is silence)
      <session>/ ...

Each ``.npz`` holds per-frame arrays (T frames) under any of these keys:

    fps                      scalar, the tracking frame rate (default 25); resampled to 25 fps
    arkit        (T, 52)     ARKit blendshape weights in ``params.ARKIT_NAMES`` order (e.g. from
                             MediaPipe's face landmarker), used as they are, or
    expression / exp (T, N)  FLAME expression coefficients (N <= 100); needs ``--expression-map``,
                             an (N, 52) least-squares map to ARKit weights fitted on paired frames
                             (FLAME's PCA basis is not ARKit: there is no identity map)
    jaw_pose / jaw (T, 3)    jaw axis-angle, radians (x opens the mouth)
    head_pose / global_pose / rotation (T, 3)   head axis-angle, radians (x pitch down,
                             y yaw to the subject's left, z roll: FLAME's own convention)
    neck_pose (T, 3)         added to the head pose when present
    pose (T, 6)              FLAME's [global(3), jaw(3)] when the two are stored together
    eye_pose / eyes (T, 6)   left eye then right eye axis-angle (x pitch down, y yaw left)

Audio may be any sample rate, mono or stereo (mixed down), and is resampled to 24 kHz. When the
audio and the motion disagree in length, the shorter one is padded (silence or the last frame)
and a warning names the session. Sessions are split into train / val / test by a seeded shuffle.

    python -m anima.face.data.importer SRC --out out/real_corpus [--expression-map map.npy]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from anima.core.audio import load_wav
from anima.face import params
from anima.face.audio_features import log_mel, tick_energy_db
from anima.face.data.corpus import CORPUS_VERSION, FPS, SAMPLE_RATE, TICK, Dialogue, save_dialogue

logger = logging.getLogger(__name__)

_HEAD_KEYS = ("head_pose", "global_pose", "rotation")


class FaceImportError(ValueError):
    """A session cannot be imported; the message names the file and the problem."""


def _key(data: dict, names: tuple[str, ...]) -> np.ndarray | None:
    for name in names:
        if name in data:
            return np.asarray(data[name], dtype=np.float64)
    return None


def _resample_frames(x: np.ndarray, src_fps: float, n_out: int | None = None) -> np.ndarray:
    """Linear interpolation of (T, D) frames from ``src_fps`` to 25 fps."""
    if abs(src_fps - FPS) < 1e-6:
        return x
    t_src = np.arange(x.shape[0]) / src_fps
    n = n_out if n_out is not None else max(1, int(np.floor((x.shape[0] - 1) / src_fps * FPS)) + 1)
    t_out = np.arange(n) / FPS
    return np.stack([np.interp(t_out, t_src, x[:, d]) for d in range(x.shape[1])], axis=1)


def face_from_tracking(path: Path, expression_map: np.ndarray | None = None) -> np.ndarray:
    """One tracked ``.npz`` -> (T, 112) face params at 25 fps (clipped into the valid ranges)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise FaceImportError(f"{path}: cannot read ({exc})") from None
    fps = float(data.get("fps", FPS))
    if not np.isfinite(fps) or fps <= 0:
        raise FaceImportError(f"{path}: fps must be positive, got {fps}")
    arkit = _key(data, ("arkit",))
    expr = _key(data, ("expression", "exp"))
    pose = _key(data, ("pose",))
    jaw = _key(data, ("jaw_pose", "jaw"))
    head = _key(data, _HEAD_KEYS)
    if pose is not None:
        if pose.ndim != 2 or pose.shape[1] != 6:
            raise FaceImportError(f"{path}: pose must be (T, 6) [global, jaw], got {pose.shape}")
        head = pose[:, :3] if head is None else head
        jaw = pose[:, 3:] if jaw is None else jaw
    neck = _key(data, ("neck_pose",))
    eyes = _key(data, ("eye_pose", "eyes"))
    if arkit is None and expr is None:
        raise FaceImportError(f"{path}: no 'arkit' (T, 52) or 'expression' (T, N) array; keys: {sorted(data)}")
    if arkit is None:
        if expression_map is None:
            raise FaceImportError(f"{path}: FLAME expressions need --expression-map (an (N, 52) map to ARKit weights)")
        if expr.ndim != 2 or expression_map.shape != (expr.shape[1], 52):
            raise FaceImportError(f"{path}: expression {expr.shape} does not fit the map {expression_map.shape}")
        arkit = expr @ expression_map
    if arkit.ndim != 2 or arkit.shape[1] != 52:
        raise FaceImportError(f"{path}: arkit must be (T, 52), got {arkit.shape}")
    T = arkit.shape[0]
    parts = {"jaw": jaw, "head": head, "neck": neck, "eyes": eyes}
    for name, arr in parts.items():
        want = 6 if name == "eyes" else 3
        if arr is not None and (arr.ndim != 2 or arr.shape != (T, want)):
            raise FaceImportError(f"{path}: {name} must be ({T}, {want}), got {arr.shape}")
    face = np.zeros((T, params.FACE_DIM))
    face[:, :52] = arkit
    if jaw is not None:
        face[:, 100:102] = jaw[:, :2]
    else:  # only the weight is known: the angle follows it
        face[:, 100] = arkit[:, params.ARKIT_INDEX["jawOpen"]] * params.JAW_OPEN_MAX_RAD
    if head is not None:
        face[:, 103:106] = head + (neck if neck is not None else 0.0)
    if eyes is not None:
        face[:, 106:108] = eyes[:, 0:2]
        face[:, 109:111] = eyes[:, 3:5]
    bad = ~np.isfinite(face)
    if bad.any():
        logger.warning("%s: %d non-finite values set to 0", path, int(bad.sum()))
        face[bad] = 0.0
    face = _resample_frames(face, fps)
    from anima.face import motion as motion_space

    return motion_space.from_motion(motion_space.to_motion(face.astype(np.float32)))


def _speech_mask(energy_db: np.ndarray, margin_db: float = 15.0, hangover: int = 5) -> np.ndarray:
    """Own-speech frames from the level: above the track's noise floor + margin, gaps < 0.2 s bridged."""
    floor = np.percentile(energy_db, 10)
    active = energy_db > max(floor + margin_db, -55.0)
    out = active.copy()
    idx = np.flatnonzero(active)
    for a, b in zip(idx[:-1], idx[1:], strict=True):
        if 1 < b - a <= hangover:
            out[a:b] = True
    return out


def import_session(session: Path, expression_map: np.ndarray | None = None) -> Dialogue:
    """One session directory -> a ``Dialogue`` with one or two speakers."""
    speakers = [s for s in ("a", "b") if (session / f"{s}.npz").is_file()]
    if not speakers:
        raise FaceImportError(f"{session}: no a.npz (tracked parameters of speaker A)")
    faces = [face_from_tracking(session / f"{s}.npz", expression_map) for s in speakers]
    audios, has_audio = [], []
    for s in ("a", "b"):
        wav = session / f"{s}.wav"
        if wav.is_file():
            try:
                audios.append(load_wav(wav, SAMPLE_RATE))
            except ValueError as exc:
                raise FaceImportError(f"{wav}: {exc}") from None
            has_audio.append(True)
        else:
            audios.append(np.zeros(0, dtype=np.float32))
            has_audio.append(False)
    n_frames = max(max(f.shape[0] for f in faces), max(-(-a.size // TICK) for a in audios))
    for s, f in zip(speakers, faces, strict=True):
        if f.shape[0] != n_frames:
            logger.warning("%s: %s.npz has %d frames, the session %d; padding with its last frame", session, s, f.shape[0], n_frames)
    for s, a, h in zip(("a", "b"), audios, has_audio, strict=True):
        if h and -(-a.size // TICK) != n_frames:
            logger.warning("%s: %s.wav covers %d frames, the session %d; padding with silence", session, s, -(-a.size // TICK), n_frames)
    motion = np.zeros((len(speakers), n_frames, params.FACE_DIM), dtype=np.float32)
    for k, f in enumerate(faces):
        motion[k, :f.shape[0]] = f
        motion[k, f.shape[0]:] = f[-1]
    audio = np.zeros((len(speakers), n_frames * TICK), dtype=np.float32)
    for k, s in enumerate(speakers):
        a = audios["ab".index(s)]
        audio[k, :min(a.size, audio.shape[1])] = a[:audio.shape[1]]
    if len(speakers) == 1 and has_audio[1]:  # B talks but was not tracked: keep B's voice as "other"
        other = np.zeros((1, n_frames * TICK), dtype=np.float32)
        other[0, :min(audios[1].size, other.shape[1])] = audios[1][:other.shape[1]]
    features = np.stack([log_mel(a) for a in audio])
    energy = np.stack([tick_energy_db(a, TICK) for a in audio])
    speaking = np.stack([_speech_mask(e) if has_audio["ab".index(s)] else np.zeros(n_frames, bool)
                         for e, s in zip(energy, speakers, strict=True)])
    if len(speakers) == 1:  # the "other" track is stored as a second row without motion
        b_audio = other[0] if has_audio[1] else np.zeros(n_frames * TICK, dtype=np.float32)
        audio = np.concatenate([audio, b_audio[None]])
        features = np.concatenate([features, log_mel(b_audio)[None]])
        energy = np.concatenate([energy, tick_energy_db(b_audio, TICK)[None]])
    meta = {"session": session.name, "speakers": speakers, "source": "import", "duration_s": n_frames / FPS}
    d = Dialogue(audio, motion, features[:, :n_frames], speaking, energy[:, :n_frames], meta)
    d.has_audio = tuple(has_audio["ab".index(s)] for s in speakers)  # type: ignore[attr-defined]
    return d


def import_corpus(src: str | Path, out: str | Path, expression_map: str | Path | None = None, seed: int = 0,
                  val_fraction: float = 0.05, test_fraction: float = 0.05) -> dict:
    """Import every session under ``src`` into the corpus format at ``out``; returns the manifest."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FaceImportError(f"{src}: not a directory")
    sessions = sorted(p for p in src.iterdir() if p.is_dir() and (p / "a.npz").is_file())
    if not sessions:
        raise FaceImportError(f"{src}: no session directories with an a.npz (see `anima face import --help`)")
    emap = None
    if expression_map is not None:
        emap = np.load(expression_map, allow_pickle=False)
        if emap.ndim != 2 or emap.shape[1] != 52:
            raise FaceImportError(f"{expression_map}: expected an (N, 52) array, got {emap.shape}")
    order = np.random.default_rng(seed).permutation(len(sessions))
    n_test = int(round(len(sessions) * test_fraction))
    n_val = int(round(len(sessions) * val_fraction))
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for rank, i in enumerate(order):
        session = sessions[i]
        split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
        d = import_session(session, emap)
        has = getattr(d, "has_audio", (True,) * d.motion.shape[0])
        if d.motion.shape[0] == 1:  # store a single speaker as one track with the "other" audio row
            save_single(out / split / f"{session.name}.npz", d, has[0])
        else:
            save_dialogue(out / split / f"{session.name}.npz", d, tuple(has))
        splits[split].append(session.name)
    manifest = {"version": CORPUS_VERSION, "sample_rate": SAMPLE_RATE, "fps": FPS, "source": f"import:{src}",
                "splits": splits}
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def save_single(path: Path, d: Dialogue, has_audio: bool) -> None:
    """A one-speaker session: row 0 is the tracked speaker, row 1 only carries the other audio."""
    save_dialogue(path, d, (has_audio,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Import tracked FLAME/ARKit parameters with audio as a face corpus.")
    parser.add_argument("src", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--expression-map", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    manifest = import_corpus(args.src, args.out, args.expression_map, args.seed)
    print(json.dumps({k: len(v) for k, v in manifest["splits"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
