"""Retrieval (tools/retrieval.py): queries per second and latency, batched vs one by one, and index build time.

    python benchmarks/retrieval_bench.py            # 10,000 and 100,000 documents
    python benchmarks/retrieval_bench.py --quick    # 1,000 and 10,000 documents
    python benchmarks/retrieval_bench.py --doc-tokens 32   # embed documents cut at 32 tokens: ~3x faster builds

For BM25 (bm25s) and dense (all-MiniLM-L6-v2 embeddings in a FAISS flat index), at each corpus size:
- index build time, and the time to load the same index back from the on-disk cache;
- the same queries answered in batches of 64 (one `retrieve` call each) and one by one, side by side:
  queries per second, ms per call (p50 / p95), and the ratio batched / one by one;
- top-3 hit rate: how often the document a query was cut from comes back in the top 3.

Documents are synthetic Search-R1-style passages (`"Title"\\ntext`, 60-140 words, ~100 as in
wiki-18) of English words drawn with a Zipf law over the MiniLM vocabulary's frequency order.
A query is 6 consecutive words of a random document, leaving out the 100 most common words.
Writes benchmarks/results/retrieval-bench.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.embeddings import MiniLMEncoder, model_dir  # noqa: E402
from tools.retrieval import Retriever  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
K = 3  # Search-R1's default topk


def english_words() -> list[str]:
    """Whole English words from the MiniLM vocabulary, most frequent first (BERT's vocab order)."""
    vocab = (model_dir() / "vocab.txt").read_text(encoding="utf-8").split("\n")
    return [w for w in vocab[1996:] if w.isascii() and w.isalpha() and len(w) > 1]


def synthetic_corpus(n: int, words: list[str], seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, len(words) + 1) ** 1.07
    lengths = rng.integers(60, 141, size=n)
    drawn = np.asarray(words)[rng.choice(len(words), size=int(lengths.sum()), p=zipf / zipf.sum())]
    titles = np.asarray(words[500:])[rng.integers(0, len(words) - 500, size=(n, 2))]
    docs, start = [], 0
    for i, length in enumerate(lengths):
        text = " ".join(drawn[start:start + length])
        docs.append({"id": str(i), "contents": f'"{titles[i, 0].capitalize()} {titles[i, 1]}"\n{text}'})
        start += length
    return docs


def make_queries(docs: list[dict], count: int, common: set[str], seed: int = 1) -> tuple[list[str], list[str]]:
    """(queries, id of the document each was cut from): 6 consecutive words of a document, `common` ones left out."""
    rng = np.random.default_rng(seed)
    queries, sources = [], []
    for i in rng.integers(0, len(docs), size=count):
        words = [w for w in docs[i]["contents"].split("\n", 1)[1].split() if w not in common]
        start = int(rng.integers(0, len(words) - 6))
        queries.append(" ".join(words[start:start + 6]))
        sources.append(docs[i]["id"])
    return queries, sources


def timed_calls(retriever: Retriever, queries: list[str], batch: int) -> dict:
    retriever.retrieve(queries[:batch], k=K)  # warm-up: first-call allocations are not search time
    calls, results = [], []
    for start in range(0, len(queries), batch):
        t = time.perf_counter()
        results += retriever.retrieve(queries[start:start + batch], k=K)
        calls.append(time.perf_counter() - t)
    ms = 1e3 * np.asarray(calls)
    return {"qps": len(queries) / sum(calls), "call_ms_p50": float(np.percentile(ms, 50)),
            "call_ms_p95": float(np.percentile(ms, 95)), "calls": len(calls), "results": results}


def bench(method: str, docs: list[dict], queries: list[str], sources: list[str], batch: int,
          encoder: MiniLMEncoder | None) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        retriever = Retriever(docs, method, cache_dir=cache, encoder=encoder)
        build = time.perf_counter() - t
        t = time.perf_counter()
        retriever = Retriever(docs, method, cache_dir=cache, encoder=encoder)
        load = time.perf_counter() - t
        assert not retriever.built, "the second construction should have read the cache"
    batched = timed_calls(retriever, queries, batch)
    single = timed_calls(retriever, queries, 1)
    hits = batched.pop("results")
    single.pop("results")
    found = np.mean([src in {h["id"] for h in row} for src, row in zip(sources, hits)])
    return {"build_s": build, "load_cached_s": load, "batched": batched, "one_by_one": single,
            "ratio": batched["qps"] / single["qps"], "top3_hit_rate": float(found)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 documents instead of 10,000 and 100,000")
    parser.add_argument("--queries", type=int, default=None, help="queries per measurement (default 256, quick 128)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--doc-tokens", type=int, default=256,
                        help="cut documents at this many tokens when embedding them (MiniLM's own cut is 256); "
                             "a shorter cut builds big dense indexes faster and leaves query cost unchanged")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and FAISS threads (default: theirs, one per core)")
    args = parser.parse_args(argv)
    sizes = (1_000, 10_000) if args.quick else (10_000, 100_000)
    count = args.queries or (128 if args.quick else 256)

    import faiss
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    report: dict = {"quick": args.quick, "k": K, "batch": args.batch, "queries": count,
                    "doc_tokens": args.doc_tokens, "torch_threads": torch.get_num_threads(), "cores": os.cpu_count(),
                    "load_average_start": os.getloadavg()[0], "runs": []}
    t = time.perf_counter()
    encoder = MiniLMEncoder(max_tokens=args.doc_tokens)  # queries (6 words) are far below any cut
    report["model_load_s"] = time.perf_counter() - t
    words = english_words()
    for n in sizes:
        docs = synthetic_corpus(n, words)
        queries, sources = make_queries(docs, count, set(words[:100]))
        tokens = [len(encoder.tokenizer(d["contents"])["input_ids"]) for d in docs[:200]]
        for method in ("bm25", "dense"):
            print(f"{method} over {n:,} documents ...", flush=True)
            run = bench(method, docs, queries, sources, args.batch, encoder if method == "dense" else None)
            report["runs"].append({"method": method, "docs": n, "mean_tokens_per_doc": float(np.mean(tokens)), **run})
            print(f"  build {run['build_s']:.1f} s, batched {run['batched']['qps']:.0f} q/s, "
                  f"one by one {run['one_by_one']['qps']:.0f} q/s ({run['ratio']:.1f}x)", flush=True)
    report["load_average_end"] = os.getloadavg()[0]
    write_report(report)


def write_report(report: dict) -> None:
    b = report["batch"]
    lines = [
        "# Retrieval: BM25 (bm25s) and dense (all-MiniLM-L6-v2 + FAISS flat), batched vs one by one", "",
        f"{'Quick run' if report['quick'] else 'Full run'}: {report['queries']} queries of 6 words, top-{report['k']}, "
        f"batches of {b}; {report['cores']} cores, torch threads {report['torch_threads']}, load average "
        f"{report['load_average_start']:.1f} at the start and {report['load_average_end']:.1f} at the end. "
        f"MiniLM loaded in {report['model_load_s']:.1f} s (not counted in build times).", "",
        f"| method | docs | build (s) | load cached (s) | batched q/s | one-by-one q/s | batched / one-by-one "
        f"| ms per call of {b}: p50 / p95 | ms per single query: p50 / p95 | top-3 hit rate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        bt, one = r["batched"], r["one_by_one"]
        lines.append(f"| {r['method']} | {r['docs']:,} | {r['build_s']:.1f} | {r['load_cached_s']:.2f} "
                     f"| {bt['qps']:.0f} | {one['qps']:.0f} | {r['ratio']:.1f}x "
                     f"| {bt['call_ms_p50']:.0f} / {bt['call_ms_p95']:.0f} "
                     f"| {one['call_ms_p50']:.1f} / {one['call_ms_p95']:.1f} | {r['top3_hit_rate']:.2f} |")
    tokens = report["runs"][0]["mean_tokens_per_doc"]
    lines += ["", f"Documents average {tokens:.0f} MiniLM tokens; dense embeds them cut at {report.get('doc_tokens', 256)} "
                  "(MiniLM's own cut is 256; a shorter cut makes dense builds faster and leaves query cost as it is: "
                  "FAISS flat scans every vector either way). Build time for dense is embedding the corpus; q/s counts queries, so a batched call of 64 answers 64. The documents are random "
                  "words: there is no meaning for embeddings to match, so the hit rate checks that search finds "
                  "exact words (BM25's strength), not which method retrieves better on real text."]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "retrieval-bench.md").write_text("\n".join(lines) + "\n")
    (OUT / "retrieval-bench.json").write_text(json.dumps(report, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
