import os
import sys

import pytest

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Qwen2 model whose tokenizer was trained on Sokoban prompts (built once per session)."""
    from agents.tiny import ensure_tiny_model, env_corpus

    return ensure_tiny_model(tmp_path_factory.mktemp("tiny-sokoban") / "model", env_corpus("sokoban", episodes=8))


@pytest.fixture(autouse=True, scope="module")
def _close_miniwob_browsers():
    """A test module that played MiniWoB in this process closes its browsers: Playwright's sync API
    leaves an event loop running in the main thread until then, which breaks later modules'
    asyncio.run and their own Playwright (WebShop's browser, the viewer's test)."""
    yield
    if "envs.miniwob.browser" in sys.modules:
        sys.modules["envs.miniwob.browser"].close_shared_pool()
