"""The dialogue generator: conversations rendered headless through the cascade, with every label exact.

    script = make_script(index=7, seed=0)          # who talks to whom, what the user says and when (pure, seeded)
    render_dialogue(script, Path("out/dialogues/c000007"))
    generate(100, Path("out/dialogues"), workers=4)  # parallel, resumable, with a progress bar

A script is a character of the novel (nemo, aronnax, conseil, ned) at a story time, answering a
visitor with one of several espeak-ng voices. The visitor asks questions about the world and
everyday things, pauses for varying lengths (some long: idle stretches), backchannels ("uh-huh")
during replies, barges in, and sometimes rambles: the agent then cuts in, at a scripted moment or
when the persona's patience runs out (or on one of its urgent words). The story thinker writes the
replies (offline responder, no memory across conversations), so a script and the runtime together
fix the conversation; the runtime is deterministic offline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anima.body.text import EMOTION_WORDS, LISTEN_PROMPT, prompt_sentence  # noqa: F401 (re-exported)
from anima.core.frames import (
    NS_PER_S,
    AgentStartedSpeakingFrame,
    AgentStoppedSpeakingFrame,
    BodyPoseFrame,
    FaceParamsFrame,
    Frame,
    InterruptionFrame,
    PauseFrame,
    PlayedAudioFrame,
    ResumeFrame,
    SystemFrame,
    ThinkerPlanFrame,
    UserAudioFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTurnFrame,
)
from anima.core.stage import DOWN, Direction, Stage
from anima.e2e.data.format import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, is_complete, split_for_seed, write_conversation

log = logging.getLogger(__name__)

CHARACTERS = ("nemo", "aronnax", "conseil", "ned")
USER_VOICES = ("en-us+f3", "en-gb+f2", "en-us+m1", "en-gb-scotland", "en-029+m2", "en-gb-x-rp+f4", "en-us+m7",
               "en-gb-x-gbclan+f1")
USER_NAMES = ("Visitor", "Anna", "Tom", "Mrs. Hale", "Pierre", "Lucy", "Mr. Grant", "Ines")
YIELD_S = 1e9  # a user turn with this agent_interrupts_s stops when the agent cuts in, but is never cut by script
ENTITIES = ("the Nautilus", "Captain Nemo", "Ned Land", "Conseil", "Professor Aronnax", "the Abraham Lincoln",
            "Commander Farragut", "the giant squid", "the narwhal", "the South Pole", "Crespo Island", "the Red Sea",
            "the Arabian Tunnel", "Atlantis", "the coral cemetery", "the pearl fisher", "the organ", "the salon",
            "the library", "Vanikoro", "the Gulf Stream", "the Maelstrom", "the diving suits", "the sea floor",
            "the shark", "the island of Gueboroa", "the Torres Strait", "the Mediterranean", "the ice bank", "the crew")
QUESTION_TEMPLATES = ("Tell me about {e}.", "What do you think of {e}?", "Have you ever seen {e}?", "Where is {e}?",
                      "What happened with {e}?", "Do you know {e}?", "Why do you care about {e}?",
                      "Is {e} dangerous?", "Can you describe {e} for me?", "When did you first hear of {e}?")
EVERYDAY = ("Good evening, how are you today?", "Thank you very much for the tour.", "Could you say that again, please?",
            "I am a little cold, is there a blanket?", "What time is dinner served on board?", "Do you sleep well down here?",
            "That sounds wonderful.", "Is it always this quiet at night?", "I did not understand the last part.",
            "Can we go up to the platform later?", "Do you play chess?", "How long have you been at sea?",
            "The food here is strange but good.", "What is your favourite book?", "Do you ever miss the land?",
            "How fast are we going now?", "What is that sound?", "Who cooks the meals?", "I slept badly last night.",
            "My name is {n}, I am a student from Lyon.", "I would like to write a letter home.")
GREETINGS = ("Good evening.", "Hello there!", "Good morning, sir.", "Hello, may I talk with you?", "Hi. Is this a good moment?")
BACKCHANNELS = ("uh-huh", "yeah", "mm-hm", "right", "okay", "I see")
RAMBLE = ("Well, let me tell you how I came here.", "I left Paris in the spring with two trunks and a letter of introduction.",
          "In Brest I waited nine days for a ship, and the inn was full of sailors.", "They talked all night about a monster in the sea.",
          "My uncle had a farm near Nantes, and every summer we went there by coach.", "The roads were terrible and the coach was slow.",
          "My cousin kept bees, and once the whole swarm followed him to church.", "I have always wanted to see the ocean from below.",
          "When I was a child I read every book about ships I could find.", "The cook on the frigate was a man from Marseille who sang every morning.",
          "And then, you see, the weather turned, and nobody could sleep for three days.", "I still remember the smell of tar and salt.",
          "Anyway, that is not even the interesting part, because later on", "and my sister wrote to me that the harvest was poor that year,")
KINDS = ("question", "everyday", "monologue", "barge_in", "backchannel", "idle")
KIND_P = (0.42, 0.14, 0.12, 0.12, 0.12, 0.08)
REPLY_TIMEOUT_S = 60.0  # the scripted user waits this long for a reply before carrying on
CHARS_PER_S = 14.0  # espeak-ng at 165 wpm, roughly, to size monologues


@dataclass
class UserTurn:
    """One scripted user turn (a conversation file's user turn, plus what kind it is)."""

    kind: str  # one of KINDS ("greeting" for the first)
    text: str
    pause_s: float  # silence after the agent stops before the user speaks
    barge_in_s: float | None = None  # starts this long after the agent's reply starts (barge-in or backchannel)
    agent_interrupts_s: float | None = None  # the agent cuts in this far into the turn (scripted)


@dataclass
class DialogueScript:
    """Everything random about one conversation, drawn from its seed (``make_script``)."""

    conv_id: str
    seed: int
    character: str
    story_time: int
    agent_voice: str
    user_voice: str
    user_name: str
    turns: list[UserTurn]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]


