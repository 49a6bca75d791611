"""The ``e2e`` engine: one decoder hears the user and writes the agent's voice, face and body.

``anima render --engine e2e`` and ``anima serve --engine e2e`` replace the cascade (turn-taking,
Thinker, Talker, playout, face, body) by two stages: the echo canceller, then ``DuplexStage``.
Every 80 ms the stage feeds the user's last 80 ms (the speech tokenizer's streaming encoder) to
the decoder G, which writes the agent's next row of codes and the motion latents of the step; the
tokenizer's streaming decoder turns each completed frame into audio, the motion codec's streaming
decoder turns the latents into two 25 fps frames of face (112) and body (HumanML3D-263 -> joints).
The face is in the motion tokens (not the UniLS face driven by the audio).

Listening, answering, backchannels, barge-in and cutting in are the model's: nothing tells it
whose turn it is. One runtime rule stays, the safety cap: when the agent has been talking over the
user for ``overlap_cap_s`` the stage writes silence rows until the user stops (the model still
hears everything). The stage reports the agent's speech to the rest of the runtime from the energy
of what it played (``AgentStartedSpeakingFrame`` / ``AgentStoppedSpeakingFrame``, state badge),
and the user's from a voice activity detector.

The asynchronous planner (paper 5.2, ``planner.py``) runs beside the decoder: every 2 s and at each
turn change it reads the transcript (the runtime's speech recogniser) and writes the text prompt
for the next seconds, which is embedded with the one sentence embedder and conditions the next
steps (the paper's P); its trajectory, when it has one, fills the r slot. A person's
``TextPromptFrame`` holds until the next plan.

Weights: ``ANIMA_DUPLEX_WEIGHTS`` (default ``anima/assets/weights/duplex``) holds ``g/`` (the decoder)
and ``motion/`` (the motion codec); the speech tokenizer is the Kodama talker's
(``ANIMA_TALKER_WEIGHTS``/tokenizer), checked by its code digest.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anima.core.frames import (
    NS_PER_S,
    SAMPLE_RATE,
    AgentStartedSpeakingFrame,
    AgentState,
    AgentStateFrame,
    AgentStoppedSpeakingFrame,
    BodyPoseFrame,
    FaceParamsFrame,
    Frame,
    PlayedAudioFrame,
    TextPromptFrame,
    TickFrame,
    UserAudioFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTranscriptFrame,
)
from anima.core.stage import DOWN, UP, Direction, Stage

FACE_DIM = 112
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[2] / "assets" / "weights" / "duplex"
DEFAULT_WEIGHTS = Path(os.environ.get("ANIMA_DUPLEX_WEIGHTS") or SHIPPED_WEIGHTS)
STEP_SAMPLES = 1920  # 80 ms at 24 kHz: one speech frame, one decoder step
TICK_SAMPLES = 960  # 40 ms: one 25 fps tick
SPEAKING_RMS = 0.01  # the agent's own audio above this is speech (about -40 dBFS)
SPEAKING_HANGOVER_S = 0.4  # ... until this long below it
BODY_VELOCITY_SCALE = 20 / 25  # body263 velocities are per 20 fps frame; the stream integrates at 25 fps


def is_speech(samples: np.ndarray) -> bool:
    """The speech rule for one chunk of audio: RMS above SPEAKING_RMS."""
    return float(np.sqrt(np.mean(np.asarray(samples, np.float64) ** 2))) > SPEAKING_RMS


@dataclass
class StepResult:
    """One 80 ms step of the agent: what it plays and shows."""

    audio: np.ndarray  # (1920,) float32 at 24 kHz
    face: np.ndarray  # (2, 112)
    joints: np.ndarray  # (2, 22, 3)
    capped: bool  # the safety cap silenced this step


class DuplexAgent:
    """One session's decoder, tokenizer and motion codec, with their streaming states (not thread-safe:
    one stream at a time)."""

    def __init__(self, model, tokenizer, codec, character: str | None = None, seed: int = 0,
                 temperature: float = 0.8, top_k: int = 50, overlap_cap_s: float = 2.0) -> None:
        import torch

        from anima.body.data.humanml3d import RicRecovery

        if tokenizer.num_codebooks != model.config.n_codebooks:
            raise ValueError(f"tokenizer writes {tokenizer.num_codebooks} codebooks, the decoder {model.config.n_codebooks}")
        if codec.config.latent != model.config.latent:
            raise ValueError(f"motion codec latents of {codec.config.latent}, the decoder expects {model.config.latent}")
        known = tuple(model.config.identities)
        if character is not None and character not in known:
            raise ValueError(f"character {character!r}: the decoder knows {', '.join(known) or 'no characters'}")
        identity = known.index(character) if character is not None else None
        self.model, self.tokenizer, self.codec = model, tokenizer, codec
        self.identity = identity
        self.temperature, self.top_k, self.overlap_cap_s = temperature, top_k, overlap_cap_s
        self.generator = torch.Generator().manual_seed(seed)
        self.prompt: np.ndarray | None = None  # (d_prompt,) the text prompt's embedding, None = empty
        self.trajectory: np.ndarray | None = None  # (frames_per_step * 66,) joint velocities, None = empty
        self._ric = RicRecovery()
        self._silence_row = None
        self.reset()

    @classmethod
    def load(cls, directory: str | Path | None = None, talker_dir: str | Path | None = None, **kwargs) -> DuplexAgent:
        """The shipped (or ``directory``'s) weights, with the talker's tokenizer; clear errors if missing."""
        from anima.checkpoint import CheckpointError, read_config
        from anima.e2e.duplex.model import load_duplex
        from anima.e2e.duplex.motion import MotionCodec
        from anima.talker.kodama import DEFAULT_WEIGHTS as TALKER_WEIGHTS
        from anima.talker.model.tokenizer import SpeechTokenizer

        directory = Path(directory or DEFAULT_WEIGHTS)
        if not (directory / "g" / "config.json").is_file():
            raise CheckpointError(f"{directory}: no duplex decoder weights (g/); train them (docs/duplex.md) and point "
                                  "ANIMA_DUPLEX_WEIGHTS at the folder")
        model = load_duplex(directory / "g")
        codec = MotionCodec.from_pretrained(directory / "motion")
        tokenizer = SpeechTokenizer.from_pretrained(Path(talker_dir or TALKER_WEIGHTS) / "tokenizer")
        want = read_config(directory / "g")["config"].get("tokenizer_digest")
        if want is not None and tokenizer.code_digest() != want:
            raise CheckpointError(f"{directory}: trained on the codes of tokenizer {want}, the talker's is "
                                  f"{tokenizer.code_digest()}: use the talker weights it was trained with")
        return cls(model, tokenizer, codec, **kwargs)

    def reset(self) -> None:
        """A new conversation: empty histories, the agent silent."""
        self.state = self.model.new_state()
        self.enc = self.tokenizer.new_encoder_state()
        self.dec = self.tokenizer.new_decoder_state()
        self.motion_state = self.codec.new_state()
        self._ric.reset()
        self._shown: tuple[np.ndarray, np.ndarray] | None = None  # (face, joints) of the step written last
        self.user_speaking = False
        self.agent_speaking = False
        self._overlap_s = 0.0

    def silence_row(self):
        """(1, K) the codes of 80 ms of silence (what a quiet agent writes)."""
        import torch

        if self._silence_row is None:
            state = self.tokenizer.new_encoder_state()
            codes = self.tokenizer.encode_step(state, torch.zeros(1, 4 * STEP_SAMPLES))  # settle the causal context
            self._silence_row = codes[:, :, -1]
        return self._silence_row

    def step(self, user: np.ndarray) -> StepResult:
        """Hear the user's last 80 ms (1920 samples), write the agent's next 80 ms."""
        import torch

        user = np.asarray(user, np.float32)
        if user.shape != (STEP_SAMPLES,):
            raise ValueError(f"DuplexAgent.step: expected ({STEP_SAMPLES},) samples of the user, got {user.shape}")
        codes = self.tokenizer.encode_step(self.enc, torch.from_numpy(user)[None])  # (1, K, 1)
        user_frame = codes[:, :, -1] if codes.shape[-1] else None
        capped = self.agent_speaking and self.user_speaking and self._overlap_s >= self.overlap_cap_s
        force = None
        if capped:  # the safety cap: silence rows (undelayed: the delay slots of a silent stream are silence too)
            force = self.silence_row()
        c = self.model.config
        if self.prompt is not None and np.shape(self.prompt) != (c.d_prompt,):
            raise ValueError(f"prompt: expected a ({c.d_prompt},) sentence embedding, got {np.shape(self.prompt)}")
        if self.trajectory is not None and np.shape(self.trajectory) != (c.frames_per_step * c.d_traj,):
            raise ValueError(f"trajectory: expected ({c.frames_per_step * c.d_traj},) joint velocities, got {np.shape(self.trajectory)}")
        prompt = torch.from_numpy(self.prompt)[None].float() if self.prompt is not None else None
        traj = torch.from_numpy(self.trajectory)[None].float() if self.trajectory is not None else None
        identity = torch.tensor([self.identity]) if self.identity is not None else None
        out = self.model.step(self.state, user_frame, prompt=prompt, traj=traj, identity=identity,
                              temperature=self.temperature, top_k=self.top_k, generator=self.generator, force_row=force)
        audio = np.zeros(STEP_SAMPLES, np.float32)
        if out.frame is not None:
            audio = self.tokenizer.decode_step(self.dec, out.frame[:, :, None])[0].numpy().astype(np.float32)
            if capped:
                audio[:] = 0.0
        with torch.no_grad():
            frames = self.codec.decode_step(self.motion_state, out.motion)[0].numpy()  # (2, 375)
        face, body = frames[:, :FACE_DIM], frames[:, FACE_DIM:].astype(np.float64)  # (2, 112), (2, 263)
        body[:, :3] *= BODY_VELOCITY_SCALE
        joints = self._ric.push(body)  # (2, 22, 3)
        # The audio of frame i-1 plays now (the delay); the motion written with it plays with it.
        shown, self._shown = self._shown, (face.astype(np.float32), joints.astype(np.float32))
        if shown is None:
            shown = self._shown
        if self.agent_speaking and self.user_speaking:
            self._overlap_s += STEP_SAMPLES / SAMPLE_RATE
        else:
            self._overlap_s = 0.0
        return StepResult(audio=audio, face=shown[0], joints=shown[1], capped=capped)


class DuplexStage(Stage):
    """User audio in; the agent's played audio, face and body out, one tick at a time."""

    def __init__(self, agent: DuplexAgent, vad: str = "energy", planner=None, character: str | None = None) -> None:
        from anima.core.vad import make_vad

        super().__init__(name="duplex")
        self.agent = agent
        self.planner_loop = None
        if planner is not None:
            from anima.e2e.duplex.planner import PlannerLoop

            self.planner_loop = PlannerLoop(planner, self._on_plan, character=character)
        self._plan = None
        self._prompt_text: str | None = None
        self.vad = make_vad(vad)
        self._user = np.zeros(0, np.float32)
        self._ticks: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque()  # (audio 960, face, joints)
        self._turn = 0
        self._quiet_s = 0.0
        self._embedder = None

    async def start(self) -> None:
        await super().start()
        if self.planner_loop is not None:
            self.planner_loop.start()

    async def stop(self) -> None:
        if self.planner_loop is not None:
            await self.planner_loop.stop()
        await super().stop()

    async def _on_plan(self, plan) -> None:
        self._plan = plan
        if plan.prompt != self._prompt_text:  # embed only when the prompt changes
            self._prompt_text = plan.prompt
            self.agent.prompt = await asyncio.to_thread(self._embed, plan.prompt) if plan.prompt else None

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if direction is DOWN:
            match frame:
                case UserTranscriptFrame() if frame.final and self.planner_loop is not None:
                    self.planner_loop.heard(frame.text, now_s=frame.pts_ns / NS_PER_S)
                case UserAudioFrame():
                    self._user = np.concatenate([self._user, np.asarray(frame.samples, np.float32)])
                    for event in self.vad.process(frame.samples, frame.pts_ns):
                        started = event.kind == "start"
                        self.agent.user_speaking = started
                        out = UserStartedSpeakingFrame(pts_ns=frame.pts_ns) if started else UserStoppedSpeakingFrame(
                            pts_ns=frame.pts_ns, end_pts_ns=frame.pts_ns)
                        await self.push_frame(out, DOWN)
                        await self.push_frame(AgentStateFrame(state=self._state(), pts_ns=frame.pts_ns), DOWN)
                case TextPromptFrame():
                    self._prompt_text = frame.text
                    self.agent.prompt = await asyncio.to_thread(self._embed, frame.text) if frame.text else None
                case TickFrame():
                    await self._tick(frame)
        await self.push_frame(frame, direction)

    def _embed(self, text: str) -> np.ndarray:
        from anima.embed import get_embedder

        if self._embedder is None:
            self._embedder = get_embedder("minilm")
        return self._embedder.encode([text])[0].astype(np.float32)

    def _state(self) -> AgentState:
        if self.agent.agent_speaking:
            return AgentState.SPEAKING
        return AgentState.LISTENING if self.agent.user_speaking else AgentState.IDLE

    async def _tick(self, tick: TickFrame) -> None:
        if not self._ticks:
            now_s = tick.pts_ns / NS_PER_S
            if self.planner_loop is not None:
                self.planner_loop.observe(now_s, user_speaking=self.agent.user_speaking,
                                          agent_speaking=self.agent.agent_speaking)
            self.agent.trajectory = self._plan.step_trajectory(now_s) if self._plan is not None else None
            user = self._user[:STEP_SAMPLES]
            self._user = self._user[STEP_SAMPLES:]
            if user.size < STEP_SAMPLES:
                user = np.pad(user, (0, STEP_SAMPLES - user.size))
            with self.timed():
                result = await asyncio.to_thread(self.agent.step, user)
            for k in range(2):
                self._ticks.append((result.audio[k * TICK_SAMPLES:(k + 1) * TICK_SAMPLES], result.face[k], result.joints[k]))
        audio, face, joints = self._ticks.popleft()
        await self._speaking(audio, tick)
        played = PlayedAudioFrame(audio, turn_id=self._turn if self.agent.agent_speaking else None, pts_ns=tick.pts_ns)
        await self.push_frame(played, UP)  # the echo canceller's reference
        await self.push_frame(PlayedAudioFrame(audio, turn_id=played.turn_id, pts_ns=tick.pts_ns), DOWN)
        await self.push_frame(FaceParamsFrame(face, pts_ns=tick.pts_ns), DOWN)
        await self.push_frame(BodyPoseFrame(joints, pts_ns=tick.pts_ns), DOWN)

    async def _speaking(self, audio: np.ndarray, tick: TickFrame) -> None:
        """Agent speech onsets and ends from the energy of what it plays (with a hangover)."""
        loud = is_speech(audio)
        tick_s = audio.size / SAMPLE_RATE
        if loud and not self.agent.agent_speaking:
            self._turn += 1
            self.agent.agent_speaking = True
            start = AgentStartedSpeakingFrame(turn_id=self._turn, text="", pts_ns=tick.pts_ns)
            await self.push_frame(start, UP)
            await self.push_frame(AgentStartedSpeakingFrame(turn_id=self._turn, text="", pts_ns=tick.pts_ns), DOWN)
            await self.push_frame(AgentStateFrame(state=self._state(), pts_ns=tick.pts_ns), DOWN)
        self._quiet_s = 0.0 if loud else self._quiet_s + tick_s
        if self.agent.agent_speaking and self._quiet_s >= SPEAKING_HANGOVER_S:
            self.agent.agent_speaking = False
            stop_ns = tick.pts_ns - int(self._quiet_s * NS_PER_S)
            for direction in (UP, DOWN):
                await self.push_frame(AgentStoppedSpeakingFrame(turn_id=self._turn, interrupted=self.agent.user_speaking,
                                                                pts_ns=stop_ns), direction)
            await self.push_frame(AgentStateFrame(state=self._state(), pts_ns=tick.pts_ns), DOWN)
