"""The ``mot`` engine: the Thinker's text -> the mixture of transformers -> speech, face and body.

``anima render --engine mot`` and ``anima serve --engine mot`` run the cascade's runtime (turn-taking,
Thinker, playout, barge-in) with one model in place of Talker, Face and Body. ``MoTAgent`` is one
session's mixture and shows three faces to the runtime:

- ``agent.talker`` (a ``TTS``): per sentence the frozen speech expert writes codes, the tokenizer
  decodes each 80 ms frame, and the behaviour expert denoises the sentence's behaviour window by
  window (``sampling``) as soon as the frames a window may see exist (its chunk's audio plus the
  delay pattern's lookahead). Audio leaves only with its behaviour, so the face never waits. Each
  utterance opens with a ``sentence`` event whose text names its behaviour track.
- ``agent.face`` (a ``FaceAnimator``) plays the track from the moment the playout schedules that
  event, on the media clock, and the procedural face's listening behaviour outside it (crossfaded).
- ``agent.body`` (a ``BodyAnimator``) plays the track's body (HumanML3D-263 -> joints) the same way.
- ``MoTBodyStage`` (the body stage of this engine) turns a reply without words whose gesture names a
  silent command ("nod", "shake", "bow", "bye"), or a motion prompt that names one ("look left"),
  into a silent-command track that face and body play together.

Barge-in semantics are the runtime's: a cut stops the track where the audio stopped. The behaviour
history of each utterance is the last 0.8 s the avatar actually showed.

Weights: ``ANIMA_MOT_WEIGHTS`` (default ``anima/assets/weights/mot``) holds the behaviour expert; its
speech expert is the Kodama talker's TTS (``ANIMA_TALKER_WEIGHTS``), checked by weight digest.
"""

from __future__ import annotations

import os
import re
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anima.body.stage import BodyStage
from anima.core.frames import NS_PER_S, SAMPLE_RATE, Frame, SpeechEvent, TextPromptFrame, ThinkerPlanFrame
from anima.core.plan import EMOTIONS
from anima.core.stage import DOWN, Direction
from anima.talker.base import SpeechChunk

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[2] / "assets" / "weights" / "mot"
DEFAULT_WEIGHTS = Path(os.environ.get("ANIMA_MOT_WEIGHTS") or SHIPPED_WEIGHTS)
FACE_FPS, BODY_FPS = 25, 20
FADE_S = 0.24  # crossfade between the track and the idle animators
TRACK_PREFIX = "mot:"
COMMAND_WORDS = {  # motion prompt word -> silent command (the procedural body's names included)
    "nod": "nod", "nods": "nod", "agree": "nod", "shake": "shake", "disagree": "shake", "blink": "blink",
    "bow": "bow", "bows": "bow", "wave": "wave", "waves": "wave", "bye": "wave", "goodbye": "wave",
}
_LOOK = re.compile(r"\blook(?:s|ing)?\s+(left|right|up|down)\b")


def command_for_prompt(text: str) -> str | None:
    """The silent command a motion prompt names, or None ("look to the left" -> look_left, "bow" -> bow)."""
    lowered = text.lower()
    look = _LOOK.search(lowered.replace(" to the ", " ").replace(" to ", " "))
    if look:
        return f"look_{look.group(1)}"
    for word in re.findall(r"[a-z]+", lowered):
        if word in COMMAND_WORDS:
            return COMMAND_WORDS[word]
    return None


