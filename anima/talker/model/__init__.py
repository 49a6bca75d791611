"""Talker nn.Modules: the speech tokenizer, the TTS language model, the judges used to score them."""
