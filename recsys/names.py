"""Names the command line needs before it imports the models (scipy, implicit, lightgbm)."""

BEHAVIOUR_MODELS = ("cooc", "cosine", "bm25", "ease", "als")  # --model, --models, nightly behaviour_model
DEFAULT_BEHAVIOUR_MODELS = ("cosine", "bm25", "ease", "als")  # what evaluation and validation compare
