"""The body motion dataset: both mocap sets as HumanML3D-263 clips with texts and a fixed split.

    anima body build-dataset [--mocap ../shared/data/mocap] [--out out/body/dataset]
    data = load_dataset("out/body/dataset")          # builds on first use if missing
    clip = data.clips[0]; clip.features              # (T, 263) float32, 20 fps

Pipeline per BVH: read (``bvh.read_bvh``) -> the 22 HumanML3D joints in metres, Y up
(``rigs.to_humanml_joints``) -> linear resampling to 20 fps -> bone lengths of
``skeleton.REST_OFFSETS`` (``humanml3d.uniform_skeleton``) -> 263-D features
(``humanml3d.extract_features``).

Texts. Bandai Namco: from the file name ``dataset-1_{content}_{style}_{id}``: "a person bows in a
happy way" (the "normal" style adds nothing: "a person bows"). CMU: the trial's "Motion
Description" in ``index.csv``, verbatim (e.g. "walk", "playground - climb, jump down").
Every clip also gets per-frame segments: a still lead-in or tail in a rest pose (every joint
slower than ``STILL_SPEED`` m/s, hands down, head up, for at least ``STILL_MIN_S`` seconds) is
labelled ``IDLE_PROMPT`` ("a person stands still"), the rest carries the clip's text; a tail's
label starts ``SETTLE_S`` before the rest pose is reached, so the return to rest is learned under
the idle prompt. That gives the streaming model real stand -> action -> stand transitions and an
idle prompt that brings the hands down.

Split (fixed, by clip): ``sha1(clip id) % 10`` is 0 -> test, 1 -> val, else train, except that
a Bandai content with a single clip (call, punch, kick, slash, dance-long, dance-short) is always
train. The clip id is ``bandai/<file stem>`` or ``cmu/<subject>_<trial>``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from anima.body.data.bvh import read_bvh
from anima.body.data.humanml3d import extract_features, feature_stats, uniform_skeleton
from anima.body.data.rigs import to_humanml_joints
from anima.body.paths import DEFAULT_MOCAP, DEFAULT_OUT
from anima.body.skeleton import BODY_FPS, resample_joints
from anima.body.text import GESTURE_PROMPTS, IDLE_PROMPT, TextEncoder

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 2: still segments require a rest pose; 3: the idle tail includes the settling
STILL_SPEED = 0.45  # m/s, fastest joint, smoothed over 0.5 s
REST_WRIST_MAX_M = 1.0  # both wrists below this height (hands down; the rest pose has them at 0.87 m)
REST_HEAD_MIN_M = 1.45  # head above this height (upright; 1.58 m at rest)
STILL_MIN_S = 0.5
SETTLE_S = 1.0  # the idle tail label starts this long before the rest pose is reached
MIN_ACTION_S = 1.0  # ... but leaves at least this much of the clip to its own text
MIN_FRAMES = 12  # clips shorter than this at 20 fps are skipped (less than 3 latent tokens)

CONTENT_TEXT = {
    "walk": "walks forward", "run": "runs forward", "dash": "sprints forward", "walk-back": "walks backward",
    "walk-left": "walks to the left", "walk-right": "walks to the right", "bow": "bows",
    "bye": "waves goodbye", "byebye": "waves goodbye with both hands", "guide": "gestures to guide the way",
    "respond": "raises a hand to respond", "call": "calls out to someone", "punch": "punches",
    "kick": "kicks", "slash": "slashes with a sword", "dance-long": "dances", "dance-short": "dances",
}
STYLE_TEXT = {
    "normal": "", "happy": "in a happy way", "sad": "in a sad way", "angry": "in an angry way",
    "proud": "in a proud way", "not-confident": "in an unconfident way", "masculinity": "in a masculine way",
    "feminine": "in a feminine way", "childish": "like a child", "old": "like an old person",
    "tired": "in a tired way", "active": "in an energetic way", "musical": "like in a musical",
    "giant": "like a giant", "chimpira": "like a thug",
}
SPLITS = ("train", "val", "test")


@dataclass
class Clip:
    id: str
    source: str  # "bandai" or "cmu"
    path: str  # the BVH, relative to the mocap folder
    text: str
    split: str
    features: np.ndarray  # (T, 263) float32
    segments: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end) frames, text

    def frame_texts(self) -> list[str]:
        """The text active at every frame. # T strings"""
        out = [self.text] * len(self.features)
        for start, end, text in self.segments:
            out[start:end] = [text] * (end - start)
        return out