@dataclass
class Track:
    """One utterance's (or silent command's) behaviour as it is generated, and where it plays."""

    face: list[np.ndarray] = field(default_factory=list)  # (112,) per 25 fps frame from the utterance start
    body: list[np.ndarray] = field(default_factory=list)  # (263,) per 25 fps frame
    start_s: float | None = None  # media time of its first frame (set when the playout schedules it)
    cut_s: float | None = None  # media time it stops (barge-in); None = plays to its end
    done: bool = False
    _joints: np.ndarray | None = None  # (T20, 22, 3) cache of the body as joints

    @property
    def duration_s(self) -> float:
        return len(self.face) / FACE_FPS

    def end_s(self) -> float:
        end = (self.start_s or 0.0) + self.duration_s
        return end if self.cut_s is None else min(end, self.cut_s)

    def weight(self, t_s: float) -> float:
        """How much of the frame at media time ``t_s`` is the track's (crossfades at both ends)."""
        if self.start_s is None or t_s < self.start_s:
            return 0.0
        end = self.end_s() if self.done or self.cut_s is not None else float("inf")
        return float(np.clip(min((t_s - self.start_s) / FADE_S + 1.0, (end - t_s) / FADE_S), 0.0, 1.0))

    def face_at(self, t_s: float) -> np.ndarray | None:
        if not self.face or self.start_s is None:
            return None
        k = min(int((t_s - self.start_s) * FACE_FPS), len(self.face) - 1)
        return self.face[max(k, 0)]

    def joints_at(self, t_s: float) -> np.ndarray | None:
        """(22, 3) joints at media time ``t_s`` (root at the origin of the track), None before any frame."""
        if not self.body or self.start_s is None:
            return None
        from anima.body.data.humanml3d import recover_from_ric
        from anima.e2e.mot.behaviour import resample

        if self._joints is None or len(self._joints) < round(len(self.body) * BODY_FPS / FACE_FPS):
            feats = resample(np.stack(self.body), FACE_FPS, BODY_FPS)  # (T20, 263)
            self._joints = recover_from_ric(feats.astype(np.float32))
        k = min(max(int((t_s - self.start_s) * BODY_FPS), 0), len(self._joints) - 1)
        return self._joints[k]


class MoTAgent:
    """One session's mixture of transformers; ``talker``, ``face`` and ``body`` plug into the runtime."""

    def __init__(self, kodama, mot, voice: str | None = None, seed: int = 0, settings=None) -> None:
        from anima.e2e.mot.sampling import SamplerSettings, SampleStats

        self.kodama, self.mot = kodama, mot
        self.stats = SampleStats()  # behaviour-pass calls and seconds spent denoising, this session
        self.voice = voice
        self.seed = seed
        self.settings = settings or SamplerSettings()
        self.tracks: dict[str, Track] = {}
        self.lock = threading.Lock()
        self._count = 0
        H = mot.config.history
        self.shown_face: deque[np.ndarray] = deque(maxlen=2 * H)  # the last 0.8 s shown, for the next history
        self.shown_joints: deque[np.ndarray] = deque(maxlen=2 * H * BODY_FPS // FACE_FPS + 2)
        self.talker = MoTTalker(self)
        self.face = MoTFace(self, seed)
        self.body = MoTBody(self, seed)

    @classmethod
    def load(cls, directory: str | Path | None = None, talker_dir: str | Path | None = None, **kwargs) -> MoTAgent:
        """The behaviour expert of ``directory`` over the Kodama talker of ``talker_dir`` (clear errors if absent)."""
        from anima.talker.kodama import DEFAULT_WEIGHTS as TALKER_WEIGHTS
        from anima.talker.kodama import KodamaTTS

        directory = Path(directory or DEFAULT_WEIGHTS)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"{directory}: no mixture-of-transformers weights; train them (docs/mot.md) "
                                    "or use --engine cascade")
        kodama = KodamaTTS.load(talker_dir or TALKER_WEIGHTS)
        return cls(kodama, _shared_mot(directory, kodama), **kwargs)

    def track_at(self, t_s: float) -> Track | None:
        """The track playing at media time ``t_s``: the latest one started by then (older ones are dropped)."""
        with self.lock:
            started = [(k, tr) for k, tr in self.tracks.items() if tr.start_s is not None and tr.start_s <= t_s]
            if not started:
                return None
            order = {k: i for i, k in enumerate(self.tracks)}  # the newer track wins a tie
            key, track = max(started, key=lambda kv: (kv[1].start_s, order[kv[0]]))
            for k, tr in started:  # a track that started before the playing one is over
                if tr is not track:
                    del self.tracks[k]
            return track

    def new_key(self) -> str:
        with self.lock:
            self._count += 1
            return f"{TRACK_PREFIX}{self._count}"

    def history(self) -> np.ndarray:
        """The last 0.8 s the avatar showed as (history, 750) raw tokens (the data mean before enough was shown)."""
        from anima.body.data.humanml3d import features_from_video_joints
        from anima.e2e.mot.behaviour import pack

        H = self.mot.config.history
        mean = self.mot.behaviour.mean.numpy()
        if len(self.shown_face) < 2 * H or len(self.shown_joints) < 3:
            return np.tile(mean, (H, 1))
        feats = features_from_video_joints(np.stack(self.shown_joints), BODY_FPS)  # (T20, 263): the joints are at 20 fps
        tokens = pack(np.stack(self.shown_face), feats)  # (2H, 112) face + body -> tokens
        return tokens[-H:] if len(tokens) >= H else np.tile(mean, (H, 1))

    def command(self, command: str, t_s: float) -> Track:
        """A silent-command track starting at media time ``t_s`` (generated now: ~3 s of behaviour)."""
        from anima.e2e.mot.commands import phrase_for
        from anima.e2e.mot.tasks import silent_command
        from anima.talker.data.phonemize import phonemize
        from anima.talker.model.kodama_tts import normalize_phonemes

        phrase = phrase_for(command, self.seed)
        H = self.mot.config.history
        tokens = silent_command(self.mot, normalize_phonemes(phonemize(phrase)), 3.0, self.history(), self.settings,
                                seed=self.seed + self._count)
        track = Track(start_s=t_s, done=True)
        _append(track, tokens[H:])
        key = self.new_key()
        with self.lock:
            self.tracks[key] = track
        return track

    def cut(self, t_s: float) -> None:
        """Barge-in at media time ``t_s``: what plays stops there, what was scheduled later never plays."""
        with self.lock:
            for key, track in list(self.tracks.items()):
                if track.start_s is None:
                    continue
                if track.start_s > t_s:
                    del self.tracks[key]
                elif track.cut_s is None or t_s < track.cut_s:
                    track.cut_s = t_s