def conversation_seed(seed: int, index: int) -> int:
    """The seed of conversation ``index`` of a corpus made with ``seed`` (distinct for index < 10^6)."""
    return seed * 1_000_000 + index


def _ramble(rng: np.random.Generator, target_s: float) -> str:
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < target_s * CHARS_PER_S:
        parts.append(RAMBLE[int(rng.integers(len(RAMBLE)))])
    return " ".join(parts)


def make_script(index: int, seed: int = 0, min_turns: int = 4, max_turns: int = 9) -> DialogueScript:
    """The script of conversation ``index``: a pure function of (index, seed)."""
    from anima.thinker.persona import load_persona

    cseed = conversation_seed(seed, index)
    rng = np.random.default_rng([seed, index])
    character = CHARACTERS[int(rng.integers(len(CHARACTERS)))]
    persona = load_persona(character)
    story_time = int(rng.integers(persona.first_chapter, 48))
    user_voice = USER_VOICES[int(rng.integers(len(USER_VOICES)))]
    user_name = USER_NAMES[int(rng.integers(len(USER_NAMES)))]
    patience = persona.interrupts.patience_s
    turns = [UserTurn("greeting", GREETINGS[int(rng.integers(len(GREETINGS)))], pause_s=0.0)]
    n = int(rng.integers(min_turns, max_turns + 1))
    while len(turns) < n:
        kind = str(rng.choice(KINDS, p=KIND_P))
        if kind == "backchannel" and (turns[-1].kind == "backchannel" or len(turns) == n - 1):
            continue  # one per reply, and never the last turn (it would not be answered)
        pause = float(np.round(rng.gamma(2.0, 0.25), 3))  # mean 0.5 s, mostly 0.1 .. 1.2 s
        if kind in ("question", "barge_in", "idle"):
            text = QUESTION_TEMPLATES[int(rng.integers(len(QUESTION_TEMPLATES)))].format(e=ENTITIES[int(rng.integers(len(ENTITIES)))])
        elif kind == "everyday":
            text = EVERYDAY[int(rng.integers(len(EVERYDAY)))].format(n=user_name.split()[-1])
        elif kind == "backchannel":
            text = BACKCHANNELS[int(rng.integers(len(BACKCHANNELS)))]
        else:  # monologue: sometimes short of the patience, mostly past it
            text = _ramble(rng, float(rng.uniform(0.6, 1.5) * min(patience, 20.0) + 2.0))
        turn = UserTurn(kind, text, pause_s=pause)
        if kind == "idle":
            turn.pause_s = float(np.round(rng.uniform(3.0, 8.0), 3))
        elif kind == "barge_in":
            turn.barge_in_s = float(np.round(rng.uniform(0.6, 3.0), 3))
        elif kind == "backchannel":
            turn.barge_in_s = float(np.round(rng.uniform(0.8, 3.5), 3))
        elif kind == "monologue" and rng.random() < 0.4:
            turn.agent_interrupts_s = float(np.round(rng.uniform(2.5, max(3.0, min(patience, 10.0) - 0.5)), 3))
        turns.append(turn)
    return DialogueScript(f"c{index:06d}", cseed, character, story_time, persona.voice, user_voice, user_name, turns)


