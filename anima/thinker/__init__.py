"""Thinker: decides what the character says and does (LLM backends, memory, retrieval)."""

from anima.core.plan import EMOTIONS, GAZE_TARGETS, GESTURES, ActionPlan

__all__ = ["EMOTIONS", "GAZE_TARGETS", "GESTURES", "ActionPlan"]
