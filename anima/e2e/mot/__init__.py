"""The mixture of transformers (HumanExpert): a frozen text-speech expert and a behaviour expert sharing attention.

The Talker's TTS language model writes speech codes; a narrower behaviour expert with its own norms,
QKV and FFN denoises face + body tokens by diffusion forcing, attending to the speech expert's keys
and values through one hybrid mask (docs/mot.md).
"""