def script_conversation(script: DialogueScript) -> Any:
    """The script as an ``anima.core.conversation.Conversation`` for the scripted user (no agent turns:
    the story thinker answers). Every turn but a backchannel yields when the agent cuts in."""
    from anima.core.conversation import Conversation, Party, UserTurnSpec

    specs = []
    for t in script.turns:
        cut = t.agent_interrupts_s if t.agent_interrupts_s is not None else None if t.kind == "backchannel" else YIELD_S
        specs.append(UserTurnSpec(t.text, barge_in_s=t.barge_in_s, agent_interrupts_s=cut, pause_s=t.pause_s))
    from anima.thinker.persona import load_persona

    return Conversation(title=f"{script.conv_id}: {script.user_name} and {load_persona(script.character).name}",
                        agent=Party(load_persona(script.character).name, script.agent_voice),
                        user=Party(script.user_name, script.user_voice), user_turns=specs, agent_turns=[],
                        pause_s=0.5, seed=script.seed)


def script_yaml(script: DialogueScript) -> str:
    """The script as a conversation file (``anima render FILE --thinker story --character C --story-time T``)."""
    import yaml

    turns = []
    for t in script.turns:
        row: dict[str, Any] = {"user": t.text, "pause_s": t.pause_s}
        if t.barge_in_s is not None:
            row["barge_in_s"] = t.barge_in_s
        if t.agent_interrupts_s is not None:
            row["agent_interrupts_s"] = t.agent_interrupts_s
        turns.append(row)
    doc = {"title": script.conv_id, "agent": {"name": script.character, "voice": script.agent_voice},
           "user": {"name": script.user_name, "voice": script.user_voice}, "seed": script.seed, "turns": turns}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


# -- rendering --------------------------------------------------------------------------------------

class _RecordingUser:
    """The scripted user, with its microphone audio kept (the user track)."""

    def __init__(self, user: Any) -> None:
        self.user = user
        self.audio: list[tuple[int, np.ndarray]] = []  # (pts_ns, samples)

    def frames_for_tick(self, pts_ns: int, tick_ns: int) -> list:
        frames = self.user.frames_for_tick(pts_ns, tick_ns)
        self.audio.extend((f.pts_ns, f.samples) for f in frames if isinstance(f, UserAudioFrame))
        return frames

    def observe(self, frame: Any) -> None:
        self.user.observe(frame)

    def finished(self, now_ns: int) -> bool:
        return self.user.finished(now_ns)


class _Tap(Stage):
    """A pass-through stage keeping the frames of ``types`` going downstream (in order)."""

    def __init__(self, types: tuple[type, ...], name: str) -> None:
        super().__init__(name=name)
        self.types = types
        self.frames: list = []

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if direction is DOWN and isinstance(frame, self.types):
            self.frames.append(frame)
        await self.push_frame(frame, direction)

    async def process_system(self, frame: SystemFrame, direction: Direction) -> None:
        if direction is DOWN and isinstance(frame, self.types):
            self.frames.append(frame)
        await self.push_frame(frame, direction)


@dataclass
class RenderOptions:
    face: str = "procedural"  # registry.FACES
    body: str = "procedural"  # registry.BODIES
    video: bool = False  # also an MP4 (render stage + sink): much slower
    max_duration_s: float = 900.0


