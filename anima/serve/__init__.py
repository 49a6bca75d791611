"""Live duplex server: FastAPI + WebSockets, one process, many sessions (``anima serve``)."""
