"""Progress display for long loops: a rich bar on a terminal, plain log lines otherwise (CI, files)."""

from __future__ import annotations

import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class StepProgress:
    """``with StepProgress(total, start) as p: p.update(step, "loss 1.23")``; silent when ``enabled`` is False."""

    def __init__(self, total: int, start: int = 0, description: str = "train", enabled: bool = True, every: int = 10):
        self.total, self.start, self.description, self.every = total, start, description, every
        self.enabled = enabled
        self.interactive = enabled and sys.stderr.isatty()
        self._bar: Progress | None = None
        self._task = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> "StepProgress":
        if self.interactive:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, completed=self.start, status="")
        return self

    def update(self, step: int, status: str) -> None:
        """Report that ``step`` (1-based count of finished steps) is done."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=step, status=status)
        elif step % self.every == 0 or step == self.total:
            done = step - self.start
            elapsed = time.perf_counter() - self._t0
            eta = elapsed / done * (self.total - step) if done else float("nan")
            print(f"{self.description} {step}/{self.total} {status} eta {eta:.0f}s", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