def render_dialogue(script: DialogueScript, conv_dir: Path, options: RenderOptions | None = None) -> dict[str, Any]:
    """Render ``script`` through the cascade and write the conversation to ``conv_dir`` (atomically).

    Returns the manifest row. Raises SessionError if a stage failed for good (nothing is written).
    """
    from anima.cascade import scripted_user
    from anima.core.clock import MediaClock
    from anima.core.duplex import TurnTaking
    from anima.core.history import ConversationHistory
    from anima.core.interjection import AnyInterjector
    from anima.core.session import Session
    from anima.registry import ENGINES, AgentChoice, ThinkerSpec
    from anima.thinker.interjector import thinker_interjector
    from anima.thinker.persona import load_persona
    from anima.thinker.story import StoryThinker

    options = options or RenderOptions()
    conversation = script_conversation(script)
    persona = load_persona(script.character)
    history = ConversationHistory()
    choice = AgentChoice(engine="cascade", thinker="story", talker="espeak", face=options.face, body=options.body,
                         voice=script.agent_voice, seed=script.seed,
                         thinker_spec=ThinkerSpec(script.character, script.story_time)).check()
    # No memory across conversations (a corpus must not depend on the order it was made in).
    thinker = StoryThinker.create(character=script.character, story_time=script.story_time, remember=False)
    engine = ENGINES.create(choice.engine, choice=choice, history=history, thinker=thinker)
    user = scripted_user(conversation, script.seed, expect_generated_replies=True)
    user.reply_timeout_ns = int(REPLY_TIMEOUT_S * 1e9)  # a long generated reply is heard to its end
    scripted = user.interjector()  # the script's cut-ins, keyed on the user's clips
    ears = _Tap((UserStartedSpeakingFrame, UserStoppedSpeakingFrame, InterruptionFrame, PauseFrame, ResumeFrame,
                 UserTurnFrame), "ears")
    at = next(i for i, s in enumerate(engine) if isinstance(s, TurnTaking))
    engine[at].interjector = AnyInterjector([scripted, thinker_interjector(thinker)])
    engine.insert(at + 1, ears)
    tail = _Tap((PlayedAudioFrame, FaceParamsFrame, BodyPoseFrame, AgentStartedSpeakingFrame, AgentStoppedSpeakingFrame,
                 ThinkerPlanFrame, PauseFrame, ResumeFrame), "tail")
    stages = [*engine, tail]
    tmp_video = conv_dir.with_name(conv_dir.name + ".video.tmp.mp4")
    if options.video:
        from anima.render.character import CharacterRenderer
        from anima.render.stage import MP4Sink, RenderStage

        stages += [RenderStage(CharacterRenderer(960, 540), conversation.agent.name, conversation.user.name),
                   MP4Sink(tmp_video, 960, 540, fps=FPS)]
    source = _RecordingUser(user)
    result = asyncio.run(Session(stages, source, MediaClock(realtime=False), history, options.max_duration_s).run())
    meta, agent, user_audio, motion = _collect(script, result, source, ears.frames, tail.frames, persona)
    meta["runtime"].update(face=options.face, body=options.body)
    extra: dict[str, str | Path] = {"script.yaml": script_yaml(script)}
    if options.video:
        extra["video.mp4"] = tmp_video
    meta = write_conversation(conv_dir, agent, user_audio, motion, meta, extra)
    return manifest_row(meta, conv_dir.name)


def manifest_row(meta: dict[str, Any], name: str) -> dict[str, Any]:
    keys = ("conv_id", "seed", "split", "duration_s", "character", "story_time", "agent_voice", "user_voice", "script_digest")
    return {"dir": name, **{k: meta.get(k, meta.get("identity", {}).get(k)) for k in keys}}




def _voiced(samples: np.ndarray, a: float, b: float, threshold: float = 0.01) -> tuple[float, float] | None:
    """The first and last 10 ms window in [a, b) s whose peak passes ``threshold``: speech bounds."""
    win = SAMPLE_RATE // 100
    lo, hi = int(a * SAMPLE_RATE), min(int(b * SAMPLE_RATE), samples.size)
    if hi - lo < win:
        return None
    seg = samples[lo:hi]
    n = seg.size // win
    peaks = np.abs(seg[: n * win]).reshape(n, win).max(axis=1)
    loud = np.flatnonzero(peaks > threshold)
    if loud.size == 0:
        return None
    return round(a + loud[0] * win / SAMPLE_RATE, 3), round(a + (loud[-1] + 1) * win / SAMPLE_RATE, 3)


