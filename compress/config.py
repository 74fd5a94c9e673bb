"""Typed configuration: YAML presets, ``key=value`` overrides and named flags, in that order of strength.

Unknown keys are rejected: one message names every bad key and the file it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from compress.errors import UserError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StudentConfig(_Strict):
    """Shape of the student; vocabulary, tokenizer and family come from the teacher."""

    layers: int = Field(6, ge=1)
    hidden: int = Field(384, ge=1)
    heads: int = Field(12, ge=1)
    intermediate_size: int | None = Field(None, ge=1, description="FFN size; default 4 × hidden")
    init: Literal["random", "teacher"] | None = Field(
        None, description="random: the paper's random weights; teacher: cut out of the teacher (its layers "
        "init_from_teacher_layers, its most important hidden channels, heads and FFN neurons: compress/pruning.py); "
        "default: teacher when init_from_teacher_layers is given, else random")
    init_from_teacher_layers: list[int] | None = Field(
        None, description="with init=teacher: 1-based teacher layers, one per student layer (default: evenly spaced, "
        "ending at the last)")
    prune_criterion: Literal["activation", "magnitude"] = Field(
        "activation", description="with init=teacher and a narrower student: rank hidden channels, heads and FFN "
        "neurons by their activations on a calibration sample of the corpora (Minitron's criterion), or by weight norms")
    calibration_sequences: int = Field(256, ge=1, description="with the activation criterion: corpus sequences measured")
    trim_vocab: bool = Field(
        False, description="keep only the word pieces the distillation corpora use (see compress/vocab_trim.py)")
    trim_min_count: int = Field(1, ge=1, description="with trim_vocab: keep pieces seen at least this often")
    trim_keep_top: int | None = Field(None, ge=1, description="with trim_vocab: keep at most this many ids in all")

    @property
    def starts_from(self) -> Literal["random", "teacher"]:
        """``init`` resolved: unset, it is ``teacher`` when init_from_teacher_layers is given (as configs from before
        student.init meant it), else ``random``."""
        return self.init or ("teacher" if self.init_from_teacher_layers else "random")

    @model_validator(mode="after")
    def _init_agrees(self):
        if self.init == "random" and self.init_from_teacher_layers:
            raise ValueError("init_from_teacher_layers takes the student's layers from the teacher: set "
                             "student.init=teacher, or drop init_from_teacher_layers for random weights")
        return self


class LossConfig(_Strict):
    """MiniLMv2 relation loss settings (``objective: hidden_mse`` is a baseline for comparisons: MSE
    between the student's last hidden states and the teacher layer's output; equal widths only)."""

    objective: Literal["relations", "hidden_mse"] = "relations"
    relation_heads: Union[int, Literal["auto"]] = "auto"
    teacher_layer: Union[int, Literal["auto", "last"]] = "auto"
    weights: dict[Literal["qq", "kk", "vv"], float] = Field(default_factory=lambda: {"qq": 1.0, "kk": 1.0, "vv": 1.0})


class CorpusConfig(_Strict):
    """One unlabelled corpus: a text file, ``.jsonl``, ``.parquet`` (any of the text ones gzipped), a
    ``datasets`` folder, a folder of them, or a folder written by ``compress prepare-data``."""

    path: str
    weight: float = Field(1.0, gt=0)
    text_field: str = "text"


class DataConfig(_Strict):
    corpora: list[CorpusConfig] = Field(default_factory=list)
    max_length: int = Field(128, ge=8)
    pad_to_max_length: bool = Field(
        False, description="pad every batch to max_length (not to its longest row): static shapes for "
        "torch.compile and CUDA graphs, at the price of computing padding")
    long_lines: Literal["window", "truncate"] = Field(
        "window", description="a line longer than max_length: split into windows, or keep only its first window")
    prepare_workers: Union[int, Literal["auto"]] = Field(
        "auto", description="tokenizer processes for preparing raw corpora (auto: one per core, at most 16)")
    cache_dir: str | None = Field(
        None, description="where raw corpora are prepared (default: $RELATION_COMPRESS_CACHE/prepared)")
    max_bad_share: float = Field(
        0.1, ge=0, le=1, description="refuse a corpus whose share of undecodable or non-text records is above this")

    @field_validator("prepare_workers")
    @classmethod
    def _positive(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("must be >= 1 or 'auto'")
        return v
    # Mixture sampling: corpus i is drawn with probability ∝ weight_i · (n_i / Σn)^alpha
    # (alpha 1: proportional to size; alpha 0: uniform over corpora; XLM-R used 0.3).
    sampling_alpha: float = Field(0.3, ge=0, le=1)


class TrainConfig(_Strict):
    """Optimiser and loop; defaults are the paper's recipe (AdamW 6e-4, eps 1e-6, wd 0.01)."""

    steps: int = Field(1000, ge=0, description="0 saves the initial student (a no-distillation baseline)")
    batch_size: int = Field(32, ge=1, description="sequences per optimiser step per process")
    grad_accum: int = Field(1, ge=1, description="micro-batches per step (batch_size must divide by it)")
    lr: float = Field(6e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: Union[int, Literal["auto"]] = "auto"
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast or fp32; auto: bf16 on CUDA (and for distillation also on CPUs with "
        "native bf16, AVX-512 BF16 or AMX), fp32 otherwise")
    compile: bool = False
    relation_kernel: Literal["auto", "torch", "triton"] = Field(
        "auto", description="the relation loss's implementation: triton (one fused kernel, nothing of size T×T in GPU "
        "memory), torch (the reference), auto: triton on CUDA where triton imports, torch elsewhere")
    deterministic: bool = Field(
        False, description="deterministic CUDA kernels (torch.use_deterministic_algorithms, cuBLAS workspace), so a "
        "resumed run is bitwise equal to an uninterrupted one on a GPU too; slower")
    loader_workers: Union[int, Literal["auto"]] = Field(
        "auto", description="DataLoader processes per rank (auto: 2 on CUDA, 0 on CPU)")
    checkpoint_every: int = Field(200, ge=1)
    log_every: int = Field(10, ge=1)
    report_to: list[Literal["tensorboard", "mlflow", "wandb", "trackio"]] = Field(
        default_factory=list, description="experiment trackers that get the metrics and the config, stored offline in "
        "RUN/tracking/ (compress/tracking.py): none (default), one name, or a list (tensorboard,mlflow)")

    @field_validator("report_to", mode="before")
    @classmethod
    def _tracker_names(cls, v):
        return tracker_names(v)

    @field_validator("warmup_steps", "loader_workers")
    @classmethod
    def _non_negative(cls, v):
        if isinstance(v, int) and v < 0:
            raise ValueError("must be >= 0 or 'auto'")
        return v


def tracker_names(v):
    """``report_to`` as written → a list of tracker names: ``none``/null → [], ``"a,b"`` → [a, b], duplicates dropped."""
    if v is None:
        return []
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)):
        return v  # pydantic names the wrong type
    names = [x.strip().lower() if isinstance(x, str) else x for x in items]
    return list(dict.fromkeys(x for x in names if x not in ("", "none")))


