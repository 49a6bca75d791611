"""End-to-end engines and their training data."""
