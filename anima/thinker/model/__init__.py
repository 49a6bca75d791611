"""The Thinker's neural models (nn.Modules and their loaders; no training code)."""