class DistillConfig(_Strict):
    """Everything ``compress distill`` needs; saved as the run's ``config.yaml``."""

    teacher: str | None = None
    student: StudentConfig = Field(default_factory=StudentConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


class ExportConfig(_Strict):
    """Everything ``compress export`` needs; recorded in the manifest's export stage."""

    model: str = Field("student", description="'student', 'teacher', or the name of a fine-tuned model under finetune/")
    opset: int = Field(18, ge=14, le=22)
    runtimes: list[Literal["onnxruntime", "openvino"]] = Field(
        default_factory=lambda: ["onnxruntime"], min_length=1,
        description="runtimes to export for: onnxruntime (fp32, int8 with --int8, int8-qat with --qat) and/or openvino "
        "(openvino-fp32, openvino-bf16 where the CPU has bf16, openvino-int8 with --int8, openvino-int8-qat with --qat); "
        "the FP32 ONNX is always written")
    int8: bool = False
    int8_method: Literal["dynamic", "static"] = "dynamic"
    calib_corpus: list[str] = Field(default_factory=list, description="text for static calibration (default: the distill corpora)")
    calib_samples: int = Field(256, ge=1)
    parity_samples: int = Field(64, ge=1, description="held-out lines compared against PyTorch")
    fp32_tolerance: float = Field(1e-4, gt=0, description="max abs difference of FP32 ONNX vs PyTorch")
    min_int8_cosine: float = Field(0.99, ge=0, le=1, description="refuse an INT8 (or bf16) variant below this mean cosine")
    quantize_embeddings: bool | Literal["auto"] = Field(
        "auto", description="also store the embedding tables in INT8; auto: when they hold at least 75% of the "
        "model's parameters (export.stage.EMBEDDING_SHARE_FOR_INT8), as in a large-vocabulary multilingual student")
    fuse: bool = Field(True, description="dynamic INT8 from a graph with ONNX Runtime's attention fusion "
                       "(QAttention; export/fusion.py); checked against PyTorch, unfused when it does not match")
    force: bool = Field(False, description="keep an INT8 variant that fails min_int8_cosine")
    seed: int = 0
    qat: bool = Field(False, description="quantization-aware retraining before the INT8 export (variants int8-qat and/or "
                     "openvino-int8-qat, one per runtime)")
    qat_runtimes: list[Literal["onnxruntime", "openvino"]] | None = Field(
        None, description="the runtimes --qat retrains for (each a retraining of its own); default: every one in runtimes")
    qat_reference: Literal["student", "original"] = Field(
        "student", description="frozen FP32 reference: the distilled student, or the original teacher")
    qat_output_weight: float = Field(1.0, ge=0, description="weight of the relation loss on the final hidden states")
    qat_embedding_weight: float = Field(
        1.0, ge=0, description="weight of 1 − cosine of mean-pooled embeddings (reference of equal width only)")
    qat_train: TrainConfig = Field(default_factory=lambda: TrainConfig(
        steps=200, batch_size=32, lr=2e-5, weight_decay=0.0, checkpoint_every=100, log_every=10))

    @model_validator(mode="after")
    def _qat_runtimes_are_exported(self):
        extra = sorted(set(self.qat_runtimes or []) - set(self.runtimes))
        if extra:
            raise ValueError(f"qat_runtimes {extra} are not among the exported runtimes {self.runtimes}: add them to "
                             "--runtime")
        return self

    def qat_for(self, runtime: str) -> bool:
        """Whether --qat retrains for ``runtime``."""
        return self.qat and runtime in (self.qat_runtimes or self.runtimes)

    @field_validator("quantize_embeddings", mode="before")
    @classmethod
    def _true_false_or_auto(cls, v):
        if v not in (True, False, "auto"):  # one message instead of one per member of the union
            raise ValueError(f"must be true, false or auto, not {v!r}")
        return v


class FinetuneConfig(_Strict):
    """Everything ``compress finetune`` needs; unset recipe fields come from the task's YAML."""

    task: str = Field(..., description="task name (configs/tasks/NAME.yaml) or a task YAML path")
    model: str = Field("student", description="student, teacher, or a Hugging Face model folder")
    name: str | None = Field(None, description="output folder under finetune/ (default: task, task-teacher, ...)")
    epochs: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    max_train_examples: int | None = Field(None, ge=1)
    max_length: int | None = Field(None, ge=8)
    weight_decay: float = Field(0.01, ge=0)
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast or fp32 (as train.precision); auto: bf16 on CUDA and on CPUs with native "
        "bf16 (AVX-512 BF16 or AMX), fp32 otherwise (the same accuracy, measured: docs/benchmarks.md)")
    report_to: list[Literal["tensorboard", "mlflow", "wandb", "trackio"]] | None = Field(
        None, description="experiment trackers (as train.report_to); default: the run's distillation's train.report_to")

    @field_validator("report_to", mode="before")
    @classmethod
    def _tracker_names(cls, v):
        return None if v is None else tracker_names(v)


