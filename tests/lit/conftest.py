"""The tiny tokenizer and model fixtures of tests/models, shared with the stage-module tests."""

from tests.models.conftest import make_tiny_model, tiny_tokenizer, tiny_tokenizer_dir  # noqa: F401
