"""anima: a real-time, full-duplex interactive digital human.

The package is laid out by the modules of the cascade: ``thinker`` (what to say), ``talker`` (how it
sounds), ``face`` and ``body`` (how it moves), ``render`` (pixels), joined by the streaming runtime in
``core``. See README.md for the architecture.
"""

__version__ = "0.1.0"
