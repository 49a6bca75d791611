"""Test helpers shipped with the package so stage authors can test their own stages."""

from anima.testing.harness import FrameRecorder, ToneTTS, run_frames

__all__ = ["FrameRecorder", "ToneTTS", "run_frames"]
