"""The five-module cascade, assembled: Thinker, Talker, Face, Body, Renderer on the runtime.

The cascade engine itself (which stages, in which order) and each module's backend are chosen by
name in ``anima.registry`` (an unknown name is an error listing the valid ones). ``build_stages``
adds the renderer and MP4 sink; ``render_conversation`` renders a conversation file to MP4.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from anima.core.clock import MediaClock
from anima.core.conversation import Conversation, load_conversation
from anima.core.history import ConversationHistory
from anima.core.scripted_user import ScriptedUser
from anima.core.session import Session, SessionResult
from anima.core.stage import Stage
from anima.registry import ENGINES, THINKERS, AgentChoice, ThinkerSpec


@dataclass
class CascadeOptions:
    """Which backend each module uses (names from ``anima.registry``), and how to render."""

    thinker: str = "scripted"  # one of registry.THINKERS
    face: str = "procedural"  # one of registry.FACES
    body: str = "flood"  # one of registry.BODIES: the shipped FloodDiffusion model; "procedural" needs no weights
    talker: str = "espeak"  # one of registry.TALKERS
    engine: str = "cascade"  # one of registry.ENGINES
    width: int = 960
    height: int = 540
    realtime: bool = False  # pace by the wall clock instead of as fast as possible
    character: str = "nemo"  # story thinker: whose persona
    story_time: int | None = None  # story thinker: the character's narrative present (chapter)
    world: Path | None = None  # story thinker: world database (default: the shipped one)
    seed: int | None = None  # overrides the conversation's seed
    max_duration_s: float = 1800.0

    def agent(self, conversation: Conversation) -> AgentChoice:
        """The registry choice for rendering ``conversation`` (its voice, seed and scripted replies)."""
        return AgentChoice(
            engine=self.engine, thinker=self.thinker, talker=self.talker, face=self.face, body=self.body,
            voice=conversation.agent.voice, seed=conversation.seed if self.seed is None else self.seed,
            thinker_spec=ThinkerSpec(self.character, self.story_time, self.world, script=conversation.agent_turns),
        ).check()


def build_stages(conversation: Conversation, out_path: Path, options: CascadeOptions, history: ConversationHistory) -> list[Stage]:
    """The stages of a render session, in pipeline order: the engine's, then the renderer and MP4 sink."""
    from anima.render.character import CharacterRenderer
    from anima.render.stage import MP4Sink, RenderStage

    choice = options.agent(conversation)
    clock_fps = 25
    engine = ENGINES.create(choice.engine, choice=choice, history=history)
    return [
        *engine,
        RenderStage(CharacterRenderer(options.width, options.height), conversation.agent.name, conversation.user.name),
        MP4Sink(out_path, options.width, options.height, fps=clock_fps),
    ]


def scripted_user(conversation: Conversation, seed: int, expect_generated_replies: bool = False,
                  reply_timeout_s: float = 15.0) -> ScriptedUser:
    """The user's side of the conversation, voiced with espeak-ng (or read from WAV files). The user
    waits at most ``reply_timeout_s`` after a turn for the agent to answer (and stop), then goes on."""
    from anima.core.audio import load_wav
    from anima.talker.espeak import EspeakTTS

    tts = EspeakTTS(voice=conversation.user.voice)
    for spec in conversation.user_turns:
        if spec.wav is not None and not spec.text:  # a recording without its transcript: recognise it offline
            from anima.asr import transcribe_file

            spec.text = transcribe_file(spec.wav)

    def synthesize(text: str):
        chunk = tts.synthesize(text, voice=conversation.user.voice)
        return chunk.samples, list(chunk.events)

    return ScriptedUser(
        conversation.user_turns,
        synthesize,
        load_wav,
        pause_s=conversation.pause_s,
        reply_timeout_s=reply_timeout_s,
        expect_final_reply=len(conversation.agent_turns) >= len(conversation.user_turns) or expect_generated_replies,
        seed=seed,
        silent_replies=[i for i, plan in enumerate(conversation.agent_turns) if not plan.speech.strip()],
    )


def estimate_duration_s(conversation: Conversation) -> float:
    """Rough media length for a progress bar: speech at ~16 characters a second plus turn gaps."""
    chars = sum(len(t.text) for t in conversation.user_turns) + sum(len(p.speech) for p in conversation.agent_turns)
    return 2.0 + chars / 18.0 + (conversation.pause_s + 0.25) * len(conversation.user_turns)


async def render_async(conversation: Conversation, out_path: Path, options: CascadeOptions, progress: bool = True) -> SessionResult:
    history = ConversationHistory()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    seed = conversation.seed if options.seed is None else options.seed
    stages = build_stages(conversation, out_path, options, history)
    # The end-to-end decoder decides itself whether and how long to answer: a visitor waits 5 s, not 15.
    source = scripted_user(conversation, seed, expect_generated_replies=options.thinker != "scripted" or options.engine == "e2e",
                           reply_timeout_s=5.0 if options.engine == "e2e" else 15.0)
    if any(t.agent_interrupts_s is not None for t in conversation.user_turns):  # the script has the agent cut in
        from anima.core.duplex import TurnTaking

        for stage in stages:
            if isinstance(stage, TurnTaking):
                stage.interjector = source.interjector()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=round(estimate_duration_s(conversation), 1), unit="s", desc="rendering", mininterval=0.5,
                   bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s media [{elapsed}<{remaining}]")

    def advance(dt: float) -> None:
        # A generated reply can run longer than the script's estimate; tqdm drops a total that is
        # overrun (and its format then fails), so the total grows ahead of the media time.
        if bar.n + dt > bar.total:
            bar.total = round(bar.n + dt + 5.0, 1)
        bar.update(dt)

    session = Session(
        stages, source, MediaClock(realtime=options.realtime), history, options.max_duration_s,
        on_tick=advance if bar is not None else None,
    )
    try:
        return await session.run()
    finally:
        if bar is not None:
            bar.total = max(bar.total, bar.n)
            bar.refresh()
            bar.close()


def render_conversation(path: str | Path, out_path: str | Path, options: CascadeOptions | None = None, progress: bool = True) -> SessionResult:
    """Render a conversation file to an MP4 (H.264 + AAC). Raises ConversationError on a bad file."""
    options = options or CascadeOptions()
    THINKERS.check(options.thinker)
    # The end-to-end engine writes its own replies: agent turns in the file are not needed (nor used).
    conversation = load_conversation(path, scripted=options.thinker == "scripted" and options.engine != "e2e")
    return asyncio.run(render_async(conversation, Path(out_path), options, progress))


def demo_conversation_path() -> Path:
    return Path(__file__).parent / "assets" / "conversations" / "nautilus.yaml"
