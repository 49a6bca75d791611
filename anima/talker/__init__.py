"""Talker: text to streamed 24 kHz speech with timed phoneme and word events."""
