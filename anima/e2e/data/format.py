"""The dialogue corpus on disk: one folder per conversation, written atomically, read by windows.

    DIR/manifest.json              the corpus: format version, generator settings, one row per conversation
    DIR/c000042/meta.json          identity, script, turn events, transcript, prompts, file hashes
    DIR/c000042/agent.flac         the agent as the playout played it (24 kHz mono, 16-bit)
    DIR/c000042/user.flac          the user's microphone (24 kHz mono, 16-bit)
    DIR/c000042/motion.npz         face (T, 112) / joints (T, 22, 3) / joint_vel / root / prompt_id at 25 fps,
                                   body263 (T20, 263) at 20 fps

A conversation is written to ``c000042.tmp/`` and renamed when every file is in place, so a folder
without the ``.tmp`` suffix and with its ``meta.json`` is complete; anything else is redone. The
data card is docs/dialogues.md.

    window = load_window("DIR/c000042", start_s=3.0, dur_s=8.0)   # aligned arrays, zero-padded past the end
    corpus = open_corpus("DIR", split="train")                    # bad conversations reported and skipped
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "anima-dialogues/1"
SAMPLE_RATE = 24_000
FPS = 25  # face, joints, prompts, speaking masks: one frame per clock tick
BODY_FPS = 20  # HumanML3D-263
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 960
FACE_DIM = 112
BODY_DIM = 263
AUDIO_FILES = ("agent.flac", "user.flac")
MOTION_FILE = "motion.npz"
META_FILE = "meta.json"
MOTION_KEYS = {"face": (FACE_DIM,), "joints": (22, 3), "joint_vel": (22, 3), "root": (3,), "prompt_id": ()}


class CorpusError(ValueError):
    """A conversation on disk is missing, truncated or inconsistent; the message names the folder and what."""


def split_for_seed(seed: int) -> str:
    """train / val / test by the conversation's seed (90 / 5 / 5), stable across runs and machines."""
    bucket = int(hashlib.sha256(str(seed).encode()).hexdigest()[:8], 16) % 20
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_complete(conv_dir: Path) -> bool:
    """Whether a finished conversation is there (renamed into place, meta.json readable)."""
    meta = conv_dir / META_FILE
    if conv_dir.name.endswith(".tmp") or not meta.is_file():
        return False
    try:
        json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return True


