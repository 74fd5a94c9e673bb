"""Model cards: a ``README.md`` with Hub metadata in every model folder a run produces.

Cards are written for ``RUN/student/``, every export folder (``RUN/export/<variant>/``, ``RUN/export/<model>/<variant>/``)
and ``RUN/deploy/``. A card is rendered from the folder's own ``provenance.json`` (what made it), the files it holds
and, where the run has one that is newer than the folder, the run's benchmark (``RUN/bench/results.json``), so that
:func:`refresh_model_cards` can rewrite a run's cards at any time from the folders alone. The YAML front matter
is built and parsed back by ``huggingface_hub``'s ``ModelCardData``/``ModelCard``.

Layout of a card: front matter (base_model, library_name, pipeline_tag, language, license, tags), a title and a
sentence saying what the folder is, "How it was made" (teacher, layer, student shape, relation heads, steps,
tokens, corpora fingerprints; for an export its runtime, precision and parity gate), "Files" (deploy/), "Usage"
(loading lines that name the folder's real files), "Benchmark" (a compact table and links to the plots in
``RUN/bench/``: the plots stay there, linked relatively, and are not copied into the folders) and the versions.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

from compress.errors import UserError
from compress.run_dir import MANIFEST, PARITY_FILE, PROVENANCE_FILE, RunDir, atomic_write_text, read_provenance
from compress.variants import BY_NAME

log = logging.getLogger(__name__)

CARD = "README.md"
MARKER = "<!-- model card written by relation-compress; `compress bench` rewrites it, so edits here are lost -->"
EXAMPLE = "An example sentence"
TEI_IMAGE = "ghcr.io/huggingface/text-embeddings-inference:cpu-1.9"
PLOT_TITLES = {"latency_vs_accuracy.png": "Latency against accuracy", "per_language.png": "Scores per language",
               "throughput_vs_batch.png": "Throughput against batch size"}
# Corpus file names that say their language: chatterbot-corpus' files are named after the language in English
# (compress/assets/chatterbot_text.py), the fortunes corpus' after its ISO 639-1 code (fortunes_text.py).
LANGUAGE_NAMES = {
    "bengali": "bn", "chinese": "zh", "dutch": "nl", "english": "en", "french": "fr", "german": "de", "hebrew": "he",
    "hindi": "hi", "indonesian": "id", "italian": "it", "japanese": "ja", "korean": "ko", "marathi": "mr",
    "oriya": "or", "persian": "fa", "portuguese": "pt", "russian": "ru", "spanish": "es", "swedish": "sv",
    "tamil": "ta", "telugu": "te", "thai": "th", "traditionalchinese": "zh", "turkish": "tr", "ukrainian": "uk",
    "urdu": "ur", "yoruba": "yo", "polish": "pl", "czech": "cs",
}
LANGUAGE_CODES = set(LANGUAGE_NAMES.values())
RUNTIMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


# ------------------------------------------------------------------------------------------- facts


def corpus_languages(paths: list[str]) -> list[str]:
    """ISO 639-1 codes of the corpora whose file name names a language (``english.txt``, ``de.txt``), in order."""
    found: list[str] = []
    for path in paths:
        stem = Path(str(path)).name.split(".")[0].lower()
        code = LANGUAGE_NAMES.get(stem) or (stem if stem in LANGUAGE_CODES else None)
        if code and code not in found:
            found.append(code)
    return found


def teacher_license(teacher: str | None) -> str | None:
    """The ``license`` of the teacher's own model card (a folder's README.md, or a Hub teacher's README.md where
    the local Hugging Face cache holds it; nothing is downloaded), or None when it states none."""
    if not teacher:
        return None
    from huggingface_hub import ModelCard, try_to_load_from_cache

    card = Path(teacher) / CARD
    if not card.is_file():
        try:
            cached = try_to_load_from_cache(str(teacher), CARD)
        except Exception:  # not a valid repo id
            cached = None
        if not isinstance(cached, str):
            return None
        card = Path(cached)
    try:
        license_ = ModelCard.load(card, ignore_metadata_errors=True).data.license
    except Exception as err:  # a malformed card: no license rather than a failed stage
        log.warning("could not read the license of %s: %s", Path(teacher) / CARD, err)
        return None
    return license_ if isinstance(license_, str) and license_ else None


def base_model_name(teacher: str, local: bool | None = None) -> str:
    """The Hub id of a teacher, or the folder's name when it was a local folder (``local``: as the run recorded
    it; by default, whether the folder is there)."""
    local = Path(teacher).is_dir() if local is None else local
    return Path(teacher).name if local else str(teacher)


def _find_run(final: Path) -> Path | None:
    """The run folder above a produced folder (the nearest parent, up to 3 levels, holding a manifest)."""
    for parent in list(final.resolve().parents)[:3]:
        if (parent / MANIFEST).is_file():
            return parent
    return None


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def card_facts(folder: Path, final: Path | None = None) -> dict[str, Any]:
    """Plain data a card is rendered from: the folder's provenance, files, config and its run's facts.

    ``folder``: where the files are now (possibly a staging folder); ``final``: where the folder lives once
    published (default ``folder``), used for the paths in the loading lines and for finding the run."""
    folder, final = Path(folder), Path(final or folder)
    prov = read_provenance(folder)
    if prov.get("made_by") != "relation-compress":
        raise UserError(f"{folder} was not made by relation-compress (no provenance.json of ours): "
                        "not writing a model card over its README.md")
    run = _find_run(final)
    stage = prov.get("stage")
    student = prov if stage == "distill" else prov.get("source") or {}
    teacher = student.get("teacher")
    if not teacher and run is not None:  # an export of the teacher or of a fine-tuned model: the run's teacher
        teacher = RunDir(run).teacher()
    teacher = teacher or prov.get("source_model")
    local = "path" in (student.get("teacher_fingerprint") or {}) or None  # the run recorded a local folder
    config = _json(folder / "config.json")
    classifier = any("SequenceClassification" in a for a in config.get("architectures") or [])
    variants = _json(folder.parent / PARITY_FILE).get("variants", {}) if stage == "export" else {}
    return {
        "kind": stage, "folder": str(final), "run": str(run) if run else None, "provenance": prov,
        "student": student, "teacher": teacher,
        "base_model": base_model_name(teacher, local) if teacher else None,
        "license": teacher_license(teacher), "model_type": config.get("model_type"),
        "languages": corpus_languages([c.get("path", "") for c in student.get("corpora", [])]),
        "classifier": classifier, "labels": list((config.get("id2label") or {}).values()) if classifier else [],
        "sentence_transformers": (folder / "modules.json").is_file(), "files": _files(folder),
        "siblings": {name: rec for name, rec in variants.items()
                     if name in BY_NAME and BY_NAME[name].folder == prov.get("variant") and name != prov.get("variant")},
        "bench": _bench_facts(run, final, prov.get("created")) if run else None,
    }


def _bench_facts(run: Path, final: Path, created: str | None) -> dict[str, Any] | None:
    """The run's benchmark rows (this run's variants only), or None when it has none; ``stale`` when the bench
    predates the folder (its figures are of an earlier model)."""
    path = run / "bench" / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    run_resolved = run.resolve()
    mine = [v for v in results.get("variants", []) if Path(v["path"]).resolve().is_relative_to(run_resolved)]
    if not mine:
        return None
    stale = bool(results.get("created") and created
                 and dt.datetime.fromisoformat(results["created"]) < dt.datetime.fromisoformat(created))
    plots = [name for name in PLOT_TITLES if (run / "bench" / name).is_file()]
    return {"results": results, "variants": mine, "stale": stale, "created": results.get("created"),
            "link": os.path.relpath(run / "bench", final.resolve()),
            "plots": plots, "this": str(final.resolve())}


# ------------------------------------------------------------------------------------------ rendering


def card_metadata(facts: dict[str, Any]) -> dict[str, Any]:
    """The front matter's fields (Hub model-card metadata) for ``facts``."""
    prov, kind, files = facts["provenance"], facts["kind"], facts["files"]
    distilled = bool(facts["student"].get("teacher"))
    objective = facts["student"].get("config", {}).get("loss", {}).get("objective", "relations")
    tags = ["relation-compress"]
    if distilled:
        tags += ["distillation"] + (["minilmv2", "relation-distillation"] if objective == "relations" else [])
    if facts["model_type"]:
        tags.append(facts["model_type"])
    if facts["sentence_transformers"]:
        tags += ["sentence-transformers", "feature-extraction"]
    if any(f.endswith(".onnx") for f in files):
        tags.append("onnx")
    if any(f.endswith(".xml") and "openvino" in f for f in files):
        tags.append("openvino")
    names = [prov.get("variant", "")] + list(facts["siblings"]) + list(prov.get("files", {}))
    if any("int8" in n for n in names):
        tags.append("int8")
    if any("qat" in n for n in names):
        tags.append("qat")
    if kind == "deploy" and "onnx/model.onnx" in files:
        tags.append("text-embeddings-inference")
    pipeline = ("text-classification" if facts["classifier"] else
                "sentence-similarity" if facts["sentence_transformers"] else "feature-extraction")
    meta = {"base_model": facts["base_model"], "library_name": "sentence-transformers" if facts["sentence_transformers"]
            else "transformers", "pipeline_tag": pipeline, "language": facts["languages"] or None,
            "license": facts["license"], "tags": list(dict.fromkeys(tags))}
    return {k: v for k, v in meta.items() if v}


