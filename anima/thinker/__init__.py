"""Thinker: decides what the character says and does (LLM backends, memory, retrieval)."""

from anima.core.plan import EMOTIONS, GAZE_TARGETS, GESTURES, ActionPlan

__all__ = ["EMOTIONS", "GAZE_TARGETS", "GESTURES", "ActionPlan"]

# The story thinker (world graph, gated retrieval, memory, personas, LLM backends), imported on
# first use so that the runtime's import of the Thinker interface stays light.
__all__ += ["StoryThinker", "LLMConfig", "World", "load_persona"]


def __getattr__(name: str):
    if name == "StoryThinker":
        from anima.thinker.story import StoryThinker

        return StoryThinker
    if name == "LLMConfig":
        from anima.thinker.llm import LLMConfig

        return LLMConfig
    if name == "World":
        from anima.thinker.world import World

        return World
    if name == "load_persona":
        from anima.thinker.persona import load_persona

        return load_persona
    raise AttributeError(f"module 'anima.thinker' has no attribute {name!r}")