def write_conversation(conv_dir: Path, agent: np.ndarray, user: np.ndarray, motion: dict[str, np.ndarray],
                       meta: dict[str, Any], extra: dict[str, str | Path] | None = None) -> dict[str, Any]:
    """Write one conversation atomically: everything into ``NAME.tmp/``, then rename to ``NAME/``.

    ``agent``/``user``: (N,) float32 at 24 kHz, N = T * 960; ``motion``: the arrays of MOTION_KEYS
    (T frames) plus ``body263`` (T20, 263). ``extra``: more files by name, as text or a path to move in
    (the script, a video). Returns ``meta`` with the file hashes and shapes added.
    """
    import soundfile as sf

    frames = motion["face"].shape[0]
    if agent.shape != (frames * SAMPLES_PER_FRAME,) or user.shape != agent.shape:
        raise ValueError(f"write_conversation: audio {agent.shape}/{user.shape} does not match {frames} frames of 960 samples")
    for key, shape in MOTION_KEYS.items():
        if motion[key].shape != (frames, *shape):
            raise ValueError(f"write_conversation: motion[{key!r}] is {motion[key].shape}, expected {(frames, *shape)}")
    tmp = conv_dir.with_name(conv_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, samples in zip(AUDIO_FILES, (agent, user), strict=True):
        sf.write(tmp / name, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    np.savez_compressed(tmp / MOTION_FILE, **motion)
    for name, content in (extra or {}).items():
        if isinstance(content, Path):
            shutil.move(str(content), tmp / name)
        else:
            (tmp / name).write_text(content)
    meta = dict(meta, format=FORMAT, frames=frames, duration_s=frames / FPS, body_frames=int(motion["body263"].shape[0]),
                files={name: sha256(tmp / name) for name in (*AUDIO_FILES, MOTION_FILE)},
                sizes={name: (tmp / name).stat().st_size for name in (*AUDIO_FILES, MOTION_FILE)},
                extra_files=sorted(extra or {}))
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    if conv_dir.exists():
        shutil.rmtree(conv_dir)
    os.replace(tmp, conv_dir)
    return meta


# -- reading ----------------------------------------------------------------------------------------

def read_meta(conv_dir: str | Path) -> dict[str, Any]:
    """A conversation's meta.json, checked for the fields the loader needs (CorpusError if not)."""
    conv_dir = Path(conv_dir)
    path = conv_dir / META_FILE
    if not path.is_file():
        raise CorpusError(f"{conv_dir}: no {META_FILE} (not a finished conversation)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CorpusError(f"{conv_dir}: {META_FILE} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CorpusError(f"{conv_dir}: {META_FILE} is not format {FORMAT!r}")
    for key in ("frames", "body_frames", "events", "files"):
        if key not in meta:
            raise CorpusError(f"{conv_dir}: {META_FILE} lacks {key!r}")
    return meta


def _check_sizes(conv_dir: Path, meta: dict[str, Any]) -> None:
    """Every file there, with the size it had when written (a truncated copy is caught without reading it)."""
    for name in (*AUDIO_FILES, MOTION_FILE):
        if not (conv_dir / name).is_file():
            raise CorpusError(f"{conv_dir}: {name} is missing")
        size = (conv_dir / name).stat().st_size
        if size != meta.get("sizes", {}).get(name, size):
            raise CorpusError(f"{conv_dir}: {name} is {size} bytes, {meta['sizes'][name]} when written (truncated or changed)")


def verify(conv_dir: str | Path, hashes: bool = False) -> dict[str, Any]:
    """Check a conversation's files are all there with the sizes and lengths (and, with ``hashes``, the bytes) of its meta.

    Returns the meta; raises CorpusError naming the first problem.
    """
    import soundfile as sf

    conv_dir = Path(conv_dir)
    meta = read_meta(conv_dir)
    _check_sizes(conv_dir, meta)
    for name in (*AUDIO_FILES, MOTION_FILE):
        if hashes and sha256(conv_dir / name) != meta["files"].get(name):
            raise CorpusError(f"{conv_dir}: {name} does not match its hash in {META_FILE} (changed or truncated)")
    for name in AUDIO_FILES:
        try:
            info = sf.info(str(conv_dir / name))
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise CorpusError(f"{conv_dir}: {name} is not readable audio ({exc})") from None
        if info.samplerate != SAMPLE_RATE or info.frames != meta["frames"] * SAMPLES_PER_FRAME:
            raise CorpusError(f"{conv_dir}: {name} has {info.frames} samples at {info.samplerate} Hz, "
                              f"expected {meta['frames'] * SAMPLES_PER_FRAME} at {SAMPLE_RATE}")
    _motion(conv_dir, meta)
    return meta


def _motion(conv_dir: Path, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    try:
        with np.load(conv_dir / MOTION_FILE) as z:
            motion = {k: z[k] for k in (*MOTION_KEYS, "body263")}
    except Exception as exc:  # OSError, KeyError, zipfile.BadZipFile, EOFError...: a truncated or foreign archive
        raise CorpusError(f"{conv_dir}: {MOTION_FILE} is unreadable ({type(exc).__name__}: {exc})") from None
    frames = meta["frames"]
    for key, shape in MOTION_KEYS.items():
        if motion[key].shape != (frames, *shape):
            raise CorpusError(f"{conv_dir}: {MOTION_FILE}[{key}] is {motion[key].shape}, expected {(frames, *shape)}")
    if motion["body263"].shape != (meta["body_frames"], BODY_DIM):
        raise CorpusError(f"{conv_dir}: {MOTION_FILE}[body263] is {motion['body263'].shape}, expected ({meta['body_frames']}, {BODY_DIM})")
    return motion


def _slice(array: np.ndarray, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``array[start:start+length]`` zero-padded outside the array, and the mask of real rows."""
    out = np.zeros((length, *array.shape[1:]), dtype=array.dtype)
    valid = np.zeros(length, dtype=bool)
    lo, hi = max(start, 0), min(start + length, array.shape[0])
    if hi > lo:
        out[lo - start : hi - start] = array[lo:hi]
        valid[lo - start : hi - start] = True
    return out, valid


def _audio(path: Path, start: int, length: int, total: int) -> np.ndarray:
    import soundfile as sf

    out = np.zeros(length, dtype=np.float32)
    lo, hi = max(start, 0), min(start + length, total)
    if hi > lo:
        try:
            data, _ = sf.read(str(path), start=lo, stop=hi, dtype="float32", always_2d=False)
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise CorpusError(f"{path}: unreadable audio ({exc})") from None
        if data.shape[0] != hi - lo:
            raise CorpusError(f"{path}: truncated: read {data.shape[0]} samples of {hi - lo} at {lo}")
        out[lo - start : lo - start + data.shape[0]] = data
    return out


def _mask(segments: list[tuple], start_frame: int, length: int) -> np.ndarray:
    """Per 25 fps frame: whether any segment covers the frame's start time. # (length,)"""
    t = (start_frame + np.arange(length)) / FPS
    mask = np.zeros(length, dtype=bool)
    for a, b, *_ in segments:
        mask |= (t >= a) & (t < b)
    return mask


def load_window(conv_dir: str | Path, start_s: float, dur_s: float, as_torch: bool = False) -> dict[str, Any]:
    """Aligned arrays for ``[start_s, start_s + dur_s)`` of one conversation (any length, any start).

    Frame k of a 25 fps array covers [start + k/25, start + (k+1)/25), its 960 audio samples are
    ``audio[k*960:(k+1)*960]``; body263 row j is at start + j/20. Past either end everything is zero
    and the ``valid*`` masks are False. Returns::

        agent_audio, user_audio    (N,) float32, N = round(dur_s * 25) * 960
        face (F, 112), joints (F, 22, 3), joint_vel (F, 22, 3), root (F, 3), prompt_id (F,) int (-1 outside)
        agent_speaking, user_speaking (F,) bool   ground-truth speech (played audio / the user's clips)
        valid (F,) bool; body263 (B, 263), valid_body (B,) bool, B = round(dur_s * 20)
        prompts: list[str] (prompt_id indexes it); events: meta events in the window, times relative to start_s

    Raises CorpusError on a missing, truncated or inconsistent conversation.
    """
    conv_dir = Path(conv_dir)
    if not (dur_s > 0 and np.isfinite(dur_s) and np.isfinite(start_s)):
        raise ValueError(f"load_window: need a finite start and a positive duration, got start_s={start_s}, dur_s={dur_s}")
    meta = read_meta(conv_dir)
    _check_sizes(conv_dir, meta)
    motion = _motion(conv_dir, meta)
    f0, n_frames = int(round(start_s * FPS)), max(1, int(round(dur_s * FPS)))
    b0, n_body = int(round(start_s * BODY_FPS)), max(1, int(round(dur_s * BODY_FPS)))
    total = meta["frames"] * SAMPLES_PER_FRAME
    out: dict[str, Any] = {
        "agent_audio": _audio(conv_dir / "agent.flac", f0 * SAMPLES_PER_FRAME, n_frames * SAMPLES_PER_FRAME, total),
        "user_audio": _audio(conv_dir / "user.flac", f0 * SAMPLES_PER_FRAME, n_frames * SAMPLES_PER_FRAME, total),
    }
    for key in MOTION_KEYS:
        out[key], valid = _slice(motion[key], f0, n_frames)
    out["prompt_id"] = np.where(valid, out["prompt_id"], -1).astype(np.int64)
    out["valid"] = valid
    out["body263"], out["valid_body"] = _slice(motion["body263"], b0, n_body)
    segments = meta.get("segments", {})
    out["agent_speaking"] = _mask(segments.get("agent", []), f0, n_frames) & valid
    out["user_speaking"] = _mask(segments.get("user", []), f0, n_frames) & valid
    t0, t1 = f0 / FPS, (f0 + n_frames) / FPS
    out["prompts"] = list(meta.get("prompts", []))
    out["events"] = [dict(e, t=round(e["t"] - t0, 4)) for e in meta["events"] if t0 <= e["t"] < t1]
    if as_torch:
        import torch

        out = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in out.items()}
    return out


@dataclass
class Corpus:
    """The usable conversations of a corpus folder, and the ones skipped with the reason why."""

    root: Path
    conversations: list[dict[str, Any]] = field(default_factory=list)  # each: meta + "dir"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (folder, reason)

    def __len__(self) -> int:
        return len(self.conversations)

    @property
    def hours(self) -> float:
        return sum(m["duration_s"] for m in self.conversations) / 3600

    def window(self, index: int, start_s: float, dur_s: float, as_torch: bool = False) -> dict[str, Any] | None:
        """``load_window`` of conversation ``index``; None (and the conversation reported and dropped
        from later sampling by the caller) if it turns out to be corrupt."""
        conv = self.conversations[index]
        try:
            return load_window(conv["dir"], start_s, dur_s, as_torch)
        except CorpusError as exc:
            self._skip(conv["dir"], str(exc))
            return None

    def _skip(self, conv_dir: str | Path, reason: str) -> None:
        log.warning("dialogue corpus: skipping %s: %s", conv_dir, reason)
        self.skipped.append((str(conv_dir), reason))


def open_corpus(root: str | Path, split: str | None = None, hashes: bool = False) -> Corpus:
    """The finished conversations under ``root`` (optionally one split); broken ones are logged and listed
    in ``Corpus.skipped``, never raised. ``hashes`` also checks every file against its sha256."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such corpus folder")
    corpus = Corpus(root)
    for conv_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if conv_dir.name.endswith(".tmp"):
            corpus._skip(conv_dir, "unfinished (a .tmp folder: the generator was stopped while writing it)")
            continue
        try:
            meta = verify(conv_dir, hashes=hashes)
        except CorpusError as exc:
            corpus._skip(conv_dir, str(exc))
            continue
        if split is None or meta.get("split") == split:
            corpus.conversations.append(dict(meta, dir=str(conv_dir)))
    return corpus
