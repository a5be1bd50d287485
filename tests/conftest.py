import os

import pytest

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Qwen2 model whose tokenizer was trained on Sokoban prompts (built once per session)."""
    from agents.tiny import ensure_tiny_model, env_corpus

    return ensure_tiny_model(tmp_path_factory.mktemp("tiny-sokoban") / "model", env_corpus("sokoban", episodes=8))