def _collect(script: DialogueScript, result: Any, source: _RecordingUser, ears: list, tail: list, persona: Any):
    """The recorded frames as the on-disk arrays and meta (see docs/dialogues.md for every field)."""
    from anima.body.data.humanml3d import features_from_video_joints  # torch: only when a conversation is written

    tick_ns = NS_PER_S // FPS
    frames = result.ticks
    renum: dict[int, int] = {}  # the runtime's turn ids count per process: number them 1.. per conversation
    for f in tail:
        tid = getattr(f, "turn_id", None)
        if tid is not None and tid not in renum:
            renum[tid] = len(renum) + 1
    for f in tail:
        if getattr(f, "turn_id", None) is not None:
            f.turn_id = renum[f.turn_id]
    n = frames * SAMPLES_PER_FRAME
    agent, user = np.zeros(n, np.float32), np.zeros(n, np.float32)
    for pts, samples in source.audio:
        i = int(round(pts * SAMPLE_RATE / NS_PER_S))
        m = min(samples.size, n - i)
        if m > 0:
            user[i : i + m] = samples[:m]
    face = np.zeros((frames, 112), np.float32)
    joints = np.zeros((frames, 22, 3), np.float32)
    have_face, have_body = np.zeros(frames, bool), np.zeros(frames, bool)
    words: dict[int, dict[int, tuple[float, str]]] = {}
    for f in tail:
        k = f.pts_ns // tick_ns
        if isinstance(f, PlayedAudioFrame) and k < frames:
            m = min(f.samples.size, SAMPLES_PER_FRAME)
            agent[k * SAMPLES_PER_FRAME : k * SAMPLES_PER_FRAME + m] = f.samples[:m]
            for t, ev in f.scheduled_events:
                if ev.kind == "word" and f.turn_id is not None:
                    words.setdefault(f.turn_id, {})[ev.char_start] = (round(t, 3), ev.text)
        elif isinstance(f, FaceParamsFrame) and k < frames:
            face[k], have_face[k] = f.params, True
        elif isinstance(f, BodyPoseFrame) and k < frames:
            joints[k], have_body[k] = f.joints, True
    for arr, have in ((face, have_face), (joints, have_body)):  # a missing tick holds the previous pose
        for k in np.flatnonzero(~have):
            if k > 0:
                arr[k] = arr[k - 1]
    events: list[dict[str, Any]] = []
    transcript: list[dict[str, Any]] = []
    segments: dict[str, list[list[float]]] = {"agent": [], "user": []}
    # The user's side, exactly as played (clip bounds; the voiced part for the segments).
    for i, clip in enumerate(source.user.clips):
        if clip.start_ns < 0:
            continue
        t0, t1 = clip.start_ns / NS_PER_S, clip.end_ns / NS_PER_S
        kind = script.turns[i].kind
        cut = clip.heard_text is not None
        events.append({"t": round(t0, 3), "type": "user_start", "turn": i, "kind": kind})
        events.append({"t": round(t1, 3), "type": "user_stop", "turn": i, "kind": kind, "cut_by_agent": cut})
        voiced = _voiced(user, t0, t1)
        if voiced:
            segments["user"].append([*voiced, i, kind])
        transcript.append({"speaker": "user", "turn": i, "kind": kind, "start": round(t0, 3), "end": round(t1, 3),
                           "text": clip.heard_text if cut else clip.spec.text, "cut_by_agent": cut,
                           "words": [[round(t0 + w.time_s, 3), w.text] for w in clip.words]})
    starts: dict[int, float] = {}
    plans: dict[int, Any] = {}
    prompt_changes: list[tuple[float, str]] = [(0.0, LISTEN_PROMPT)]
    for f in tail:
        t = round(f.pts_ns / NS_PER_S, 3)
        if isinstance(f, ThinkerPlanFrame):
            plans[f.turn_id] = f.plan
            sentence = prompt_sentence(f.plan.emotion, f.plan.gesture)
            prompt_changes.append((t, sentence))
            events.append({"t": t, "type": "agent_plan", "agent_turn": f.turn_id, "emotion": f.plan.emotion,
                           "gesture": f.plan.gesture, "gaze": f.plan.gaze, "prompt": sentence})
        elif isinstance(f, AgentStartedSpeakingFrame):
            starts[f.turn_id] = t
            events.append({"t": t, "type": "agent_start", "agent_turn": f.turn_id})
        elif isinstance(f, AgentStoppedSpeakingFrame):
            prompt_changes.append((t, LISTEN_PROMPT))
            events.append({"t": t, "type": "agent_stop", "agent_turn": f.turn_id, "interrupted": f.interrupted,
                           "played_s": round(f.played_s, 3)})
            t0 = starts.get(f.turn_id, t)
            voiced = _voiced(agent, t0, t + 0.04)
            if voiced:
                segments["agent"].append([*voiced, f.turn_id, "interrupted" if f.interrupted else "reply"])
            plan = plans.get(f.turn_id)
            transcript.append({"speaker": "agent", "turn": f.turn_id, "start": t0, "end": t,
                               "text": f.heard_text, "planned": plan.speech if plan else "", "interrupted": f.interrupted,
                               "words": sorted([w for w in words.get(f.turn_id, {}).values() if w[0] < t])})
        elif isinstance(f, PauseFrame):
            events.append({"t": t, "type": "agent_paused", "onset": round(f.onset_pts_ns / NS_PER_S, 3)})
        elif isinstance(f, ResumeFrame):
            events.append({"t": t, "type": "agent_resumed", "heard": f.heard, "paused_s": round(f.paused_s, 3)})
    open_turns = [k for k in starts if not any(e["type"] == "agent_stop" and e["agent_turn"] == k for e in events)]
    for k in open_turns:  # still speaking when the session ended (cut off by max_duration_s): close it there
        t, t0 = round(frames / FPS, 3), starts[k]
        events.append({"t": t, "type": "agent_stop", "agent_turn": k, "interrupted": False, "end_of_recording": True,
                       "played_s": round(t - t0, 3)})
        voiced = _voiced(agent, t0, t)
        if voiced:
            segments["agent"].append([*voiced, k, "end_of_recording"])
        plan = plans.get(k)
        transcript.append({"speaker": "agent", "turn": k, "start": t0, "end": t, "text": "", "planned": plan.speech if plan else "",
                           "interrupted": False, "end_of_recording": True, "words": sorted(w for w in words.get(k, {}).values() if w[0] < t)})
    for f in ears:  # what the runtime's ears decided (detected, not ground truth)
        t = round(f.pts_ns / NS_PER_S, 3)
        if isinstance(f, UserStartedSpeakingFrame):
            events.append({"t": round(f.onset_pts_ns / NS_PER_S, 3), "type": "vad_user_start"})
        elif isinstance(f, UserStoppedSpeakingFrame):
            events.append({"t": round(f.end_pts_ns / NS_PER_S, 3), "type": "vad_user_stop"})
        elif isinstance(f, InterruptionFrame):
            events.append({"t": t, "type": "barge_in", "by": "user", "reason": f.reason,
                           "onset": round(f.onset_pts_ns / NS_PER_S, 3)})
        elif isinstance(f, UserTurnFrame):
            events.append({"t": t, "type": "user_turn_end", "text": f.text, "end": round(f.end_pts_ns / NS_PER_S, 3),
                           "cut_by_agent": f.cut_by_agent})
            if f.cut_by_agent:
                events.append({"t": t, "type": "agent_cut_in", "by": "agent", "reason": f.cut_by_agent})
    events.sort(key=lambda e: (e["t"], e["type"]))
    transcript.sort(key=lambda r: r["start"])
    prompts: list[str] = []
    prompt_id = np.zeros(frames, np.int16)
    for t, sentence in sorted(prompt_changes, key=lambda c: c[0]):
        if sentence not in prompts:
            prompts.append(sentence)
        prompt_id[int(round(t * FPS)) :] = prompts.index(sentence)
    vel = np.zeros_like(joints)
    if frames > 1:
        vel[:-1] = (joints[1:] - joints[:-1]) * FPS
        vel[-1] = vel[-2]
    motion = {"face": face, "joints": joints, "joint_vel": vel, "root": joints[:, 0].copy(), "prompt_id": prompt_id,
              "body263": features_from_video_joints(joints, FPS) if frames else np.zeros((0, 263), np.float32)}
    meta = {
        "conv_id": script.conv_id, "seed": script.seed, "split": split_for_seed(script.seed),
        "identity": {"character": script.character, "character_name": persona.name, "story_time": script.story_time,
                     "agent_voice": script.agent_voice, "user_voice": script.user_voice, "user_name": script.user_name},
        "character": script.character, "story_time": script.story_time, "agent_voice": script.agent_voice,
        "user_voice": script.user_voice, "script": script.to_json(), "script_digest": script.digest(),
        "events": events, "transcript": transcript, "segments": segments, "prompts": prompts,
        "history": [{"speaker": t.speaker, "text": t.text, "interrupted": t.interrupted} for t in result.history.turns],
        "runtime": {"wall_s": round(result.wall_s, 3), "errors": result.errors, "face": "", "body": ""},
    }
    return meta, agent, user, motion


