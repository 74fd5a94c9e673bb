"""ONNX Runtime's transformer fusions for CPU graphs, without the one fusion that slows this CPU down.

Measured with ONNX Runtime 1.31.1 on the project's 2-core AVX-512 VNNI CPU (see docs/benchmarks.md): the
fused ``SkipLayerNormalization`` kernel takes 101 µs on a [1, 128, 384] tensor where the ``Add, Add,
LayerNormalization`` it replaces takes 25 µs (2 threads; 4–6× slower at every size tried). ONNX Runtime
applies that fusion by itself when it loads a graph (level ORT_ENABLE_ALL), so two things are needed:

* :func:`fuse_for_cpu` runs the ``onnxruntime.transformers`` optimizer for attention only (quantized, the
  Attention node becomes one ``QAttention``: 4–21% faster INT8 at batch 1–32). Its other fusions are off:
  skip-layer-norm (above); bias-GELU, because it pulls the bias out of the INT8 matmul's epilogue (4–7%
  slower INT8 than the ``Gelu`` ONNX Runtime fuses by itself); embedding-layer-norm, because it assumes
  BERT's position ids, not RoBERTa's padding-offset ones, and gains nothing measurable.
* :data:`CPU_SESSION_CONFIG` is the session config entry that keeps ONNX Runtime from re-fusing at load time;
  :func:`disable_slow_cpu_fusions` adds it to a session's options (:func:`cpu_session_options` builds them).
  Users loading an export elsewhere pass the same entry (README).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import onnx

log = logging.getLogger(__name__)

# Session config entry (a documented SessionOptions key) that disables named graph transformers at load time.
CPU_SESSION_CONFIG = {"optimization.disable_specified_optimizers": "SkipLayerNormFusion"}

# The optimizer's names for the model families it knows; RoBERTa and XLM-R graphs have BERT's encoder shape.
_MODEL_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert"}
FUSED_OPS = ("Attention",)


def disable_slow_cpu_fusions(options):
    """Add :data:`CPU_SESSION_CONFIG` to ``options`` (an ``onnxruntime.SessionOptions``) and return them."""
    for key, value in CPU_SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
    return options


def cpu_session_options(threads: int | None = None):
    """``onnxruntime.SessionOptions`` for CPU inference: all graph optimisations except SkipLayerNormFusion."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return disable_slow_cpu_fusions(options)


def fuse_for_cpu(src: Path, dst: Path, *, model_type: str, num_heads: int, hidden_size: int) -> Counter:
    """Write ``dst``: ``src`` with attention fused into ``Attention`` nodes, nothing else.

    Returns the count of fused nodes by op type (empty when the optimizer found nothing to fuse, e.g. an
    architecture it does not know; ``dst`` is then an unchanged copy).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    kind = _MODEL_TYPES.get(model_type)
    if kind is None:
        onnx.save(onnx.load(str(src)), str(dst))
        return Counter()
    options = FusionOptions(kind)
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False
    options.enable_embed_layer_norm = options.enable_gelu = options.enable_bias_gelu = False
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)  # its fusion statistics are for ORT devs
    optimized = optimize_model(str(src), model_type=kind, num_heads=num_heads, hidden_size=hidden_size,
                               optimization_options=options, opt_level=0)
    optimized.save_model_to_file(str(dst))
    counts = Counter(node.op_type for node in optimized.model.graph.node)
    return Counter({op: counts[op] for op in FUSED_OPS if counts[op]})
