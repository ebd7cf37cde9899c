"""Where a run reports: the ``cdsvae.train`` logger (console and DIR/train.log), the one-line
DIR/progress file, TensorBoard scalars, the progress bar, and the history of what was logged.

Only rank 0 writes files; other ranks print errors only.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Mapping

from tqdm import tqdm

from cdsvae.io import atomic_write_text

log = logging.getLogger("cdsvae.train")

# DIR/progress: one line (epoch, step, loss, ETA) rewritten at every log step, read by the recipes.
PROGRESS_FILE = "progress"


def format_duration(seconds: float) -> str:
    """12s, 4m05s, 3h07m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _TqdmHandler(logging.StreamHandler):
    """Log lines that do not tear the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(outdir: Path | None, is_main: bool) -> None:
    """Rank 0 logs INFO to stderr and DIR/train.log; other ranks print errors only."""
    for h in [h for h in log.handlers if getattr(h, "_cdsvae", False)]:
        log.removeHandler(h)
        h.close()
    log.setLevel(logging.INFO)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = _TqdmHandler()
    console.setLevel(logging.INFO if is_main else logging.ERROR)
    console.addFilter(lambda record: getattr(record, "console", True))
    console.setFormatter(fmt)
    console._cdsvae = True  # type: ignore[attr-defined]
    log.addHandler(console)
    if is_main and outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(outdir / "train.log", encoding="utf-8")
        fh.setFormatter(fmt)
        fh._cdsvae = True  # type: ignore[attr-defined]
        log.addHandler(fh)


class Monitor:
    """The reports of one run of ``total_steps`` steps over ``epochs`` epochs, written to ``outdir``."""

    def __init__(self, outdir: Path, is_main: bool, tensorboard: bool, epochs: int, total_steps: int):
        self.outdir, self.is_main, self.tensorboard = Path(outdir), is_main, tensorboard
        self.epochs, self.total_steps = epochs, total_steps
        self.writer = None
        self.history: list[dict[str, float]] = []  # what was logged, for benchmarks and tests
        self._start, self._step0 = time.perf_counter(), 0

    def start(self, step: int, resumed: bool) -> None:
        """Open TensorBoard (rank 0, when asked for) and start the clock of the ETA."""
        if self.is_main and self.tensorboard:
            # Imported only when used: it pulls in tensorboard and protobuf, seconds of start-up.
            from torch.utils.tensorboard import SummaryWriter
            # purge_step drops events a killed run logged after its last checkpoint.
            self.writer = SummaryWriter(str(self.outdir / "tensorboard"), purge_step=step if resumed else None)
        self._start, self._step0 = time.perf_counter(), step

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def bar(self, initial: int, steps: int, epoch: int) -> tqdm:
        """The progress bar of an epoch of ``steps`` steps (rank 0 on a terminal only)."""
        return tqdm(total=steps, initial=initial, desc=f"epoch {epoch + 1}",
                    disable=not (self.is_main and sys.stderr.isatty()), leave=False, dynamic_ncols=True)

    def train_step(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        """Report the training means of a logging interval: TensorBoard, history, log, progress."""
        self.scalars("train", values, step)
        self.history.append({"step": step, **values})
        log.info("epoch %d step %d: %s", epoch + 1, step, " ".join(f"{k} {v:.4g}" for k, v in values.items()))
        self.write_progress(self.progress_line(epoch, step, values["loss"]))

    def finished(self, epoch: int, step: int, earlier: bool = False) -> None:
        self.write_progress(f"finished{' earlier' if earlier else ''}: step {step}/{self.total_steps}, "
                            f"{epoch}/{self.epochs} epochs complete")

    def write_progress(self, line: str) -> None:
        """Rank 0 keeps DIR/progress at one line, for whoever shows progress on a console."""
        if not self.is_main:
            return
        try:
            atomic_write_text(self.outdir / PROGRESS_FILE, line + "\n")
        except OSError as e:  # progress is a courtesy: never stop training for it
            log.warning("cannot write %s: %s", self.outdir / PROGRESS_FILE, e)

    def progress_line(self, epoch: int, step: int, loss: float) -> str:
        done = step - self._step0
        elapsed = time.perf_counter() - self._start
        eta = "?"
        if done > 0:
            eta = format_duration((self.total_steps - step) * elapsed / done)
        return f"epoch {epoch + 1}/{self.epochs}, step {step}/{self.total_steps}, loss {loss:.4g}, ETA {eta}"
