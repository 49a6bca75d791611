"""Conversation history that records only what the user actually heard."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Turn:
    """One turn. For the agent, ``text`` is what was played before the end or the interruption."""

    speaker: str  # "user" or "agent"
    text: str
    interrupted: bool = False
    planned_text: str = ""  # agent only: what the thinker meant to say
    kind: str = "turn"  # "turn", or "backchannel": user sound during the agent's turn that did not take the floor


@dataclass
class ConversationHistory:
    """The turns of one session, in order."""

    turns: list[Turn] = field(default_factory=list)

    def add_user(self, text: str, interrupted: bool = False) -> None:
        """``interrupted``: the agent cut in before the user finished (``text`` is what was heard)."""
        self.turns.append(Turn("user", text, interrupted))

    def add_agent(self, heard_text: str, interrupted: bool, planned_text: str = "") -> None:
        self.turns.append(Turn("agent", heard_text, interrupted, planned_text))

    def add_backchannel(self, heard: str) -> None:
        """The user made a sound during the agent's turn and the agent went on: "mm-hm", or "(noise)"."""
        self.turns.append(Turn("user", heard or "(noise)", kind="backchannel"))

    def as_messages(self) -> list[dict[str, str]]:
        """OpenAI-style chat messages (agent turns as what was heard; backchannels left out)."""
        return [{"role": "user" if t.speaker == "user" else "assistant", "content": t.text}
                for t in self.turns if t.kind == "turn"]
