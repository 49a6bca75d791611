"""The scripted user: plays the user's side of a conversation file into a live session.

It behaves like a person with a microphone: each turn is audio (synthesised from the script's text
in the user's voice, or a WAV file), delivered one clock tick late as a real microphone would
deliver it, with a streaming transcript (interim words about 0.3 s after each starts, then a final result when the speech ends,
as a speech recogniser would). It waits for the agent: a turn starts ``pause_s`` after the agent's
reply stops, or ``barge_in_s`` after the reply *starts* when the script says the user cuts in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from anima.core.conversation import UserTurnSpec
from anima.core.frames import (
    NS_PER_S,
    SAMPLE_RATE,
    AgentStartedSpeakingFrame,
    AgentStoppedSpeakingFrame,
    Frame,
    SpeechEvent,
    UserAudioFrame,
    UserTranscriptFrame,
)

Synthesize = Callable[[str], tuple[np.ndarray, list[SpeechEvent]]]
NOISE_RMS = 0.0007  # a quiet room (about -63 dBFS) so the detector sees a realistic floor
RECOGNITION_LAG_S = 0.3  # a streaming recogniser reports a word about this long after it starts
CUT_REACTION_S = 0.25  # a speaker cut off by the agent stops talking this long after it starts


@dataclass(eq=False)  # clips compare by identity: two turns may say the same words
class _Clip:
    spec: UserTurnSpec
    samples: np.ndarray  # (N,) float32, 24 kHz
    words: list[SpeechEvent]
    start_ns: int = -1
    emitted_words: int = 0
    finished: bool = False
    heard_text: str | None = None  # set when the agent cut the user off: the words said before

    @property
    def end_ns(self) -> int:
        return self.start_ns + int(self.samples.size * NS_PER_S / SAMPLE_RATE)


SILENT_REPLY_NS = 3 * NS_PER_S  # how long a reply without words (a gesture) takes


class ScriptedUser:
    """The user's side of a conversation, scheduled against the agent's turn events."""

    def __init__(
        self,
        turns: list[UserTurnSpec],
        synthesize: Synthesize,
        load_wav: Callable[[str], np.ndarray],
        pause_s: float = 0.6,
        lead_in_s: float = 0.8,
        tail_s: float = 1.2,
        expect_final_reply: bool = True,
        reply_timeout_s: float = 15.0,
        seed: int = 0,
        silent_replies: Sequence[int] = (),
    ) -> None:
        """``silent_replies``: indices of the user turns the agent answers without words (a gesture):
        the next turn starts ``SILENT_REPLY_S`` + the pause after such a turn, the session ends that
        long after it if it is the last."""
        self.silent_replies = frozenset(silent_replies)
        self.clips: list[_Clip] = []
        for spec in turns:
            if spec.wav is not None:
                samples, words = load_wav(str(spec.wav)), []
            else:
                samples, words = synthesize(spec.text)
            self.clips.append(_Clip(spec, np.asarray(samples, dtype=np.float32), [w for w in words if w.kind == "word"]))
        self.pause_ns = int(pause_s * NS_PER_S)
        self.tail_ns = int(tail_s * NS_PER_S)
        self.reply_timeout_ns = int(reply_timeout_s * NS_PER_S)
        self.expect_final_reply = expect_final_reply
        self._rng = np.random.default_rng(seed)
        self._next = 0  # index of the next clip to schedule
        if self.clips:
            self.clips[0].start_ns = int(lead_in_s * NS_PER_S)
        self._agent_started_ns: int | None = None
        self._agent_stopped_ns: int | None = None
        self._last_user_end_ns = 0
        self.now_ns = 0  # media time of the latest tick

    def observe(self, frame: Frame) -> None:
        """Turn events from the agent (frames leaving the head of the pipeline upstream)."""
        if isinstance(frame, AgentStartedSpeakingFrame):
            self._agent_started_ns = frame.pts_ns
            for clip in self.clips:  # a user the script has the agent cut off stops talking
                if clip.spec.agent_interrupts_s is not None and 0 <= clip.start_ns <= frame.pts_ns and not clip.finished:
                    self._cut(clip, frame.pts_ns + int(CUT_REACTION_S * NS_PER_S))
        elif isinstance(frame, AgentStoppedSpeakingFrame):
            self._agent_stopped_ns = frame.pts_ns

    def _cut(self, clip: _Clip, at_ns: int) -> None:
        """Stop ``clip`` at media time ``at_ns`` (a 30 ms fade); its words after that are never said."""
        keep = int((at_ns - clip.start_ns) * SAMPLE_RATE / NS_PER_S)
        if keep >= clip.samples.size:
            return
        keep = max(keep, 0)
        samples = clip.samples[:keep].copy()
        fade = min(keep, int(0.03 * SAMPLE_RATE))
        if fade:
            samples[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        clip.samples = samples
        said_s = keep / SAMPLE_RATE
        clip.words = [w for w in clip.words if w.time_s < said_s]
        clip.heard_text = " ".join(w.text for w in clip.words)

    def _schedule(self, now_ns: int) -> None:
        """Give the next clip a start time once the agent's reply tells us when."""
        if self._next >= len(self.clips):
            return
        clip = self.clips[self._next]
        if clip.start_ns >= 0:
            return
        prev = self.clips[self._next - 1]
        if not prev.finished:
            return
        started = self._agent_started_ns if (self._agent_started_ns or -1) >= prev.end_ns else None
        stopped = self._agent_stopped_ns if (self._agent_stopped_ns or -1) >= prev.end_ns else None
        pause_ns = int(clip.spec.pause_s * NS_PER_S) if clip.spec.pause_s is not None else self.pause_ns
        if self._next - 1 in self.silent_replies:  # the agent answered with a gesture: no speech to wait for
            clip.start_ns = max(now_ns, prev.end_ns + SILENT_REPLY_NS + pause_ns)
        elif clip.spec.barge_in_s is not None and started is not None:
            clip.start_ns = max(now_ns, started + int(clip.spec.barge_in_s * NS_PER_S))
        elif stopped is not None:
            clip.start_ns = max(now_ns, stopped + pause_ns)
        elif now_ns - prev.end_ns > self.reply_timeout_ns:
            clip.start_ns = now_ns + pause_ns  # the agent never answered: carry on

    def interjector(self) -> ClipInterjector:
        """The script's cut-ins (``agent_interrupts_s``) as an ``Interjector`` for the turn-taking stage."""
        return ClipInterjector(self)

    def frames_for_tick(self, pts_ns: int, tick_ns: int) -> list[Frame]:
        """Microphone audio for the period before ``pts_ns`` plus any transcript updates."""
        self.now_ns = pts_ns
        self._schedule(pts_ns)
        start_ns = pts_ns - tick_ns
        if start_ns < 0:
            return []
        n = int(round(tick_ns * SAMPLE_RATE / NS_PER_S))
        audio = (self._rng.standard_normal(n) * NOISE_RMS).astype(np.float32)
        out: list[Frame] = []
        for clip in self.clips:
            if clip.start_ns < 0 or clip.finished:
                continue
            offset = int(round((start_ns - clip.start_ns) * SAMPLE_RATE / NS_PER_S))
            lo, hi = max(0, offset), min(clip.samples.size, offset + n)
            if hi > lo:
                audio[lo - offset : hi - offset] += clip.samples[lo:hi]
            heard_s = (pts_ns - clip.start_ns) / NS_PER_S
            new_words = sum(1 for w in clip.words if w.time_s + RECOGNITION_LAG_S <= heard_s)
            if new_words > clip.emitted_words:
                clip.emitted_words = new_words
                partial = " ".join(w.text for w in clip.words[:new_words])
                out.append(UserTranscriptFrame(partial, final=False, pts_ns=pts_ns))
            if pts_ns >= clip.end_ns:
                clip.finished = True
                self._last_user_end_ns = clip.end_ns
                final = clip.spec.text if clip.heard_text is None else clip.heard_text
                if final:
                    out.append(UserTranscriptFrame(final, final=True, pts_ns=pts_ns))
                self._next = self.clips.index(clip) + 1
        out.insert(0, UserAudioFrame(audio, pts_ns=start_ns))
        return out

    def finished(self, now_ns: int) -> bool:
        """All turns played, the agent's last reply over (or never coming), and a short tail."""
        if not self.clips:
            return now_ns >= self.tail_ns
        if not all(c.finished for c in self.clips):
            return False
        last_end = self._last_user_end_ns
        if len(self.clips) - 1 in self.silent_replies:
            return now_ns >= last_end + SILENT_REPLY_NS + self.tail_ns
        if self.expect_final_reply:
            stopped = self._agent_stopped_ns if (self._agent_stopped_ns or -1) >= last_end else None
            if stopped is None:
                return now_ns - last_end > self.reply_timeout_ns
            return now_ns >= stopped + self.tail_ns
        return now_ns >= last_end + self.tail_ns


class ClipInterjector:
    """The script's cut-ins, keyed on the scripted user's clips, not on counting turns.

    Fires while a clip whose spec has ``agent_interrupts_s`` has played that long, so a backchannel
    or a turn the detector splits cannot shift which turn is cut.
    """

    def __init__(self, user: ScriptedUser) -> None:
        self.user = user

    def consider(self, partial: str, floor_s: float) -> str | None:
        now = self.user.now_ns
        for clip in self.user.clips:
            t = clip.spec.agent_interrupts_s
            if t is not None and 0 <= clip.start_ns <= now and not clip.finished and now - clip.start_ns >= t * NS_PER_S:
                return "scripted"
        return None

    def reset(self) -> None:
        pass
