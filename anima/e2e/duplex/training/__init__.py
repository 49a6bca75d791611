"""Training the duplex decoder and its motion codec (never imported by the runtime)."""