_MOT_CACHE: dict[tuple[Path, int], object] = {}
_MOT_LOCK = threading.Lock()


def _shared_mot(directory: Path, kodama):
    """One loaded mixture per (weights folder, speech expert) per process: sessions share weights, never state."""
    from anima.e2e.mot.model import load_mot

    key = (directory.resolve(), id(kodama.model))
    with _MOT_LOCK:
        if key not in _MOT_CACHE:
            model = load_mot(directory, speech=kodama.model)
            model.requires_grad_(False)
            _MOT_CACHE[key] = model
        return _MOT_CACHE[key]


def _append(track: Track, tokens: np.ndarray) -> None:
    from anima.e2e.mot.behaviour import BODY_DIM, FACE_DIM, FRAMES_PER_TOKEN

    n = tokens.shape[0]
    split = FRAMES_PER_TOKEN * FACE_DIM
    face = tokens[:, :split].reshape(n * FRAMES_PER_TOKEN, FACE_DIM)
    body = tokens[:, split:].reshape(n * FRAMES_PER_TOKEN, BODY_DIM)
    track.face.extend(face)
    track.body.extend(body)
    track._joints = None


class MoTTalker:
    """The ``TTS`` side: speech from the frozen expert, released with its behaviour."""

    sample_rate = SAMPLE_RATE

    def __init__(self, agent: MoTAgent) -> None:
        self.agent = agent

    def stream(self, text: str, *, voice: str | None = None, emotion: str | None = None,
               cancel: threading.Event | None = None) -> Iterator[SpeechChunk]:
        if emotion is not None and emotion not in EMOTIONS:
            raise ValueError(f"mot talker: unknown emotion {emotion!r}; choose one of {', '.join(EMOTIONS)}")
        sentences = self.agent.kodama.sentences(text)  # ValueError for empty or too long text
        chosen = self.agent.kodama.resolve_voice(voice or self.agent.voice)
        key = self.agent.new_key()
        track = Track()
        with self.agent.lock:
            self.agent.tracks[key] = track
        return self._chunks(text, sentences, chosen, emotion or "neutral", key, track, cancel)

    def _chunks(self, text: str, sentences: list[list[str]], voice, emotion: str, key: str, track: Track,
                cancel: threading.Event | None) -> Iterator[SpeechChunk]:
        import torch

        from anima.talker.kodama import WordClock, spoken_count

        agent, mot, kodama = self.agent, self.agent.mot, self.agent.kodama
        speech, tokenizer, c = mot.speech, kodama.tokenizer, mot.config
        be = mot.behaviour
        W, lookahead = agent.settings.window, mot.lookahead
        words = WordClock(text, sum(spoken_count(s) for s in sentences))
        decoder = tokenizer.new_decoder_state()
        speaker = torch.from_numpy(voice.speaker)
        frame_s = 1.0 / tokenizer.frame_rate
        seed = agent.seed * 1_000_003 + int(key[len(TRACK_PREFIX):])
        past = (torch.from_numpy(agent.history()) - be.mean) / be.std  # (H, D) normalised
        t = 0.0
        events: list[SpeechEvent] = [SpeechEvent("sentence", 0.0, key)]
        last_label = 0
        held: list[tuple[np.ndarray, float, list[SpeechEvent]]] = []  # decoded frames waiting for their behaviour
        for n, phonemes in enumerate(sentences):
            ids = speech.phoneme_ids(phonemes)
            codes: list[torch.Tensor] = []
            history = past[-c.history:]
            done = 0  # frames of this sentence with behaviour

            generated = torch.zeros(0, c.behaviour_dim)
            for frame in speech.stream(phonemes, speaker=speaker, emotion=emotion, sampling=kodama.sampling,
                                       seed=seed + n, cancel=cancel):
                if cancel is not None and cancel.is_set():
                    return
                codes.append(frame)
                samples = tokenizer.decode_step(decoder, frame.reshape(1, -1, 1))[0].numpy().astype(np.float32)
                labels = kodama.frame_labels(frame.reshape(1, -1, 1))
                for i, label in enumerate(labels):
                    if label != last_label and not kodama.labels[label].startswith("_"):
                        at = t + i * frame_s / len(labels)
                        events.append(SpeechEvent("phoneme", at, kodama.labels[label]))
                        events.extend(words.on_phoneme(at))
                    last_label = label
                held.append((np.clip(samples, -1.0, 1.0), t, events))
                events = []
                t += samples.size / SAMPLE_RATE
                if len(codes) >= done + W + lookahead:  # the window's frames and what its last chunk may see
                    window = self._window(ids, codes, speaker, emotion, torch.cat([history, generated]), W, seed + n * 997 + done)
                    generated = torch.cat([generated, window])
                    done += W
                    yield from self._release(track, window, held, W, cancel)
            if cancel is not None and cancel.is_set():
                return
            while done < len(codes):  # the sentence is complete: its last windows see everything
                if cancel is not None and cancel.is_set():
                    return
                count = min(W, len(codes) - done)
                window = self._window(ids, codes, speaker, emotion, torch.cat([history, generated]), count,
                                      seed + n * 997 + done)
                generated = torch.cat([generated, window])
                done += count
                yield from self._release(track, window, held, count, cancel)
            past = torch.cat([past, generated])[-c.history:]
        track.done = True
        final = SpeechEvent("end", t)
        yield SpeechChunk(np.zeros(0, np.float32), t, (*events, *words.finish(t), final), final=True)

    def _window(self, ids: list[int], codes: list, speaker, emotion: str, past, count: int, seed: int):
        """The next ``count`` behaviour tokens (normalised) of a sentence, given its codes so far and its past tokens."""
        import torch

        from anima.e2e.mot.sampling import sample_behaviour
        from anima.talker.model.kodama_tts import make_sequence

        mot = self.agent.mot
        speech = mot.speech
        seq = make_sequence(speech.config, ids, torch.stack(codes, dim=1))
        spk, emo = speech.condition(speaker, emotion)
        kv, _ = mot.speech_pass(spk, emo, seq["text"][None], seq["audio"][None], seq["is_audio"][None])
        out = sample_behaviour(mot, kv, 2 + len(ids), kv[0][0].shape[2], count, past, self.agent.settings, seed=seed,
                               stats=self.agent.stats)
        return out[-count:]

    def _release(self, track: Track, window, held: list, count: int,
                 cancel: threading.Event | None) -> Iterator[SpeechChunk]:
        """Append a window's behaviour to the track, then hand out the audio it covers (until cancelled)."""
        be = self.agent.mot.behaviour
        _append(track, (window * be.std + be.mean).numpy())
        for _ in range(count):
            if cancel is not None and cancel.is_set():
                return
            samples, offset_s, events = held.pop(0)
            yield SpeechChunk(samples, offset_s, tuple(events))


