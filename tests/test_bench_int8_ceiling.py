"""benchmarks/int8_ceiling.py times what it says: each part graph computes its operation (checked against numpy)."""

import numpy as np
import onnx
from onnx import numpy_helper

from benchmarks.int8_ceiling import attention_graphs, projection_graphs, qattention_graph
from benchmarks.int8_speed import session


def _run(graph):
    model, feed = graph
    return session(model, threads=1).run(None, feed)[0]


def _weights(model: bytes) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(model).graph.initializer}


def _attention(q, k, v, heads):
    """softmax(q kᵀ / √d) v per head; q, k, v [B, S, D] → [B, S, D]."""
    b, s, d = q.shape
    split = lambda x: x.reshape(b, s, heads, d // heads).transpose(0, 2, 1, 3)
    scores = split(q) @ split(k).transpose(0, 1, 3, 2) / np.sqrt(d // heads)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    return ((p / p.sum(-1, keepdims=True)) @ split(v)).transpose(0, 2, 1, 3).reshape(b, s, d)


def _relative(a, b):
    return float(np.abs(a - b).mean() / np.abs(b).mean())


def test_projection_graphs_compute_the_same_product():
    graphs = projection_graphs(16, 64, 96, np.random.default_rng(0))
    x = graphs["fp32"][1]["x"]
    w = _weights(graphs["fp32"][0])["W"]
    np.testing.assert_allclose(_run(graphs["fp32"]), x @ w, rtol=1e-4, atol=1e-4)
    assert _relative(_run(graphs["int8"]), x @ w) < 0.02  # dynamic INT8: quantization error only
    w8, x8 = _weights(graphs["integer-gemm"][0])["W8"], graphs["integer-gemm"][1]["x8"]
    np.testing.assert_array_equal(_run(graphs["integer-gemm"]), x8.astype(np.int64) @ w8.astype(np.int64))


def test_attention_graphs_compute_attention():
    heads, rng = 4, np.random.default_rng(1)
    graphs = attention_graphs(2, 16, heads, 8, rng)
    q, k, v = (graphs["core-fp32"][1][n] for n in "qkv")
    reference = _attention(q, k, v, heads)
    np.testing.assert_allclose(_run(graphs["core-fp32"]), reference, atol=1e-5)
    np.testing.assert_allclose(_run(graphs["core-plain-fp32"]), reference, atol=1e-5)
    a, b = graphs["qk-fp32"][1]["a"], graphs["qk-fp32"][1]["b"]
    np.testing.assert_allclose(_run(graphs["qk-fp32"]), a @ b, rtol=1e-4, atol=1e-4)
    assert _relative(_run(graphs["qk-int8"]), a @ b) < 0.03


def test_qattention_graph_is_int8_projection_then_attention():
    heads = 4
    graph = qattention_graph(2, 16, heads, 8, np.random.default_rng(2))
    w = _weights(graph[0])
    weight = w["W8"].astype(np.float32) * w["wscale"]  # dequantized per column
    qkv = graph[1]["x"] @ weight + w["bias"]
    q, k, v = np.split(qkv, 3, axis=-1)
    assert _relative(_run(graph), _attention(q, k, v, heads)) < 0.03
