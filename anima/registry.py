"""One registry of backends: which Thinker, Talker, Face, Body and engine a name means.

``anima render``, ``anima demo``, ``anima serve`` and the Python API all choose backends here, so a
name means the same everywhere and an unknown name is the same error everywhere (listing the valid
ones). Each entry is a small factory that imports its backend only when called, so listing the
choices (``anima --help``) loads no model code and no torch.

    face = FACES.create("unils", seed=3)            # a per-session animator over shared weights
    FACES.names()                                    # ('procedural', 'unils')
    FACES.check("unlis")                             # ValueError: unknown face 'unlis'; valid: procedural, unils

Adding a backend: write it (implementing the module's ``base.py`` interface), then add one
``register`` call below with its name, a one-line summary and a factory taking the keyword
arguments of its kind (see each registry's docstring). Nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from anima.body.base import BodyAnimator
    from anima.core.history import ConversationHistory
    from anima.core.plan import ActionPlan
    from anima.core.stage import Stage
    from anima.face.base import FaceAnimator
    from anima.talker.base import TTS
    from anima.thinker.base import Thinker

T = TypeVar("T")


@dataclass(frozen=True)
class Backend(Generic[T]):
    """One named choice: what it is (for --help) and how to make one."""

    name: str
    summary: str
    factory: Callable[..., T]
    live: bool = True  # usable in ``anima serve`` (a scripted thinker needs a conversation file)


class Registry(Generic[T]):
    """The named backends of one kind, in registration order (the first is not implied default)."""

    def __init__(self, kind: str, doc: str) -> None:
        self.kind = kind
        self.__doc__ = doc
        self._entries: dict[str, Backend[T]] = {}

    def register(self, name: str, summary: str, factory: Callable[..., T], live: bool = True) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Backend(name, summary, factory, live)

    def names(self, live_only: bool = False) -> tuple[str, ...]:
        return tuple(n for n, b in self._entries.items() if b.live or not live_only)

    def check(self, name: str, live_only: bool = False) -> str:
        """``name`` if it is registered (and usable live when asked), else a ValueError listing the valid ones."""
        valid = self.names(live_only)
        if name not in valid:
            where = " for a live session" if live_only and name in self._entries else ""
            raise ValueError(f"unknown {self.kind} {name!r}{where}; valid: {', '.join(valid)}")
        return name

    def get(self, name: str) -> Backend[T]:
        return self._entries[self.check(name)]

    def create(self, name: str, **kwargs: Any) -> T:
        """A new instance of backend ``name`` (weights, if any, are shared by every instance)."""
        return self.get(name).factory(**kwargs)

    def help(self) -> str:
        """``name: summary; ...`` for argparse help texts."""
        return "; ".join(f"{b.name}: {b.summary}" for b in self._entries.values())


@dataclass
class ThinkerSpec:
    """What a thinker factory may use: the persona and its story time, or a script of replies."""

    character: str = "nemo"
    story_time: int | None = None  # the character's narrative present (chapter); None = the persona's default
    world: Path | None = None  # world database; None = the shipped one
    script: list[ActionPlan] | None = None  # the scripted thinker's replies, from a conversation file
    visitor: str | None = None  # a live visitor's id: whose memory (None = the local user)


@dataclass
class AgentChoice:
    """Which backends make up the agent, and the per-session values their factories need."""

    engine: str = "cascade"  # one of ENGINES
    thinker: str = "story"  # one of THINKERS
    talker: str = "espeak"  # one of TALKERS
    face: str = "procedural"  # one of FACES
    body: str = "procedural"  # one of BODIES
    voice: str = "en-gb+m3"  # the agent's voice (a talker's voice name)
    seed: int = 0  # idle motion and sampling seed
    thinker_spec: ThinkerSpec = field(default_factory=ThinkerSpec)

    def check(self, live: bool = False) -> AgentChoice:
        """Raise ValueError naming the first unknown backend (``live``: also refuse offline-only ones)."""
        ENGINES.check(self.engine)
        THINKERS.check(self.thinker, live_only=live)
        TALKERS.check(self.talker)
        FACES.check(self.face)
        BODIES.check(self.body)
        return self


THINKERS: Registry[Thinker] = Registry("thinker", "Factories take ``spec: ThinkerSpec``.")
TALKERS: Registry[TTS] = Registry("talker", "Factories take ``voice: str`` (the character's voice name).")
FACES: Registry[FaceAnimator] = Registry("face", "Factories take ``seed: int``.")
BODIES: Registry[BodyAnimator] = Registry("body", "Factories take ``seed: int``.")
ENGINES: Registry[list[Stage]] = Registry(
    "engine", "How the agent is produced end to end. Factories take ``choice: AgentChoice``, "
    "``history: ConversationHistory`` and optionally a ready ``thinker``, and return the agent's stages "
    "(turn-taking to motion), to which render and serve append their sinks.")


# -- thinkers ---------------------------------------------------------------------------------------
def _scripted_thinker(spec: ThinkerSpec) -> Thinker:
    from anima.thinker.scripted import ScriptedThinker

    if spec.script is None:
        raise ValueError("the scripted thinker needs a conversation file's agent turns")
    return ScriptedThinker(spec.script)


def _story_thinker(spec: ThinkerSpec) -> Thinker:
    from anima.thinker.story import StoryThinker

    return StoryThinker.create(character=spec.character, story_time=spec.story_time, world=spec.world, visitor=spec.visitor)


THINKERS.register("scripted", "replies written in the conversation file", _scripted_thinker, live=False)
THINKERS.register("story", "in character from the story-time knowledge graph (offline)", _story_thinker)


# -- talkers ----------------------------------------------------------------------------------------
def _espeak_talker(voice: str) -> TTS:
    from anima.talker.espeak import EspeakTTS

    return EspeakTTS(voice=voice)


TALKERS.register("espeak", "espeak-ng formant voice with phoneme timings", _espeak_talker)


def _kodama_talker(voice: str) -> TTS:
    from anima.talker.kodama import KodamaTTS

    return KodamaTTS.load(voice=voice)


TALKERS.register("kodama", "neural: speech-token language model + 1 kbps tokenizer (shipped weights)", _kodama_talker)


def _piper_talker(voice: str) -> TTS:
    from anima.talker.piper import PiperTTS

    return PiperTTS(voice=voice)


TALKERS.register("piper", "neural Piper VITS voice (piper-tts, GPL-3.0; voice CC0) with model phoneme timings", _piper_talker)


# -- faces ------------------------------------------------------------------------------------------
def _procedural_face(seed: int) -> FaceAnimator:
    from anima.face.procedural import ProceduralFace

    return ProceduralFace(seed=seed)


def _unils_face(seed: int) -> FaceAnimator:
    from anima.face.unils import UniLSFace

    return UniLSFace.load(seed=seed)


FACES.register("procedural", "visemes, listening behaviour and emotion poses (no weights)", _procedural_face)
FACES.register("unils", "UniLS two-stage transformer hearing both speakers (shipped weights)", _unils_face)


# -- bodies -----------------------------------------------------------------------------------------
def _procedural_body(seed: int) -> BodyAnimator:
    from anima.body.procedural import ProceduralBody

    return ProceduralBody(seed=seed)


def _flood_body(seed: int) -> BodyAnimator:
    from anima.body.flood import FloodBody

    return FloodBody.load(seed=seed)


BODIES.register("procedural", "keyframed gestures and speech beats (no weights)", _procedural_body)
BODIES.register("flood", "FloodDiffusion streaming diffusion on mocap (shipped weights, CC BY-NC 4.0)", _flood_body)


# -- engines ----------------------------------------------------------------------------------------
def make_turn_taking(recovery: bool = True, end_of_turn: bool = True) -> Any:
    """The cascade's turn-taking: silero detector, false-interruption recovery, semantic end of turn.

    With the end-of-turn detector the voice detector's hangover is short (64 ms): the detector, not
    a fixed silence, decides how long to wait. Benchmarks build the runtime's turn-taking here too.
    """
    from anima.core.duplex import Recovery, TurnTaking
    from anima.core.end_of_turn import make_end_of_turn
    from anima.core.vad import make_vad

    hangover_s = 0.064 if end_of_turn else 0.2
    return TurnTaking(vad=make_vad(min_silence_s=hangover_s), recovery=Recovery(hangover_s=hangover_s) if recovery else None,
                      end_of_turn=make_end_of_turn("cues") if end_of_turn else None)


def _agent_stages(choice: AgentChoice, history: ConversationHistory, thinker: Thinker | None, talker: TTS,
                  face: FaceAnimator, body: BodyAnimator, body_stage: Stage | None = None) -> list[Stage]:
    """The agent side of the runtime, in pipeline order: turn-taking to body (no sink)."""
    from anima.body.stage import BodyStage
    from anima.core.echo import EchoCancellation
    from anima.core.playout import Playout
    from anima.face.stage import FaceStage
    from anima.talker.stage import TalkerStage
    from anima.thinker.stage import ThinkerStage

    if thinker is None:
        thinker = THINKERS.create(choice.thinker, spec=choice.thinker_spec)
    return [
        EchoCancellation(),  # first: the recogniser and the turn detector hear the user, not the agent
        make_turn_taking(),
        ThinkerStage(thinker, history),
        TalkerStage(talker, voice=choice.voice),
        Playout(),
        FaceStage(face),
        body_stage or BodyStage(body),
    ]


def _cascade(choice: AgentChoice, history: ConversationHistory, thinker: Thinker | None = None) -> list[Stage]:
    """The cascade: the registry's talker, face and body (``thinker`` overrides the registry's: the
    server builds it first, to refuse a bad hello early)."""
    return _agent_stages(choice, history, thinker, TALKERS.create(choice.talker, voice=choice.voice),
                         FACES.create(choice.face, seed=choice.seed), BODIES.create(choice.body, seed=choice.seed))


def _mot(choice: AgentChoice, history: ConversationHistory, thinker: Thinker | None = None) -> list[Stage]:
    """The mixture of transformers speaks and moves: one model for talker, face and body."""
    from anima.e2e.mot.engine import MoTAgent, MoTBodyStage

    agent = MoTAgent.load(voice=choice.voice, seed=choice.seed)
    return _agent_stages(choice, history, thinker, agent.talker, agent.face, agent.body, MoTBodyStage(agent.body))


def _e2e(choice: AgentChoice, history: ConversationHistory, thinker: Thinker | None = None) -> list[Stage]:
    """The end-to-end duplex decoder hears the user and writes voice, face and body (no Thinker)."""
    from anima.core.echo import EchoCancellation
    from anima.e2e.duplex.engine import DuplexAgent, DuplexStage

    agent = DuplexAgent.load(character=choice.thinker_spec.character, seed=choice.seed)
    return [EchoCancellation(), DuplexStage(agent, planner=_e2e_planner(choice), character=choice.thinker_spec.character)]


def _e2e_planner(choice: AgentChoice) -> Any:
    """The decoder's asynchronous planner: the story thinker's plans (it does not write the visitor's
    memory: the agent's words are the decoder's, not the plan's), through the LLM slot when one is
    configured. None for the scripted thinker (no thinker to plan with)."""
    if choice.thinker != "story":
        return None
    from anima.e2e.duplex.planner import LLMPlanner, StoryPlanner
    from anima.thinker.story import StoryThinker, llm_config_from_env

    spec = choice.thinker_spec
    story = StoryPlanner(StoryThinker.create(character=spec.character, story_time=spec.story_time, world=spec.world,
                                             remember=False))
    llm = llm_config_from_env()
    return LLMPlanner(llm, fallback=story) if llm is not None else story


ENGINES.register("cascade", "five modules: Thinker, Talker, Face and Body on the streaming runtime", _cascade)
ENGINES.register("mot", "mixture of transformers: the frozen Kodama TTS and a behaviour expert write speech, face and body "
                 "(weights: docs/mot.md)", _mot)
ENGINES.register("e2e", "end-to-end duplex decoder: one transformer hears the user and writes voice, face and body "
                 "(weights: docs/duplex.md)", _e2e)


def add_backend_arguments(parser: Any, body_default: str = "flood", thinker: bool = False) -> None:
    """``--engine --talker --face --body`` (and ``--thinker``) with the registered names as choices.

    ``anima render``/``demo`` and ``anima serve`` share these, so their names and help never drift.
    """
    if thinker:
        parser.add_argument("--thinker", default="scripted", choices=THINKERS.names(),
                            help=f"thinker backend (default scripted). {THINKERS.help()}")
    parser.add_argument("--engine", default="cascade", choices=ENGINES.names(), help=f"engine (default cascade). {ENGINES.help()}")
    parser.add_argument("--talker", default="espeak", choices=TALKERS.names(), help=f"talker (default espeak). {TALKERS.help()}")
    parser.add_argument("--face", default="procedural", choices=FACES.names(), help=f"face animator (default procedural). {FACES.help()}")
    parser.add_argument("--body", default=body_default, choices=BODIES.names(),
                        help=f"body animator (default {body_default}). {BODIES.help()}")