# -- the corpus -------------------------------------------------------------------------------------

def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    for key in [k for k in os.environ if k.startswith("ANIMA_LLM_")]:
        del os.environ[key]  # the offline responder: deterministic and free
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _render_one(job: tuple[int, int, str, RenderOptions]) -> tuple[str, dict[str, Any] | None, str, float]:
    index, seed, out, options = job
    script = make_script(index, seed)
    conv_dir = Path(out) / script.conv_id
    t0 = time.perf_counter()
    try:
        row = render_dialogue(script, conv_dir, options)
        row["runtime_face_body"] = f"{options.face}/{options.body}"
        return script.conv_id, row, "", time.perf_counter() - t0
    except Exception as exc:  # one bad conversation must not end the corpus
        log.exception("conversation %s failed", script.conv_id)
        return script.conv_id, None, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0


def write_manifest(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """``manifest.json`` from the finished conversations on disk (so it is right after any resume)."""
    rows = []
    for conv_dir in sorted(p for p in out.iterdir() if p.is_dir() and is_complete(p)):
        meta = json.loads((conv_dir / "meta.json").read_text())
        rows.append(manifest_row(meta, conv_dir.name))
    manifest = {"format": "anima-dialogues/1", "settings": settings, "conversations": rows,
                "hours": round(sum(r["duration_s"] for r in rows) / 3600, 4),
                "splits": {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}}
    tmp = out / f"manifest.json.{os.getpid()}.tmp"  # shards on other machines may write theirs at the same time
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / "manifest.json")
    return manifest


