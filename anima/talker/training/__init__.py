"""Talker training and evaluation: tokenizer, TTS, phoneme judge, speaker encoder, codec baselines."""
