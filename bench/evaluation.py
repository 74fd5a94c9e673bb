"""``compress evaluate``: score a run's student (or any model folder, or an exported variant's folder) on tasks.

Fidelity tasks compare against a reference: by default the run's teacher. Scores of a run are kept in
``<run>/eval.json`` (recomputed when the task list changes), which ``compress sweep-layers`` and the
reproduction study read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.backends import TorchBackend, backend_for
from bench.evaluate import evaluate
from bench.tasks import load_task
from compress.errors import UserError
from compress.run_dir import RunDir, atomic_write_text, read_provenance
from compress.variants import BY_NAME


def open_encoder(path: Path, device: str = "cpu", name: str | None = None):
    """An encoder of what ``path`` holds (:func:`bench.backends.backend_for`): an ONNX folder, an OpenVINO IR folder
    (compiled to its variant's precision where its provenance.json names one, else fp32), or a Hugging Face folder or
    id. ``device`` cuda: PyTorch on the GPU, and ONNX Runtime's CUDA provider where this onnxruntime has it."""
    spec = BY_NAME.get(read_provenance(path).get("variant")) if path.is_dir() else None
    return backend_for(path).encoder(path, precision=spec.compile_precision if spec else "fp32",
                                     provider="cuda" if str(device).startswith("cuda") else "cpu", name=name)


def resolve_model(target: Path) -> tuple[Path, str | None]:
    """(model folder, the run's teacher or None) for a run folder or a plain model folder."""
    run = RunDir(target)
    if run.stage("distill"):
        if not run.student_dir.is_dir():
            raise UserError(f"{target} has no student/: its distillation has not finished (`compress distill --resume`)")
        return run.student_dir, run.teacher()
    return target, None  # a model folder or a Hugging Face id


def evaluate_model(target: Path, tasks: list[str], *, reference: str | None = None, device: str = "cpu",
                   cache: bool = True) -> list[dict[str, Any]]:
    """All scores of the model at ``target`` on ``tasks``; for a run folder cached in ``eval.json``."""
    if not tasks:
        raise UserError("no task given: pass --task (see configs/tasks/)")
    specs = [load_task(t) for t in tasks]
    model_dir, teacher = resolve_model(target)
    cache_file = RunDir(target).eval_path if teacher and cache else None
    names = [t.name for t in specs]
    if cache_file and cache_file.exists():
        saved = json.loads(cache_file.read_text(encoding="utf-8"))
        if saved.get("tasks") == names and saved.get("reference") == (reference or teacher):
            return saved["scores"]
    reference = reference or teacher
    needs_reference = any(t.kind == "fidelity" for t in specs)
    if needs_reference and not reference:
        raise UserError("a fidelity task needs a reference model: pass --reference (e.g. the teacher's folder)")
    encoder = open_encoder(model_dir, device)
    ref_encoder = open_encoder(Path(reference), device, name="reference") if needs_reference else None
    scores = [s for t in specs for s in evaluate(t, encoder, reference=ref_encoder)]
    distill = RunDir(target).stage("distill") if teacher else None
    if distill and isinstance(backend_for(model_dir), TorchBackend):  # the relation KL needs the PyTorch student
        for spec in (t for t in specs if t.kind == "fidelity"):
            kl = relation_kl_to_teacher(model_dir, teacher, spec.texts(spec.rows("test")),
                                        teacher_layer=distill["resolved"]["teacher_layer"],
                                        relation_heads=distill["resolved"]["relation_heads"],
                                        max_length=spec.max_length, device=device)
            scores += [{"task": spec.name, "metric": k, "language": None, "value": v} for k, v in kl.items()]
    if cache_file:
        atomic_write_text(cache_file, json.dumps({"tasks": names, "reference": reference, "scores": scores}, indent=2) + "\n")
    return scores


def relation_kl_to_teacher(student_dir: Path, teacher: str, texts: list[str], *, teacher_layer: int,
                           relation_heads: int, max_length: int, device: str, batch_size: int = 32) -> dict[str, float]:
    """Mean relation KL (Q-Q, K-K, V-V and their sum, as in training) between the teacher's chosen layer
    and the student's last layer on held-out ``texts``; lower is better. A trimmed student's ids are mapped
    to the teacher's through its kept ids."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from compress.architectures import arch_spec, layer_list
    from compress.distill_step import RelationDistillation
    from compress.qkv_capture import forward_to_qkv
    from compress.teacher import load_teacher
    from compress.vocab_trim import load_kept_ids

    teacher_model = load_teacher(teacher)
    student = AutoModel.from_pretrained(student_dir).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    spec = arch_spec(student.config.model_type)
    kept = load_kept_ids(student_dir)
    to_teacher = torch.tensor(kept, device=device) if kept else None
    last = len(layer_list(student, spec)) - 1
    teacher_model.model.to(device).eval()
    distillation = RelationDistillation(teacher_model.model, teacher_model.spec, teacher_layer - 1, relation_heads,
                                        to_teacher=to_teacher)
    totals, count = {}, 0
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt").to(device)
            ids, mask = enc["input_ids"], enc["attention_mask"]
            loss, parts = distillation.loss(lambda i, m: forward_to_qkv(student, spec, last, i, m), ids, mask)
            n = len(ids)
            for key, value in {"relation_kl": loss, **{f"relation_kl_{k}": v for k, v in parts.items()}}.items():
                totals[key] = totals.get(key, 0.0) + float(value) * n
            count += n
    return {key: value / count for key, value in totals.items()}


def scores_table(scores: list[dict[str, Any]]) -> str:
    """Overall scores as aligned text lines: task, metric, value (per-language rows are in the JSON)."""
    rows = [s for s in scores if s["language"] is None]
    width = max(len(f"{s['task']} {s['metric']}") for s in rows)
    return "\n".join(f"{s['task'] + ' ' + s['metric']:<{width}}  {s['value']:.4f}" for s in rows)