class BenchConfig(_Strict):
    """Everything ``compress bench`` needs; recorded in ``results.json``'s settings."""

    providers: list[Literal["cpu", "cuda", "tensorrt"]] = Field(default_factory=lambda: ["cpu"])
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 8, 32])
    seq_lengths: list[int] = Field(default_factory=lambda: [32, 128])
    threads: int | None = Field(None, ge=1, description="the one thread count of every runtime (ONNX Runtime "
                                "intra-op, OpenVINO, torch); default: the physical cores available")
    tasks: list[str] = Field(default_factory=list, description="tasks to score every variant on (configs/tasks/)")
    warmup: int = Field(5, ge=0)
    min_time_s: float = Field(1.0, ge=0)
    min_runs: int = Field(10, ge=1)
    rounds: int = Field(3, ge=1, description="alternating timing rounds over all variants (each gets min_time_s / rounds)")
    torch: bool = Field(False, description="also time the teacher and student in PyTorch")
    text: list[str] = Field(default_factory=list, description="text for the timed inputs (default: the distill corpora)")
    max_eval_examples: int | None = Field(None, ge=10, description="cap every task's examples (quick runs)")

    @field_validator("batch_sizes", "seq_lengths")
    @classmethod
    def _positive(cls, v):
        if not v or any(x < 1 for x in v):
            raise ValueError("must be a non-empty list of positive integers")
        return sorted(set(v))