@dataclass
class MotionDataset:
    clips: list[Clip]
    mean: np.ndarray  # (263,) over the train split
    std: np.ndarray  # (263,)
    embeddings: dict[str, np.ndarray]  # text -> (384,) for every clip text, segment text and gesture prompt

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]

    def normalise(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def denormalise(self, features: np.ndarray) -> np.ndarray:
        return features * self.std + self.mean

    @property
    def num_frames(self) -> int:
        return sum(len(c.features) for c in self.clips)


def bandai_text(stem: str) -> str:
    """'dataset-1_bow_happy_001' -> 'a person bows in a happy way'."""
    match = re.fullmatch(r"dataset-1_(.+)_([a-z\-]+)_(\d+)", stem)
    if not match or match.group(1) not in CONTENT_TEXT or match.group(2) not in STYLE_TEXT:
        raise ValueError(f"not a Bandai Namco dataset-1 clip name: {stem!r}")
    style = STYLE_TEXT[match.group(2)]
    return f"a person {CONTENT_TEXT[match.group(1)]}" + (f" {style}" if style else "")


def cmu_descriptions(index_csv: Path) -> dict[tuple[int, int], str]:
    """(subject, trial) -> "Motion Description" from the CMU index."""
    out = {}
    with open(index_csv, newline="", encoding="utf-8", errors="replace") as f:
        for row in csv.DictReader(f):
            try:
                out[(int(row["Subject"]), int(row["Trial #"]))] = row["Motion Description"].strip()
            except (KeyError, ValueError):
                continue
    return out


def split_of(clip_id: str) -> str:
    h = int(hashlib.sha1(clip_id.encode()).hexdigest(), 16) % 10
    return "test" if h == 0 else "val" if h == 1 else "train"


def joints_from_bvh(path: str | Path) -> np.ndarray:
    """A BVH file as 20 fps HumanML3D joints with uniform bone lengths. # (T, 22, 3)"""
    bvh = read_bvh(path)
    joints = resample_joints(to_humanml_joints(bvh), bvh.fps, BODY_FPS)
    return uniform_skeleton(joints)


def still_segments(joints: np.ndarray) -> list[tuple[int, int]]:
    """Still lead-in and tail of a clip as (start, end) frame ranges of the feature frames.

    Still = every joint slower than ``STILL_SPEED`` (smoothed over 0.5 s) *and* a rest pose: both
    wrists below ``REST_WRIST_MAX_M`` and the head above ``REST_HEAD_MIN_M`` (a held wave or a held
    bow is slow but not "standing still"). Heights are those of the uniform skeleton.
    """
    speed = np.linalg.norm(np.diff(joints, axis=0), axis=-1).max(-1) * BODY_FPS  # (T-1,) fastest joint
    width = BODY_FPS // 2
    smooth = np.convolve(np.pad(speed, (width // 2, width - width // 2 - 1), mode="edge"), np.ones(width) / width, "valid")
    floor = joints[..., 1].min()
    rest = (joints[1:, [20, 21], 1].max(-1) - floor < REST_WRIST_MAX_M) & (joints[1:, 15, 1] - floor > REST_HEAD_MIN_M)
    still = (smooth < STILL_SPEED) & rest
    n = len(still)
    min_len = int(STILL_MIN_S * BODY_FPS)
    out = []
    lead = int(np.argmin(still)) if not still.all() else n
    if lead >= min_len and lead < n:
        out.append((0, lead))
    tail = int(np.argmin(still[::-1])) if not still.all() else 0
    if tail >= min_len:
        # The idle label starts SETTLE_S before the rest pose is reached, so that the return to
        # rest (hands coming down) is learned under the idle prompt, not under the gesture's.
        action_end = max(lead + int(MIN_ACTION_S * BODY_FPS), n - tail - int(SETTLE_S * BODY_FPS))
        if action_end < n - min_len:
            out.append((action_end, n))
    return out


def _sources(mocap: Path) -> list[tuple[str, str, Path, str]]:
    """(clip id, source, path, text) for every BVH in both sets."""
    items = []
    bandai = mocap / "bandai-namco-1" / "data"
    for path in sorted(bandai.glob("*.bvh")):
        items.append((f"bandai/{path.stem}", "bandai", path, bandai_text(path.stem)))
    cmu = mocap / "cmu-iclone"
    if (cmu / "index.csv").is_file():
        descriptions = cmu_descriptions(cmu / "index.csv")
        for path in sorted(cmu.glob("*/*.bvh")):
            subject, trial = (int(x) for x in path.stem.split("_"))
            text = descriptions.get((subject, trial))
            if text is None:
                log.warning("%s: no description in index.csv; skipped", path)
                continue
            items.append((f"cmu/{path.stem}", "cmu", path, text))
    return items


def build_dataset(mocap: str | Path = DEFAULT_MOCAP, out: str | Path = DEFAULT_OUT, progress: bool = True,
                  encoder: TextEncoder | None = None, limit: int | None = None) -> MotionDataset:
    """Convert every BVH, compute train statistics and text embeddings, write the cache to ``out``."""
    mocap, out = Path(mocap), Path(out)
    items = _sources(mocap)
    if not items:
        raise FileNotFoundError(f"no BVH files under {mocap} (expected bandai-namco-1/data and cmu-iclone)")
    if limit:
        items = items[:limit]
    contents = [re.sub(r"_[a-z\-]+_\d+$", "", cid) for cid, src, _, _ in items if src == "bandai"]
    single = {c for c in contents if contents.count(c) == 1}
    clips = []
    for clip_id, source, path, text in tqdm(items, desc="body dataset", disable=not progress):
        joints = joints_from_bvh(path)
        if len(joints) < MIN_FRAMES + 1:
            log.warning("%s: only %d frames at 20 fps; skipped", path, len(joints))
            continue
        features = extract_features(joints).astype(np.float32)
        segments = [(a, b, IDLE_PROMPT) for a, b in still_segments(joints)]
        split = "train" if re.sub(r"_[a-z\-]+_\d+$", "", clip_id) in single else split_of(clip_id)
        clips.append(Clip(clip_id, source, str(path.relative_to(mocap)), text, split, features, segments))
    train = np.concatenate([c.features for c in clips if c.split == "train"] or [clips[0].features])
    mean, std = feature_stats(train.astype(np.float64))
    texts = sorted({c.text for c in clips} | {IDLE_PROMPT} | set(GESTURE_PROMPTS.values()))
    encoder = encoder or TextEncoder()
    vectors = encoder.embed(texts)
    data = MotionDataset(clips, mean.astype(np.float32), std.astype(np.float32), dict(zip(texts, vectors, strict=True)))
    save_dataset(data, out)
    return data


def save_dataset(data: MotionDataset, out: str | Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    texts = sorted(data.embeddings)
    arrays = {
        "features": np.concatenate([c.features for c in data.clips]),
        "mean": data.mean, "std": data.std,
        "embeddings": np.stack([data.embeddings[t] for t in texts]),
    }
    np.savez(out / "data.npz", **arrays)
    meta = {
        "version": FORMAT_VERSION,
        "texts": texts,
        "clips": [
            {"id": c.id, "source": c.source, "path": c.path, "text": c.text, "split": c.split,
             "frames": len(c.features), "segments": [list(s) for s in c.segments]}
            for c in data.clips
        ],
    }
    (out / "clips.json").write_text(json.dumps(meta, indent=1))


def load_dataset(out: str | Path = DEFAULT_OUT, mocap: str | Path = DEFAULT_MOCAP, build: bool = True,
                 progress: bool = True) -> MotionDataset:
    """Load the cache in ``out``; build it first if it is missing (and ``build``)."""
    out = Path(out)
    if not (out / "clips.json").is_file() or not (out / "data.npz").is_file():
        if not build:
            raise FileNotFoundError(f"{out}: no body dataset cache; run `anima body build-dataset`")
        return build_dataset(mocap, out, progress=progress)
    meta = json.loads((out / "clips.json").read_text())
    if meta.get("version") != FORMAT_VERSION:
        if not build:
            raise FileNotFoundError(f"{out}: dataset cache is an old version; rebuild it")
        return build_dataset(mocap, out, progress=progress)
    arrays = np.load(out / "data.npz", allow_pickle=False)
    features = arrays["features"]
    clips, at = [], 0
    for c in meta["clips"]:
        n = c["frames"]
        segments = [(int(a), int(b), str(t)) for a, b, t in c["segments"]]
        clips.append(Clip(c["id"], c["source"], c["path"], c["text"], c["split"], features[at:at + n], segments))
        at += n
    embeddings = dict(zip(meta["texts"], arrays["embeddings"], strict=True))
    return MotionDataset(clips, arrays["mean"], arrays["std"], embeddings)
