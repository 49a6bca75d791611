"""The dyadic dialogue corpus: generator (``dialogues``), on-disk format and loader (``format``), statistics (``stats``)."""
