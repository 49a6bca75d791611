"""Training and scoring of the mixture of transformers: data, trainer, evaluator, ablations."""
