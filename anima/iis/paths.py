"""Where the IIS finds its inputs by default (the shipped suites, the benchmark results, the
git-ignored talker weights and corpus)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SUITE = REPO / "anima" / "assets" / "suites" / "thinker-heldout-17"  # frozen before issue 17's tuning
RESULTS = REPO / "benchmarks" / "results"
TALKER_WEIGHTS = REPO / "out" / "talker" / "weights"  # tokenizer/, speaker/, judge/ (not shipped)
TALKER_CORPUS = REPO / "out" / "talker" / "corpus"
BODY_EVALUATOR = REPO / "out" / "body" / "evaluator"  # our motion-text evaluator (not shipped)
