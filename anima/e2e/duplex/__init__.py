"""The end-to-end duplex decoder (Body of Her): one transformer writes the agent's next audio tokens
and motion tokens from both parties' streams and control signals (docs/duplex.md).

    motion.py    the causal motion codec: face + body frames <-> per-frame continuous latents
    model.py     the decoder G: categorical heads for 8 codebooks, a MAR diffusion head for motion
    training/    data (both channels tokenised), staged training, evaluation
"""
