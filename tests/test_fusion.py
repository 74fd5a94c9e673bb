"""export.fusion: the session entry that stops ONNX Runtime re-fusing SkipLayerNorm, and the fusion pass itself."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from export.fusion import cpu_session_options, fuse_for_cpu

HIDDEN = 16


def _residual_layer_norm(path):
    """x + bias + skip → LayerNorm: the pattern ONNX Runtime turns into SkipLayerNormalization at load time."""
    vi = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4, HIDDEN])  # noqa: E731
    init = [helper.make_tensor(n, TensorProto.FLOAT, [HIDDEN], np.full(HIDDEN, v, np.float32))
            for n, v in (("gamma", 1.0), ("beta", 0.0), ("bias", 0.5))]
    nodes = [helper.make_node("Add", ["x", "bias"], ["xb"]), helper.make_node("Add", ["xb", "skip"], ["sum"]),
             helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12)]
    graph = helper.make_graph(nodes, "g", [vi("x"), vi("skip")], [vi("y")], init)
    onnx.save(helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def _ops_after_load(model, options, tmp_path):
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node], session


def test_cpu_session_options_keep_add_layer_norm_unfused(tmp_path):
    model = _residual_layer_norm(tmp_path / "ln.onnx")
    default = ort.SessionOptions()
    default.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ops, _ = _ops_after_load(model, default, tmp_path)
    assert ops == ["SkipLayerNormalization"]  # what ONNX Runtime does by itself
    ops, session = _ops_after_load(model, cpu_session_options(threads=1), tmp_path)
    assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops
    x, skip = np.random.default_rng(0).standard_normal((2, 1, 4, HIDDEN), dtype=np.float32)
    total = x + 0.5 + skip
    expected = (total - total.mean(-1, keepdims=True)) / np.sqrt(total.var(-1, keepdims=True) + 1e-12)
    np.testing.assert_allclose(session.run(None, {"x": x, "skip": skip})[0], expected, atol=1e-5)


def test_unknown_architecture_is_copied_unfused(tmp_path):
    src = _residual_layer_norm(tmp_path / "ln.onnx")
    assert fuse_for_cpu(src, tmp_path / "out.onnx", model_type="gpt2", num_heads=2, hidden_size=HIDDEN) == {}
    assert [n.op_type for n in onnx.load(str(tmp_path / "out.onnx")).graph.node] == ["Add", "Add", "LayerNormalization"]
