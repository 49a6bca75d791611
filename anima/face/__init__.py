"""Face Animator: face parameters (FLAME-style 112-D), the viseme/listening default, UniLS."""