class MoTFace:
    """The ``FaceAnimator`` side: the playing track's face, the procedural face's listening outside it."""

    def __init__(self, agent: MoTAgent, seed: int = 0) -> None:
        from anima.face.procedural import ProceduralFace

        self.agent = agent
        self.idle = ProceduralFace(seed=seed)

    def schedule_speech(self, events: Sequence[tuple[float, SpeechEvent]]) -> None:
        for media_t, ev in events:
            if ev.kind == "sentence" and ev.text.startswith(TRACK_PREFIX):
                track = self.agent.tracks.get(ev.text)
                if track is not None:
                    track.start_s = media_t - ev.time_s

    def cut_speech(self, t_s: float) -> None:
        self.agent.cut(t_s)

    def set_emotion(self, emotion: str, t_s: float) -> None:
        self.idle.set_emotion(emotion, t_s)

    def set_gaze(self, target: str, t_s: float) -> None:
        self.idle.set_gaze(target, t_s)

    def step(self, t_s: float, own_audio: np.ndarray, other_audio: np.ndarray) -> np.ndarray:
        idle = self.idle.step(t_s, np.zeros_like(own_audio), other_audio)  # the track speaks, the idle face listens
        track = self.agent.track_at(t_s)
        w = track.weight(t_s) if track is not None else 0.0
        face = idle
        if w > 0.0:
            frame = track.face_at(t_s)
            if frame is not None:
                face = (1.0 - w) * idle + w * frame.astype(np.float64)
        self.agent.shown_face.append(np.asarray(face, np.float32))
        return face

    def reset(self) -> None:
        self.idle.reset()
        with self.agent.lock:
            self.agent.tracks.clear()


