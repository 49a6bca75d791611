"""Speech corpus: the manifest format, sentence selection, voices, prosody, phoneme timings."""