class PlanConfig(_Strict):
    """``compress plan``: candidate student shapes timed against a latency budget on this machine."""

    teacher: str
    budget_ms: float = Field(gt=0, description="end-to-end p50 per request (tokenization included), milliseconds")
    runtime: Literal["onnxruntime", "openvino"] = "onnxruntime"
    precision: Literal["int8", "bf16", "fp32"] = "int8"
    batch_size: int = Field(1, ge=1)
    seq_length: int = Field(128, ge=8)
    threads: int | None = Field(None, ge=1, description="default: the physical cores available")
    layers: list[int] | None = Field(None, description="candidate depths (default 2, 3, 4, 6)")
    hidden: list[int] | None = Field(None, description="candidate widths, multiples of the teacher's head size "
                                     "(default: a third, half, two thirds and all of the teacher's)")
    ffn_ratios: list[float] | None = Field(None, description="FFN size / hidden (default: the teacher's)")
    corpus: list[str] = Field(default_factory=list, description="text to time with (default: words of its vocabulary)")
    trim_vocab: bool = Field(False, description="candidates keep only the word pieces --corpus uses, as "
                             "student.trim_vocab does (smaller embeddings; tokenization with the trimmed tokenizer)")
    trim_min_count: int = Field(1, ge=1, description="with trim_vocab: keep pieces seen at least this often")
    trim_keep_top: int | None = Field(None, ge=1, description="with trim_vocab: keep at most this many ids in all")
    min_time_s: float = Field(0.5, gt=0, description="seconds each candidate is timed at least")
    cache: bool = Field(True, description="reuse timings of earlier plans on this machine")

    @model_validator(mode="after")
    def _trim_needs_text(self):
        if self.trim_vocab and not self.corpus:
            raise ValueError("trim_vocab keeps the pieces a corpus uses: pass --corpus with the distillation's text")
        return self


def parse_override(item: str) -> tuple[str, Any]:
    """``"train.lr=3e-4"`` → ``("train.lr", 0.0003)``; the value is read as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override '{item}' is not of the form key=value (e.g. train.lr=3e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``key == "a.b"``, creating inner dicts as needed."""
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"override '{key}': '{part}' is a value, not a section")
        node = child
    node[leaf] = value


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (empty file → {}); a clear error for a missing or malformed file."""
    if not path.is_file():
        raise UserError(f"config file {path} does not exist: pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"config file {path} is not valid YAML{where}: fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys, not a {type(data).__name__}")
    return data


def build_config(
    model: type[_Strict],
    *,
    base: dict[str, Any] | None = None,
    source: str = "defaults",
    overrides: list[str] = (),
    flags: dict[str, Any] | None = None,
) -> _Strict:
    """Validate ``base`` ← ``key=value`` overrides ← named ``flags`` (dotted keys; None = not given)."""
    tree = dict(base or {})
    for item in overrides:
        set_dotted(tree, *parse_override(item))
    for key, value in (flags or {}).items():
        if value is not None:
            set_dotted(tree, key, value)
    _fill_nested_defaults(model, tree)
    try:
        return model.model_validate(tree)
    except ValidationError as err:
        raise UserError(f"invalid config ({source}{' + overrides' if overrides else ''}): {describe(err)}") from None


def _fill_nested_defaults(model: type[BaseModel], tree: dict[str, Any]) -> None:
    """Complete each partial sub-config in ``tree`` from the field's own default, in place.

    Without this, ``qat_train.steps=30`` would build ``TrainConfig(steps=30)`` from TrainConfig's class defaults
    (distillation's lr 6e-4) instead of changing one key of ExportConfig's QAT defaults (lr 2e-5).
    """
    for name, field in model.model_fields.items():
        sub = tree.get(name)
        if not isinstance(sub, dict):
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            merged = default.model_dump()
            _deep_update(merged, sub)
            tree[name] = merged
            _fill_nested_defaults(type(default), merged)


def _deep_update(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def describe(err: ValidationError) -> str:
    """All of pydantic's errors in one line: unknown keys first, then bad values."""
    unknown, bad = [], []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            unknown.append(where)
        else:
            bad.append(f"{where}: {e['msg']}")
    parts = []
    if unknown:
        parts.append("unknown key" + ("s " if len(unknown) > 1 else " ") + ", ".join(unknown))
    parts.extend(bad)
    return "; ".join(parts)


def to_plain(config: _Strict) -> dict[str, Any]:
    """The config as plain YAML-safe data (tuples become lists)."""
    return config.model_dump(mode="json")
