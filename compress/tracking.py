"""Experiment tracking for the training loop (``train.report_to``): TensorBoard, MLflow, Weights & Biases, Trackio.

Each tracker gets, once at the start of a stage, its parameters (the resolved config and the provenance, flattened
to dotted keys) and then, at every logging step, the very line that ``metrics.jsonl`` gets (loss and its parts,
lr, grad_norm, tokens_per_s) at its step. Everything stays inside the run folder and offline::

    RUN/tracking/tensorboard/<stage>/   event files            tensorboard --logdir RUN/tracking/tensorboard
    RUN/tracking/mlflow/mlflow.db       MLflow's SQLite store  mlflow ui --backend-store-uri sqlite:///RUN/tracking/mlflow/mlflow.db
    RUN/tracking/mlflow/artifacts/      (its artifact root);   <stage>.run_id names the MLflow run of each stage
    RUN/tracking/wandb/wandb/           offline W&B runs       wandb sync RUN/tracking/wandb/wandb/offline-run-*
    RUN/tracking/trackio/               Trackio's local store  TRACKIO_DIR=RUN/tracking/trackio trackio show

Stages: ``distill``, ``qat``, ``qat-openvino``, ``finetune-<name>``; the project (MLflow experiment, W&B and Trackio
project) is the run folder's name. Variables the user has set win over these defaults: ``MLFLOW_TRACKING_URI`` (a
server or another store) and ``MLFLOW_EXPERIMENT_NAME``; ``WANDB_MODE`` (e.g. ``online``), ``WANDB_PROJECT`` and
``WANDB_DIR``; ``TRACKIO_DIR`` and ``TRACKIO_PROJECT``. Only the main rank logs (the training loop sees to it).
A resumed stage continues its tracker run: TensorBoard hides the points after the checkpoint's step (``purge_step``),
MLflow continues the same run and skips the steps it already holds; W&B and Trackio continue the run of the same
id/name. Each library is imported only when chosen.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from compress.errors import UserError, first_line

log = logging.getLogger(__name__)
TRACKING = "tracking"
# name → (modules it needs, what to call it, pip extra)
BACKENDS = {
    "tensorboard": (("tensorboard",), "TensorBoard", "tensorboard"),
    "mlflow": (("mlflow", "sqlalchemy", "alembic"), "MLflow", "mlflow"),
    "wandb": (("wandb",), "Weights & Biases", "wandb"),
    "trackio": (("trackio",), "Trackio", "trackio"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that fails to import, or a module without a spec
        return False


def require_trackers(names: list[str], key: str = "train.report_to") -> None:
    """One line naming the pip extra for the first chosen tracker that is not installed (checked before training)."""
    for name in names:
        modules, label, extra = BACKENDS[name]
        if not all(_installed(m) for m in modules):
            raise UserError(f"{key}={name} needs {label}: pip install 'relation-compress[{extra}]'")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts (and lists of dicts) → ``{"train.lr": 6e-4, "inputs.corpora.0.path": ...}``; other lists as JSON."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list) and tree and all(isinstance(x, dict) for x in tree):
        items = enumerate(tree)
    else:
        return {prefix[:-1]: tree if tree is None or isinstance(tree, (str, int, float, bool)) else json.dumps(tree)}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}{key}."))
    return out


def run_root(folder: Path) -> Path:
    """The run folder that holds ``folder`` (the nearest parent with a manifest.json), or ``folder`` itself."""
    folder = Path(folder).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / "manifest.json").is_file():
            return candidate
    return folder


class Tracker:
    """One backend: opened at the stage's first (or resumed) step; ``log_params`` once, ``log_metrics`` at every
    logging step, ``close`` at the end (status: finished, interrupted or failed)."""

    def log_params(self, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        raise NotImplementedError

    def close(self, status: str = "finished") -> None:
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    """``torch.utils.tensorboard.SummaryWriter`` into ``RUN/tracking/tensorboard/<stage>``: a scalar per metric,
    the parameters as hparams and as a JSON text. A fresh stage starts an empty folder; a resumed one purges
    the points after its checkpoint."""

    def __init__(self, root: Path, stage: str, project: str, start_step: int, resumed: bool):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = root / "tensorboard" / stage
        if not resumed:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.step = start_step
        self.writer = SummaryWriter(str(self.folder), purge_step=start_step + 1 if resumed else None)

    def log_params(self, params: dict[str, Any]) -> None:
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()}
        self.writer.add_text("params", "```\n" + json.dumps(clean, indent=1) + "\n```", global_step=self.step)
        self.writer.add_hparams(clean, {}, run_name=".", global_step=self.step)  # "." keeps them in this folder

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def close(self, status: str = "finished") -> None:
        self.writer.close()


class MLflowTracker(Tracker):
    """``MlflowClient`` on a SQLite store ``RUN/tracking/mlflow/mlflow.db`` (or ``MLFLOW_TRACKING_URI``); one MLflow
    run per stage, named after it, continued on resume (its id is kept in ``<stage>.run_id``)."""

    def __init__(self, root: Path, stage: str, project: str, start_step: int, resumed: bool):
        from mlflow import MlflowClient

        folder = root / "mlflow"
        folder.mkdir(parents=True, exist_ok=True)
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{folder / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or project
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (experiment.experiment_id if experiment else
                         self.client.create_experiment(name, artifact_location=(folder / "artifacts").as_uri()))
        id_file = folder / f"{stage}.run_id"
        self.run_id, self.last_step = None, -1
        if resumed and id_file.is_file():
            self.run_id = id_file.read_text(encoding="utf-8").strip()
            try:
                run = self.client.get_run(self.run_id)
            except Exception:  # another store, or a deleted run: start a new one
                self.run_id = None
            else:
                self.logged_params = dict(run.data.params)
                history = [m.step for key in run.data.metrics for m in self.client.get_metric_history(self.run_id, key)]
                self.last_step = max(history, default=-1)
                self.client.update_run(self.run_id, status="RUNNING")
        if self.run_id is None:
            self.logged_params = {}
            self.run_id = self.client.create_run(experiment_id, run_name=stage,
                                                 tags={"relation_compress.stage": stage}).info.run_id
            id_file.write_text(self.run_id + "\n", encoding="utf-8")

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        # A resumed run keeps its first values (MLflow refuses to change a param); new keys are added.
        new = [Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items() if k not in self.logged_params]
        for i in range(0, len(new), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=new[i : i + MAX_PARAMS_TAGS_PER_BATCH], synchronous=True)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        if step <= self.last_step:  # already logged before an interruption (a resume repeats it exactly)
            return
        now_ms = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now_ms, step) for k, v in metrics.items()],
                              synchronous=True)

    def close(self, status: str = "finished") -> None:
        mlflow_status = {"finished": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
        self.client.set_terminated(self.run_id, status=mlflow_status)


class WandbTracker(Tracker):
    """``wandb.init(mode="offline", dir=RUN/tracking/wandb)`` (``WANDB_MODE`` wins); one run per stage whose id,
    kept in ``<stage>.id``, a resume continues."""

    def __init__(self, root: Path, stage: str, project: str, start_step: int, resumed: bool):
        import wandb

        folder = root / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        id_file = folder / f"{stage}.id"
        run_id = id_file.read_text(encoding="utf-8").strip() if resumed and id_file.is_file() else None
        if run_id is None:
            run_id = wandb.util.generate_id()
            id_file.write_text(run_id + "\n", encoding="utf-8")
        settings = {"mode": "offline"} if not os.environ.get("WANDB_MODE") else {}
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or project, name=stage, group=project,
                              dir=os.environ.get("WANDB_DIR") or str(folder), id=run_id,
                              resume="allow" if resumed else None, **settings)

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def close(self, status: str = "finished") -> None:
        self.run.finish(exit_code=0 if status == "finished" else 1)


class TrackioTracker(Tracker):
    """``trackio.init`` with its local store in ``RUN/tracking/trackio`` (``TRACKIO_DIR`` wins; it is read when
    trackio is first imported); one run per stage, continued on resume."""

    def __init__(self, root: Path, stage: str, project: str, start_step: int, resumed: bool):
        folder = root / "trackio"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("TRACKIO_DIR", str(folder))
        import trackio

        self.trackio = trackio
        self.run = trackio.init(project=os.environ.get("TRACKIO_PROJECT") or project, name=stage,
                                resume="allow" if resumed else "never", embed=False)

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.trackio.log(dict(metrics), step=step)

    def close(self, status: str = "finished") -> None:
        self.trackio.finish()


CLASSES = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker, "trackio": TrackioTracker}


class Trackers:
    """The trackers a stage chose, as one: ``start`` opens them all and logs the parameters once (the training loop
    calls it on the main rank, with the step it starts from), then ``log_metrics`` and ``close`` go to each."""

    def __init__(self, names: list[str], run_path: Path, stage: str, params: dict[str, Any], key: str):
        run_path = Path(run_path).resolve()  # stores (MLflow's URIs) need absolute paths
        self.names, self.root, self.stage, self.params, self.key = names, run_path / TRACKING, stage, params, key
        self.project = run_path.name
        self.opened: list[Tracker] = []

    def start(self, step: int, resumed: bool) -> None:
        for name in self.names:
            try:
                tracker = CLASSES[name](self.root, self.stage, self.project, step, resumed)
                tracker.log_params(self.params)
            except Exception as err:
                self.close("failed")
                raise UserError(f"{self.key}={name}: cannot open its store under {self.root} "
                                f"({first_line(err)})") from None
            self.opened.append(tracker)
        if self.opened:
            log.info("tracking %s with %s under %s", self.stage, ", ".join(self.names), self.root)

    def log_metrics(self, step: int, metrics: dict[str, Any]) -> None:
        values = {k: float(v) for k, v in metrics.items() if k != "step" and isinstance(v, (int, float))
                  and math.isfinite(v)}
        for tracker in self.opened:
            tracker.log_metrics(step, values)

    def close(self, status: str = "finished") -> None:
        opened, self.opened = self.opened, []
        for tracker in opened:
            try:
                tracker.close(status)
            except Exception as err:  # closing must not hide the error that ended training
                log.warning("could not close a tracker cleanly (%s)", first_line(err))


def open_trackers(names: list[str], run_path: Path, stage: str, *, params: dict[str, Any],
                  key: str = "train.report_to") -> Trackers | None:
    """The trackers ``names`` for ``stage`` of the run in ``run_path`` (None for none); checks that each is installed
    (one line naming the pip extra otherwise). ``params`` (nested) are flattened and logged once at ``start``."""
    if not names:
        return None
    require_trackers(names, key)
    return Trackers(list(names), Path(run_path), re.sub(r"[^\w.-]+", "-", stage), flatten(params), key)
