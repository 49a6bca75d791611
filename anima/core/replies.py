"""Where the agent's replies stand, as a stage after the playout sees them: planned, playing, done.

A stage that acts on a reply's plan (the face's expression, the body's gesture) must undo it when
the user barges in. If the reply's audio is playing, the playout follows the interruption with
``AgentStoppedSpeakingFrame(interrupted=True)`` stamped where the audio went silent. If it has not
started (the plan arrived, the audio did not), no such frame comes: the stage has to act on the
``InterruptionFrame`` itself. ``ReplyTracker`` tells the two cases apart.

Turn events are system frames and overtake the queued plan, so a reply can be seen to start before
its plan is processed; the tracker remembers such turns rather than count them as unspoken.
"""

from __future__ import annotations

from anima.core.frames import AgentStartedSpeakingFrame, AgentStoppedSpeakingFrame, Frame


class ReplyTracker:
    """Follows plans and the playout's turn events for one stage; the stage owns one."""

    def __init__(self) -> None:
        self.speaking = False  # agent audio is playing (started, not yet stopped)
        self._unspoken: set[int] = set()  # turns planned whose audio has not started
        self._started_unplanned: set[int] = set()  # turns that started before their plan got here

    @property
    def unspoken(self) -> bool:
        """A plan was received whose audio has not started playing."""
        return bool(self._unspoken)

    def planned(self, turn_id: int) -> None:
        """A ThinkerPlanFrame for ``turn_id`` was processed."""
        if turn_id in self._started_unplanned:
            self._started_unplanned.discard(turn_id)
        else:
            self._unspoken.add(turn_id)

    def started(self, turn_id: int) -> None:
        """AgentStartedSpeakingFrame: the turn's audio began playing."""
        self.speaking = True
        if turn_id in self._unspoken:
            self._unspoken.discard(turn_id)
        else:
            self._started_unplanned.add(turn_id)

    def stopped(self) -> None:
        """AgentStoppedSpeakingFrame: the playing audio ended (finished or interrupted)."""
        self.speaking = False

    def observe(self, frame: Frame) -> None:
        """Follow the playout's turn events (a stage calls this with every downstream system frame)."""
        if isinstance(frame, AgentStartedSpeakingFrame):
            self.started(frame.turn_id)
        elif isinstance(frame, AgentStoppedSpeakingFrame):
            self.stopped()

    def interrupted(self) -> None:
        """InterruptionFrame: every reply not yet played is dropped, and so is any plan still queued."""
        self._unspoken.clear()
        self._started_unplanned.clear()
