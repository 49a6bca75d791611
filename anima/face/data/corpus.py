"""Dyadic face corpora: the synthetic two-voice corpus, its on-disk format, and loading for training.

There is no real face-capture data on these machines, so ``build_corpus`` makes a synthetic one:
two espeak-ng voices hold a conversation scripted from the novel in ``shared/data/novels`` (turns
of one to three sentences, pauses, overlapping starts and short backchannels), and each speaker's
target face comes from the procedural face (``ProceduralFace``: coarticulated visemes from its own
phoneme events, listening behaviour driven by both tracks) with a random per-speaker style: seed,
emotion, gaze habits, blink rate, head-motion, nod and brow scalings and a mouth gain.

On disk (the importer for real data, ``anima.face.data.importer``, writes the same format)::

    CORPUS/corpus.json            {"version", "sample_rate", "fps", "source", "splits": {name: [ids]}, ...}
    CORPUS/<split>/<id>.npz       one dialogue:
        audio      (2, N) int16      each speaker's own track, 24 kHz
        motion     (2, T, 112) f32   face params per video frame (25 fps), T = ceil(N / 960)
        features   (2, T, 80) f16    log-mel rows (``anima.face.audio_features``)
        speaking   (2, T) bool       the speaker's own speech is active in the frame
        energy_db  (2, T) f32        per-tick RMS level of the own track
        has_audio  (2,) bool         False for motion-only tracks (stage-1 data without audio)
        meta       ()  str           JSON: speakers (voice, style), turns (speaker, start, end, text)

    python -m anima.face.data.corpus --out out/face_corpus --minutes 50      # ~2 minutes on one core
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anima.core.frames.audio import SpeechEvent
from anima.face import motion as motion_space
from anima.face.audio_features import AudioFeatureConfig, log_mel, tick_energy_db
from anima.face.listening import IdleConfig
from anima.face.procedural import ProceduralFace
from anima.face.viseme import CHANNELS

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
FPS = 25
TICK = SAMPLE_RATE // FPS
CORPUS_VERSION = 1
DEFAULT_NOVEL = Path(__file__).resolve().parents[4] / "shared" / "data" / "novels" / "twenty-thousand-leagues"

VOICES = ("en-us", "en-gb+m3", "en-us+f3", "en-gb-x-rp+f2", "en-us+m2", "en-gb+f4", "en-us+m5", "en-gb-x-rp+m1")
BACKCHANNELS = ("Yes.", "I see.", "Right.", "Mm-hmm.", "Indeed.", "Really?", "Go on.", "Ah.", "True.", "Of course.")
EMOTION_CHOICES = (("neutral", 0.35), ("happy", 0.15), ("calm", 0.15), ("curious", 0.12), ("sad", 0.07),
                   ("proud", 0.06), ("surprised", 0.05), ("angry", 0.05))


# ---------------------------------------------------------------------------------------------
# Scripts


def load_sentences(novel_dir: str | Path = DEFAULT_NOVEL, min_words: int = 3, max_words: int = 26) -> list[str]:
    """Sentences of the novel's chapters (headings dropped), in reading order."""
    novel_dir = Path(novel_dir)
    files = sorted(novel_dir.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no chapter files (*.txt) in {novel_dir}")
    sentences = []
    for path in files:
        text = path.read_text(encoding="utf-8").split("\n", 1)[-1]  # first line is the heading
        text = text.replace("\u201c", "").replace("\u201d", "").replace("\u2014", ", ").replace("\u2019", "'")
        text = re.sub(r"\s+", " ", text)
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            words = sentence.split()
            if min_words <= len(words) <= max_words and re.search(r"[A-Za-z]", sentence):
                sentences.append(sentence.strip())
    return sentences


@dataclass
class Turn:
    """One utterance placed on the dialogue timeline."""

    speaker: int  # 0 or 1
    text: str
    start_s: float = 0.0
    end_s: float = 0.0  # filled in after synthesis
    backchannel: bool = False


@dataclass
class SpeakerStyle:
    """A synthetic speaker: voice, prosody and the face style the procedural generator gets."""

    voice: str
    rate_wpm: int
    pitch: int
    gain: float  # level of the own track
    seed: int
    emotion: str
    second_emotion: str | None  # switched to halfway through the dialogue, if set
    blink_interval_s: float
    head_drift_scale: float
    speech_head_scale: float
    nod_p: float
    nod_scale: float
    brow_p: float
    tilt_rad: float
    mouth_gain: float
    glance_p: float  # probability of looking away at the start of an own turn

    @classmethod
    def random(cls, rng: np.random.Generator, voice: str) -> SpeakerStyle:
        names, weights = zip(*EMOTION_CHOICES, strict=True)
        p = np.array(weights) / sum(weights)
        second = str(rng.choice(names, p=p)) if rng.random() < 0.3 else None
        return cls(
            voice=voice,
            rate_wpm=int(rng.integers(140, 190)),
            pitch=int(rng.integers(35, 70)),
            gain=float(rng.uniform(0.45, 1.0)),
            seed=int(rng.integers(0, 2**31 - 1)),
            emotion=str(rng.choice(names, p=p)),
            second_emotion=second,
            blink_interval_s=float(rng.uniform(2.8, 6.0)),
            head_drift_scale=float(rng.uniform(0.5, 1.8)),
            speech_head_scale=float(rng.uniform(0.5, 1.6)),
            nod_p=float(rng.uniform(0.35, 0.95)),
            nod_scale=float(rng.uniform(0.7, 1.5)),
            brow_p=float(rng.uniform(0.1, 0.6)),
            tilt_rad=float(rng.uniform(0.0, 0.08)),
            mouth_gain=float(rng.uniform(0.8, 1.2)),
            glance_p=float(rng.uniform(0.0, 0.5)),
        )

    def idle_config(self) -> IdleConfig:
        base = IdleConfig()
        return dataclasses.replace(
            base,
            blink_interval_s=self.blink_interval_s,
            head_drift_rad=tuple(a * self.head_drift_scale for a in base.head_drift_rad),
            speech_head_rad=tuple(a * self.speech_head_scale for a in base.speech_head_rad),
            nod_p=self.nod_p,
            nod_amplitude_rad=tuple(a * self.nod_scale for a in base.nod_amplitude_rad),
            brow_p_listening=self.brow_p,
            tilt_rad=self.tilt_rad,
        )


def script_dialogue(sentences: list[str], rng: np.random.Generator, duration_s: float) -> list[Turn]:
    """Turns for about ``duration_s`` of conversation (times are filled in by ``synthesize``)."""
    turns: list[Turn] = []
    start = int(rng.integers(0, max(1, len(sentences) - 400)))
    cursor = start
    speaker = int(rng.integers(0, 2))
    words = 0
    # ~2.6 words per second of speech plus pauses: stop once the script is long enough.
    while words / 2.3 < duration_s:
        n = int(rng.choice([1, 1, 1, 2, 2, 3]))
        parts = [sentences[(cursor + i) % len(sentences)] for i in range(n)]
        while len(parts) > 1 and sum(len(p.split()) for p in parts) > 36:  # turns of about 2-10 s
            parts.pop()
        text = " ".join(parts)
        cursor += n + int(rng.integers(0, 3))
        turns.append(Turn(speaker, text))
        words += len(text.split())
        speaker = 1 - speaker
    return turns


# ---------------------------------------------------------------------------------------------
# Synthesis


@dataclass
class Dialogue:
    """One synthesised dialogue in memory (see the module docstring for the arrays)."""

    audio: np.ndarray  # (2, N) float32
    motion: np.ndarray  # (2, T, 112)
    features: np.ndarray  # (2, T, 80)
    speaking: np.ndarray  # (2, T) bool
    energy_db: np.ndarray  # (2, T)
    meta: dict


def _place(track: np.ndarray, samples: np.ndarray, start: int) -> np.ndarray:
    end = start + samples.size
    if end > track.size:
        track = np.concatenate([track, np.zeros(end - track.size + SAMPLE_RATE, dtype=np.float32)])
    track[start:end] += samples
    return track


def synthesize(turns: list[Turn], styles: tuple[SpeakerStyle, SpeakerStyle], rng: np.random.Generator,
               feature_config: AudioFeatureConfig | None = None) -> Dialogue:
    """Speak the turns with two espeak voices, place them with pauses/overlaps, and make the faces."""
    from anima.talker.espeak import EspeakTTS

    tts = [EspeakTTS(s.voice, rate_wpm=s.rate_wpm, pitch=s.pitch) for s in styles]
    tracks = [np.zeros(SAMPLE_RATE * 10, dtype=np.float32) for _ in range(2)]
    events: list[list[tuple[float, SpeechEvent]]] = [[], []]
    spans: list[list[tuple[float, float]]] = [[], []]
    placed: list[Turn] = []
    t = float(rng.uniform(0.5, 2.0))  # both listen for a moment at the start
    for turn in turns:
        chunk = tts[turn.speaker].synthesize(turn.text)
        audio = chunk.samples * styles[turn.speaker].gain
        phonemes = [e for e in chunk.events if e.kind == "phoneme"]
        end_event = [e for e in chunk.events if e.kind == "end"]
        speech_on = phonemes[0].time_s if phonemes else 0.0
        speech_off = end_event[-1].time_s if end_event else audio.size / SAMPLE_RATE
        start = max(t, 0.0)
        turn.start_s, turn.end_s = start + speech_on, start + speech_off
        tracks[turn.speaker] = _place(tracks[turn.speaker], audio, int(round(start * SAMPLE_RATE)))
        events[turn.speaker].extend((start + e.time_s, e) for e in chunk.events)
        spans[turn.speaker].append((turn.start_s, turn.end_s))
        placed.append(turn)
        # A backchannel from the listener in the middle of a long turn.
        listener = 1 - turn.speaker
        if turn.end_s - turn.start_s > 2.5 and rng.random() < 0.35:
            bc_text = str(rng.choice(BACKCHANNELS))
            bc = tts[listener].synthesize(bc_text)
            bc_start = float(rng.uniform(turn.start_s + 1.0, turn.end_s - 1.0))
            tracks[listener] = _place(tracks[listener], bc.samples * styles[listener].gain, int(round(bc_start * SAMPLE_RATE)))
            events[listener].extend((bc_start + e.time_s, e) for e in bc.events)
            bc_ph = [e.time_s for e in bc.events if e.kind == "phoneme"]
            bc_end = [e.time_s for e in bc.events if e.kind == "end"]
            span = (bc_start + (bc_ph[0] if bc_ph else 0.0), bc_start + (bc_end[-1] if bc_end else bc.samples.size / SAMPLE_RATE))
            spans[listener].append(span)
            placed.append(Turn(listener, bc_text, span[0], span[1], backchannel=True))
        # The next turn: a pause (sometimes long) or an overlapping start.
        u = rng.random()
        if u < 0.2:
            gap = -float(rng.uniform(0.15, 0.8))
        elif u < 0.3:
            gap = float(rng.uniform(1.5, 3.5))
        else:
            gap = float(rng.uniform(0.15, 1.2))
        t = max(turn.end_s + gap, turn.start_s + 0.5)
    n = int(round((t + float(rng.uniform(1.0, 2.0))) * SAMPLE_RATE))  # trailing mutual silence
    n = -(-n // TICK) * TICK
    audio = np.zeros((2, n), dtype=np.float32)
    for k in range(2):
        m = min(n, tracks[k].size)
        audio[k, :m] = tracks[k][:m]
    np.clip(audio, -1.0, 1.0, out=audio)
    n_frames = n // TICK

    motion = np.stack([_face_track(styles[k], events[k], audio[k], audio[1 - k], spans[k], n_frames, rng)
                       for k in range(2)])
    speaking = np.zeros((2, n_frames), dtype=bool)
    for k in range(2):
        for a, b in spans[k]:
            speaking[k, int(a * FPS):min(n_frames, int(np.ceil(b * FPS)))] = True
    features = np.stack([log_mel(audio[k], feature_config) for k in range(2)])
    energy = np.stack([tick_energy_db(audio[k], TICK) for k in range(2)])
    meta = {
        "speakers": [dataclasses.asdict(s) for s in styles],
        "turns": [dataclasses.asdict(tr) for tr in sorted(placed, key=lambda tr: tr.start_s)],
        "duration_s": n / SAMPLE_RATE,
    }
    return Dialogue(audio, motion, features, speaking, energy, meta)


_MOUTH_SLOTS = np.array([motion_space.params.ARKIT_INDEX[c] for c in CHANNELS])
_JAW_OPEN = motion_space.params.ARKIT_INDEX["jawOpen"]


def _face_track(style: SpeakerStyle, events: list[tuple[float, SpeechEvent]], own: np.ndarray, other: np.ndarray,
                spans: list[tuple[float, float]], n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """The speaker's target face: ProceduralFace with the speaker's style, plus a mouth gain. # (T, 112)"""
    face = ProceduralFace(fps=FPS, seed=style.seed, idle=style.idle_config())
    face.set_emotion(style.emotion, 0.0)
    face.schedule_speech(sorted(events, key=lambda e: e[0]))
    controls: list[tuple[float, str, str]] = []  # (time, "gaze"/"emotion", value)
    if style.second_emotion:
        controls.append((n_frames / FPS / 2, "emotion", style.second_emotion))
    for a, _ in spans:
        if rng.random() < style.glance_p:
            controls.append((max(a - 0.2, 0.0), "gaze", str(rng.choice(["away", "down", "up", "left", "right"]))))
            controls.append((a + float(rng.uniform(0.6, 2.0)), "gaze", "user"))
    controls.sort()
    out = np.zeros((n_frames, 112), dtype=np.float32)
    ci = 0
    for f in range(n_frames):
        t = f / FPS
        while ci < len(controls) and controls[ci][0] <= t:
            when, kind, value = controls[ci]
            (face.set_gaze if kind == "gaze" else face.set_emotion)(value, when)
            ci += 1
        out[f] = face.step(t, own[f * TICK:(f + 1) * TICK], other[f * TICK:(f + 1) * TICK])
    # Mouth gain: a wider or narrower articulator; jawOpen and the jaw angle stay consistent.
    out[:, _MOUTH_SLOTS] = np.clip(out[:, _MOUTH_SLOTS] * style.mouth_gain, 0.0, 1.0)
    out[:, 100] = out[:, _JAW_OPEN] * motion_space.params.JAW_OPEN_MAX_RAD
    return out


# ---------------------------------------------------------------------------------------------
# Storage


def save_dialogue(path: Path, d: Dialogue, has_audio: tuple[bool, ...] = (True, True)) -> None:
    """Write one session atomically (``has_audio`` has one flag per track that carries audio)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.npz")
    np.savez(
        tmp,
        audio=np.round(np.clip(d.audio, -1, 1) * 32767).astype(np.int16),
        motion=d.motion.astype(np.float32),
        features=d.features.astype(np.float16),
        speaking=d.speaking.astype(bool),
        energy_db=d.energy_db.astype(np.float32),
        has_audio=np.array(has_audio, dtype=bool),
        meta=np.array(json.dumps(d.meta)),
    )
    tmp.replace(path)


def build_corpus(out_dir: str | Path, minutes: float = 50.0, seed: int = 0, novel_dir: str | Path = DEFAULT_NOVEL,
                 dialogue_s: tuple[float, float] = (60.0, 120.0), splits: dict[str, float] | None = None,
                 progress: bool = True) -> Path:
    """Write a synthetic dyadic corpus of about ``minutes`` of dialogue; resumes a partial build."""
    out_dir = Path(out_dir)
    splits = splits or {"test": 0.1, "val": 0.06, "train": 0.84}
    rng = np.random.default_rng(seed)
    sentences = load_sentences(novel_dir)
    # Plan every dialogue first, so the same seed gives the same corpus whatever was already built.
    plans = []
    total = 0.0
    while total < minutes * 60.0:
        duration = float(rng.uniform(*dialogue_s))
        plans.append((duration, int(rng.integers(0, 2**31 - 1))))
        total += duration
    n = len(plans)
    n_test = max(1, round(n * splits.get("test", 0.0))) if splits.get("test") else 0
    n_val = max(1, round(n * splits.get("val", 0.0))) if splits.get("val") else 0
    names = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
    index: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    t0 = time.time()
    for i, ((duration, dseed), split) in enumerate(zip(plans, names, strict=True)):
        ident = f"dlg{i:04d}"
        index[split].append(ident)
        path = out_dir / split / f"{ident}.npz"
        if path.is_file():
            continue
        drng = np.random.default_rng(dseed)
        voices = drng.choice(VOICES, size=2, replace=False)
        styles = (SpeakerStyle.random(drng, str(voices[0])), SpeakerStyle.random(drng, str(voices[1])))
        turns = script_dialogue(sentences, drng, duration)
        d = synthesize(turns, styles, drng)
        save_dialogue(path, d)
        if progress:
            print(f"[{i + 1}/{n}] {split}/{ident}: {d.meta['duration_s']:.0f} s, {len(d.meta['turns'])} turns "
                  f"({time.time() - t0:.0f} s elapsed)", flush=True)
    manifest = {
        "version": CORPUS_VERSION, "sample_rate": SAMPLE_RATE, "fps": FPS, "source": "synthetic-espeak-procedural",
        "seed": seed, "minutes": minutes, "feature_config": dataclasses.asdict(AudioFeatureConfig()), "splits": index,
    }
    (out_dir / "corpus.json").write_text(json.dumps(manifest, indent=2))
    return out_dir


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class Track:
    """One speaker's side of one dialogue, as the models use it."""

    ident: str  # "<dialogue>:<speaker>"
    motion: np.ndarray  # (T, 50) motion space
    own: np.ndarray  # (T, 80) own audio features
    other: np.ndarray  # (T, 80) the other party's audio features
    speaking: np.ndarray  # (T,) bool
    energy_db: np.ndarray  # (T,) own level
    has_audio: bool


def load_dialogue(path: str | Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data["meta"] = json.loads(str(data["meta"]))
    return data


def read_manifest(corpus_dir: str | Path) -> dict:
    path = Path(corpus_dir) / "corpus.json"
    if not path.is_file():
        raise FileNotFoundError(f"{corpus_dir}: no corpus.json; build one with `anima face build-corpus`")
    return json.loads(path.read_text())


def load_tracks(corpus_dir: str | Path, split: str, limit: int | None = None) -> list[Track]:
    """Both speakers' tracks of every dialogue in ``split`` (each dialogue gives two tracks)."""
    manifest = read_manifest(corpus_dir)
    if split not in manifest["splits"]:
        raise KeyError(f"unknown split {split!r}; corpus has {', '.join(manifest['splits'])}")
    tracks = []
    for ident in manifest["splits"][split][:limit]:
        d = load_dialogue(Path(corpus_dir) / split / f"{ident}.npz")
        feats = d["features"].astype(np.float32)
        for k in range(d["motion"].shape[0]):
            other = feats[1 - k] if feats.shape[0] > 1 else np.full_like(feats[k], feats.min())
            tracks.append(Track(
                ident=f"{ident}:{k}", motion=motion_space.to_motion(d["motion"][k]), own=feats[k], other=other,
                speaking=d["speaking"][k].astype(bool), energy_db=d["energy_db"][k],
                has_audio=bool(d["has_audio"][k]),
            ))
    return tracks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the synthetic dyadic face corpus.")
    parser.add_argument("--out", type=Path, default=Path("out/face_corpus"))
    parser.add_argument("--minutes", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--novel", type=Path, default=DEFAULT_NOVEL)
    args = parser.parse_args(argv)
    build_corpus(args.out, args.minutes, args.seed, args.novel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