class MoTBody:
    """The ``BodyAnimator`` side (20 fps): the playing track's body, the procedural body outside it."""

    fps = BODY_FPS

    def __init__(self, agent: MoTAgent, seed: int = 0) -> None:
        from anima.body.procedural import ProceduralBody

        self.agent = agent
        self.idle = ProceduralBody(seed=seed)
        self.frame = 0
        self._anchor: tuple[int, np.ndarray] | None = None  # (id of the track, root offset placing it on the idle body)

    def push_prompt(self, text: str, t_s: float) -> None:
        """The idle body's prompt (outside the model's tracks); silent commands come through ``MoTBodyStage``."""
        self.idle.push_prompt(text, t_s)

    def push_beats(self, times_s: Sequence[float], strengths: Sequence[float]) -> None:
        pass  # the model's body follows its own speech

    def interrupt(self, t_s: float) -> None:
        self.idle.interrupt(t_s)
        self.agent.cut(t_s)

    def next_frame(self) -> np.ndarray:
        t_s = self.frame / BODY_FPS
        self.frame += 1
        idle = np.asarray(self.idle.next_frame(), np.float64)  # (22, 3)
        track = self.agent.track_at(t_s)
        w = track.weight(t_s) if track is not None else 0.0
        joints = idle
        if w > 0.0:
            pose = track.joints_at(t_s)
            if pose is not None:
                if self._anchor is None or self._anchor[0] != id(track):
                    offset = idle[0] - pose[0]
                    offset[1] = 0.0  # keep the track's height; move it onto the idle body's place on the floor
                    self._anchor = (id(track), offset)
                joints = (1.0 - w) * idle + w * (pose + self._anchor[1])
        self.agent.shown_joints.append(np.asarray(joints, np.float32))
        return joints

    def reset(self) -> None:
        self.idle.reset()
        self.frame = 0
        self._anchor = None


class MoTBodyStage(BodyStage):
    """The body stage of the ``mot`` engine: plans and prompts go to the model, not to a gesture library.

    A plan with speech leaves the body to the model (its track); a plan without words whose gesture
    names a silent command, or a text prompt naming one, starts a silent-command track now.
    """

    def __init__(self, body: MoTBody) -> None:
        super().__init__(body)
        self.mot_body = body

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if direction is DOWN and isinstance(frame, (ThinkerPlanFrame, TextPromptFrame)):
            now_s = self.clock.now_ns() / NS_PER_S
            if isinstance(frame, ThinkerPlanFrame):
                self.replies.planned(frame.turn_id)
                command = None if frame.plan.speech.strip() else command_for_prompt(frame.plan.gesture)
                if command is None:
                    self.mot_body.push_prompt("", now_s)  # speech: the model moves; no command: stay idle
            else:
                command = command_for_prompt(frame.text)
                if command is None:
                    self.mot_body.push_prompt(frame.text, now_s)
            if command is not None:
                self.mot_body.agent.command(command, now_s)
            await self.push_frame(frame, direction)
            return
        await super().process_frame(frame, direction)