def render_card(facts: dict[str, Any]) -> str:
    """The card's text (front matter + markdown) for ``facts``, parsed back by ``huggingface_hub.ModelCard``."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(**card_metadata(facts))
    body = "\n".join([MARKER, "", *_title(facts), *_made(facts), *_files_section(facts), *_usage(facts),
                      *_bench(facts), *_versions(facts)]).rstrip() + "\n"
    text = f"---\n{data.to_yaml()}\n---\n\n{body}"
    ModelCard(text)  # parses the front matter back: a card the Hub's parser cannot read is never written
    return text


def _shape(student: dict[str, Any]) -> str:
    s = student.get("config", {}).get("student", {})
    if not s:
        return "a model"
    return f"{s['layers']}×{s['hidden']} student ({s['heads']} attention heads)"


def _variant_words(name: str, record: dict[str, Any]) -> tuple[str, str]:
    """(runtime, precision) of an export variant."""
    spec = BY_NAME[name]
    return RUNTIMES[spec.runtime], spec.precision + ("-qat" if spec.made_with == "qat" else "")


def _init_words(init: dict[str, Any], layers: list[int] | None) -> str:
    """How the student started (its provenance's ``init``; older students name only their copied layers)."""
    if init.get("kind") == "teacher" and init.get("calibration") is not None or init.get("criterion") == "magnitude":
        calibration = init.get("calibration")
        return (f"cut out of the teacher (layers {init['teacher_layers']}; the {len(init['hidden'])} hidden channels, "
                f"{len(init['heads'][0])} heads and {len(init['neurons'][0])} FFN neurons per layer ranked highest by "
                f"{init['criterion']}" + (f" on {calibration['sequences']} corpus sequences" if calibration else "")
                + ", compress.pruning)")
    teacher_layers = init.get("teacher_layers") or layers
    return f"initialised from teacher layers {teacher_layers}" if teacher_layers else "randomly initialised"


def _title(facts: dict[str, Any]) -> list[str]:
    prov, kind, student, base = facts["provenance"], facts["kind"], facts["student"], facts["base_model"]
    what = (f"A {_shape(student)} distilled from `{base}` by MiniLMv2 self-attention relation distillation"
            if student.get("teacher") else f"`{Path(prov.get('source_model', base or '')).name}`")
    if facts["classifier"]:
        what = (f"A text classifier (labels {', '.join(map(str, facts['labels']))}) fine-tuned by `compress finetune` "
                f"(`{Path(prov.get('source_model', '')).name}`)")
    name, run = Path(facts["folder"]).name, Path(facts["run"] or facts["folder"]).name
    if kind == "export":
        runtime, precision = _variant_words(prov["variant"], prov.get("parity", {}))
        model = Path(facts["folder"]).parent.name
        return [f"# {run} · {'' if model == 'export' else model + ' · '}{name}", "",
                f"{what}, exported for {runtime} in {precision.upper().replace('-QAT', ' after quantization-aware training')}.", ""]
    if kind == "deploy":
        return [f"# {run} · deploy", "",
                f"{what}: one folder with the PyTorch weights, its sentence-transformers modules and every exported "
                "variant under sentence-transformers' file names.", ""]
    return [f"# {run} · student", "", f"{what}.", ""]


def _made(facts: dict[str, Any]) -> list[str]:
    student, prov = facts["student"], facts["provenance"]
    lines = ["## How it was made", ""]
    if student.get("teacher"):
        cfg, resolved = student.get("config", {}), student.get("resolved", {})
        shape, train, data = cfg.get("student", {}), cfg.get("train", {}), cfg.get("data", {})
        sha = (student.get("teacher_fingerprint") or {}).get("sha256")
        lines += [f"- Teacher: `{student['teacher']}`" + (f" (weights sha256 `{sha[:16]}…`)" if sha else "")
                  + f", relations taken from its layer {student.get('teacher_layer')}"
                  + (f" of {resolved['teacher_layers']}" if resolved.get("teacher_layers") else "") + "."]
        if shape:
            lines.append(f"- Student: {shape['layers']} layers, hidden {shape['hidden']}, {shape['heads']} attention heads, "
                         f"FFN {shape.get('intermediate_size') or 4 * shape['hidden']}; "
                         + _init_words(student.get("init") or {}, shape.get("init_from_teacher_layers"))
                         + (f"; vocabulary trimmed to {resolved.get('student_vocab')} pieces" if shape.get("trim_vocab") else "")
                         + ".")
        objective = cfg.get("loss", {}).get("objective", "relations")
        loss = (f"KL of the Q-Q, K-K and V-V self-attention relations, {student.get('relation_heads')} relation heads"
                if objective == "relations" else f"`{objective}`")
        lines.append(f"- Loss: {loss}, between that teacher layer and the student's last layer.")
        tokens = sum(c.get("tokens", 0) for c in student.get("corpora", []))
        if train:
            accum = train.get("grad_accum", 1)
            lines.append(f"- Training: {student.get('steps')} steps of {train.get('batch_size')} sequences"
                         + (f" × {accum} accumulated" if accum and accum > 1 else "")
                         + f" (max length {data.get('max_length')}), lr {train.get('lr')}, precision "
                         f"{resolved.get('precision', train.get('precision'))}, on {resolved.get('device', '?')}"
                         + (f"; final loss {student['final_loss']:.4f}" if isinstance(student.get("final_loss"), (int, float)) else "")
                         + ".")
        if student.get("corpora"):
            lines += [f"- Corpora ({tokens:,} tokens in all):", "",
                      "| corpus | sha256 | sequences | tokens |", "|---|---|---|---|"]
            lines += [f"| `{c.get('path')}` | `{str((c.get('fingerprint') or {}).get('sha256', ''))[:16]}` | "
                      f"{c.get('sequences', '–')} | {c.get('tokens', '–')} |" for c in student["corpora"]]
        lines.append("")
    else:
        source = prov.get("source_model")
        note = (" (the run's teacher)" if source and source == facts["teacher"] else
                " (a classifier fine-tuned in the run)" if facts["classifier"] else "")
        lines += [f"- Source: `{source}`{note}; base model `{facts['base_model']}`.", ""]
    if facts["kind"] == "export":
        lines += _export_lines(prov, facts["siblings"], facts["classifier"])
    lines += [f"Written {prov.get('created')} by relation-compress"
              + (f" (run folder `{facts['run']}`, whose manifest.json and config.yaml hold the full record)" if facts["run"] else "")
              + "; `provenance.json` in this folder has every figure.", ""]
    return lines


def _gate(name: str, record: dict[str, Any], cfg: dict[str, Any]) -> str:
    """How a variant fared against its export gate."""
    if BY_NAME[name].gate == "fp32":
        limit = record.get("tolerance", cfg.get("fp32_tolerance"))
        ok = limit is None or record.get("max_abs_diff", 0) <= limit
        return f"max abs diff {record.get('max_abs_diff', 0):.2e} " + (f"≤ {limit:g}: passed" if ok else f"> {limit:g}")
    limit = cfg.get("min_int8_cosine")
    ok = limit is None or record.get("mean_cosine", 0) >= limit
    return (f"mean cosine {record.get('mean_cosine', 0):.5f} " + (f"≥ {limit:g}: passed" if ok
            else f"< {limit:g}: kept because of --force"))


def _export_lines(prov: dict[str, Any], siblings: dict[str, Any], classifier: bool) -> list[str]:
    name, record, cfg = prov["variant"], prov.get("parity", {}), prov.get("export_config", {})
    runtime, precision = _variant_words(name, record)
    lines = [f"- Variant `{name}`: {runtime}, {precision}"
             + (f", {record['method']} quantization" if record.get("method") else "")
             + (", from the graph fused for the CPU" if record.get("fused") else "")
             + (", INT8 embedding tables" if record.get("quantized_embeddings") else "")
             + (f", made from `{prov.get('source_model')}`" if prov.get("source_model") else "") + "."]
    if record.get("qat_steps") is not None:
        loss = record.get("qat_final_loss")
        lines.append(f"- Quantization-aware training: {record['qat_steps']} steps of the relation loss against the "
                     f"{record.get('qat_reference', 'student')} model" + (f", final loss {loss:.3g}" if isinstance(loss, float) else "") + ".")
    lines.append(f"- Gate: {_gate(name, record, cfg)}.")
    rows = [(name, record)] + list(siblings.items())
    lines += ["", "Parity with the PyTorch model on real text and random ids ("
              + ("logits" if classifier else "mean-pooled embeddings") + "):", "",
              "| variant | max abs diff | mean cosine | worst cosine | "
              + ("same prediction" if classifier else "nearest-neighbour agreement") + " | size MB |",
              "|---|---|---|---|---|---|"]
    for variant, rec in rows:
        label = variant + (f" (this IR compiled to {rec.get('inference_precision')})" if variant != name else "")
        lines.append(f"| {label} | {rec.get('max_abs_diff', 0):.2e} | {rec.get('mean_cosine', 0):.5f} | "
                     f"{rec.get('min_cosine', 0):.5f} | {100 * rec.get('nn_agreement', 0):.1f}% | "
                     f"{rec.get('size_bytes', 0) / 1e6:.2f} |")
    return lines + [""]


def _files_section(facts: dict[str, Any]) -> list[str]:
    files = facts["provenance"].get("files") or {}
    if facts["kind"] != "deploy" or not files:
        return []
    parity = facts["provenance"].get("parity", {})
    lines = ["## Files", "", "| variant | file | mean cosine to PyTorch |", "|---|---|---|",
             "| PyTorch | `model.safetensors` | 1 |"]
    lines += [f"| {variant} | `{path}` | {parity.get(variant, {}).get('mean_cosine', float('nan')):.5f} |"
              for variant, path in files.items() if path in facts["files"]]
    return lines + [""]


def _code(language: str, lines: list[str]) -> list[str]:
    return [f"```{language}", *lines, "```", ""]


def _fp32_ir(facts: dict[str, Any], file: str) -> bool:
    """Whether an OpenVINO IR holds FP32 weights (OpenVINO would otherwise compile it to bf16 where it can)."""
    return "int8" not in file and "int8" not in facts["provenance"].get("variant", "")


def _usage(facts: dict[str, Any]) -> list[str]:
    """Loading lines for each backend, naming only files that are in the folder."""
    path, files, st = facts["folder"], facts["files"], facts["sentence_transformers"]
    auto = "AutoModelForSequenceClassification" if facts["classifier"] else "AutoModel"
    task = "SequenceClassification" if facts["classifier"] else "FeatureExtraction"
    out = ["## Usage", ""]
    onnx = sorted(f for f in files if f.endswith(".onnx"))
    xml = sorted(f for f in files if f.endswith(".xml") and "openvino" in f)
    if st:
        lines = ["from sentence_transformers import SentenceTransformer", ""]
        if "model.safetensors" in files:
            lines.append(f'model = SentenceTransformer("{path}")')
        for f in onnx:
            lines.append(f'model = SentenceTransformer("{path}", backend="onnx", model_kwargs={{"file_name": "{f}"}})')
        for f in xml:
            hint = ', "ov_config": {"INFERENCE_PRECISION_HINT": "f32"}' if _fp32_ir(facts, f) else ""
            lines.append(f'model = SentenceTransformer("{path}", backend="openvino", model_kwargs={{"file_name": "{f}"{hint}}})')
        lines.append(f'embeddings = model.encode(["{EXAMPLE}"])')
        out += ["sentence-transformers (the ONNX backend needs optimum, the OpenVINO one optimum-intel; OpenVINO "
                "compiles FP32 files to bf16 on CPUs that have it unless asked for f32):", "", *_code("python", lines)]
    if "model.safetensors" in files:
        out += ["transformers:", "", *_code("python", [
            f"from transformers import {auto}, AutoTokenizer", "",
            f'tokenizer = AutoTokenizer.from_pretrained("{path}")',
            f'model = {auto}.from_pretrained("{path}")',
            f'outputs = model(**tokenizer(["{EXAMPLE}"], return_tensors="pt"))'])]
    if onnx:
        lines = ["import onnxruntime as ort", "from transformers import AutoTokenizer", "",
                 "options = ort.SessionOptions()  # SkipLayerNorm fusion is slower on the CPU (see relation-compress' README)",
                 'options.add_session_config_entry("optimization.disable_specified_optimizers", "SkipLayerNormFusion")',
                 f'tokenizer = AutoTokenizer.from_pretrained("{path}")']
        lines += [f'session = ort.InferenceSession("{path}/{f}", options, providers=["CPUExecutionProvider"])' for f in onnx]
        lines += [f'inputs = tokenizer(["{EXAMPLE}"], return_tensors="np")',
                  "outputs = session.run(None, {i.name: inputs[i.name] for i in session.get_inputs()})"]
        if "model.onnx" in files:
            lines += ["", f"from optimum.onnxruntime import ORTModelFor{task}  # optional",
                      f'model = ORTModelFor{task}.from_pretrained("{path}", session_options=options)']
        out += ["ONNX Runtime:", "", *_code("python", lines)]
    if xml:
        lines = ["import openvino as ov", "from transformers import AutoTokenizer", "", "core = ov.Core()",
                 f'tokenizer = AutoTokenizer.from_pretrained("{path}")']
        for f in xml:
            hint = ', {"INFERENCE_PRECISION_HINT": "f32"}' if _fp32_ir(facts, f) else ""
            lines.append(f'compiled = core.compile_model("{path}/{f}", "CPU"{hint})')
        lines += [f'inputs = tokenizer(["{EXAMPLE}"], return_tensors="np")',
                  "outputs = compiled({i.any_name: inputs[i.any_name] for i in compiled.inputs})"]
        out += ["OpenVINO (`\"bf16\"` as the precision hint gives the bf16 variant on CPUs with AVX-512 BF16 or AMX):",
                "", *_code("python", lines)]
    if facts["kind"] == "deploy" and "onnx/model.onnx" in files and not facts["classifier"]:
        out += ["text-embeddings-inference (its CPU image reads `config.json`, `tokenizer.json`, `1_Pooling/config.json` "
                "and, on its ONNX Runtime backend, `onnx/model.onnx`, the FP32 file):", "", *_code("bash", [
                    f'docker run -p 8080:80 -v "$(realpath {path})":/data/deploy {TEI_IMAGE} --model-id /data/deploy',
                    f"curl 127.0.0.1:8080/embed -X POST -H 'Content-Type: application/json' -d '{{\"inputs\": \"{EXAMPLE}\"}}'"])]
    return out


def _bench(facts: dict[str, Any]) -> list[str]:
    bench = facts["bench"]
    if not bench:
        return []
    lines = ["## Benchmark", ""]
    if bench["stale"]:
        return lines + [f"The run's last benchmark ({bench['created']}) predates this folder: run `compress bench "
                        f"{facts['run']}` to measure it.", ""]
    results = bench["results"]
    metrics: dict[str, str] = {}
    for s in results.get("scores", []):
        if s.get("language") is None:
            metrics.setdefault(s["task"], s["metric"])
    scores = {(s["variant"], s["task"]): s["value"] for s in results.get("scores", [])
              if s.get("language") is None and metrics.get(s["task"]) == s["metric"]}
    shapes: dict[str, tuple[int, int]] = {}
    for t in results.get("timings", []):
        b, n = shapes.get(t["provider"], (t["batch"], t["seq_len"]))
        shapes[t["provider"]] = (min(b, t["batch"]), max(n, t["seq_len"]))
    p50: dict[tuple[str, str], float] = {}
    for t in results.get("timings", []):
        if (t["batch"], t["seq_len"]) == shapes[t["provider"]]:
            p50.setdefault((t["variant"], t["provider"]), t["p50_ms"])
    header = ["variant", "runtime", "precision", "size MB",
              *(f"{p} p50 ms (b{b}×{n})" for p, (b, n) in shapes.items()), *(f"{k} ({m})" for k, m in metrics.items())]
    def mine(v: dict[str, Any]) -> bool:
        return (Path(v["path"]).resolve() == Path(bench["this"])
                or (facts["kind"] == "deploy" and v.get("model") == "student"))

    marked = [v for v in bench["variants"] if mine(v)]
    whose = ("**bold**: this folder's " + ("variants" if len(marked) > 1 else "model") if marked
             else "this folder's weights were not timed themselves (`compress bench --torch` times them in PyTorch)")
    lines += [f"From `compress bench` of {bench['created']} on {results.get('machine', {}).get('cpu', 'this machine')} "
              f"(full report: [results.md]({bench['link']}/results.md)); {whose}. Scores: each task's headline "
              "metric, higher is better.", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for v in bench["variants"]:
        name = f"**{v['name']}**" if mine(v) else v["name"]
        cells = [name, {"onnx": "ONNX Runtime", "openvino": "OpenVINO", "torch": "PyTorch"}.get(v["format"], v["format"]),
                 v["precision"], "–" if v.get("size_bytes") is None else f"{v['size_bytes'] / 1e6:.1f}"]
        cells += [f"{p50[(v['name'], p)]:.2f}" if (v["name"], p) in p50 else "–" for p in shapes]
        cells += [f"{scores[(v['name'], k)]:.4f}" if (v["name"], k) in scores else "–" for k in metrics]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    for plot in bench["plots"]:
        lines += [f"![{PLOT_TITLES[plot]}]({bench['link']}/{plot})", ""]
    return lines


def _versions(facts: dict[str, Any]) -> list[str]:
    versions = facts["provenance"].get("versions") or {}
    return ["## Versions", "", ", ".join(f"{k} {v}" for k, v in versions.items()) + ".", ""] if versions else []


# ------------------------------------------------------------------------------------------- writing


def write_model_card(folder: Path, final: Path | None = None) -> Path:
    """Render and atomically write ``folder/README.md`` (a folder relation-compress made; ``final``: where it will
    live once published, when ``folder`` is a staging copy). Returns the card's path."""
    folder = Path(folder)
    text = render_card(card_facts(folder, final))
    atomic_write_text(folder / CARD, text)
    return folder / CARD


def model_folders(run_dir: Path | RunDir) -> list[Path]:
    """Every folder of a run that carries a card: student/, each exported variant's folder, deploy/."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    folders = [run.student_dir]
    for model, root in run.exported_models():
        report = run.export_report(model)
        folders += [root / folder for folder in dict.fromkeys(r.folder for r in report.variants.values())]
    folders.append(run.path / "deploy")
    return [f for f in folders if (f / PROVENANCE_FILE).is_file()]


def refresh_model_cards(run_dir: Path | RunDir) -> list[Path]:
    """Rewrite the cards of every model folder of a run (call it after ``compress bench``: the cards then carry the
    new benchmark table). Returns the cards written."""
    return [write_model_card(folder) for folder in model_folders(run_dir)]
