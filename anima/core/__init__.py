"""Streaming runtime: typed frames, the session media clock, stages joined by bounded queues."""