def generate(n: int, out: Path, workers: int = 1, seed: int = 0, options: RenderOptions | None = None,
             progress: bool = True, start: int = 0) -> dict[str, Any]:
    """Render conversations ``start .. start+n-1`` of corpus ``seed`` into ``out``; skip finished ones, redo partial ones.

    Returns {"done", "skipped", "failed": [(id, error)], "media_s", "wall_s", "rtf"} for this run.
    """
    import multiprocessing as mp

    from tqdm import tqdm

    options = options or RenderOptions()
    if n < 1 or workers < 1 or start < 0:
        raise ValueError(f"need n >= 1, workers >= 1 and start >= 0, got n={n}, workers={workers}, start={start}")
    out.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):  # a previous run stopped while writing these: redo them (only ours: shards may share out)
        for stale in (out / f"c{i:06d}.tmp", out / f"c{i:06d}.video.tmp.mp4"):
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
    todo = [i for i in range(start, start + n) if not is_complete(out / f"c{i:06d}")]
    report: dict[str, Any] = {"done": 0, "skipped": n - len(todo), "failed": [], "media_s": 0.0, "render_s": 0.0}
    t0 = time.perf_counter()
    jobs = [(i, seed, str(out), options) for i in todo]
    bar = tqdm(total=len(jobs), unit="conv", desc="dialogues", disable=not progress)

    def account(conv_id: str, row: dict[str, Any] | None, error: str, seconds: float) -> None:
        if row is None:
            report["failed"].append((conv_id, error))
        else:
            report["done"] += 1
            report["media_s"] += row["duration_s"]
            report["render_s"] += seconds
        bar.update(1)
        bar.set_postfix(media_h=f"{report['media_s'] / 3600:.2f}", failed=len(report["failed"]))

    if workers == 1:
        _worker_init()
        for job in jobs:
            account(*_render_one(job))
    elif jobs:
        with mp.get_context("spawn").Pool(workers, initializer=_worker_init, maxtasksperchild=50) as pool:
            for res in pool.imap_unordered(_render_one, jobs):
                account(*res)
    bar.close()
    report["wall_s"] = time.perf_counter() - t0
    report["rtf"] = report["render_s"] / report["media_s"] if report["media_s"] else 0.0  # core-seconds per media second
    settings = {"seed": seed, "face": options.face, "body": options.body, "video": options.video}
    report["manifest"] = write_manifest(out, settings)
    return report
