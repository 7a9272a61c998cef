"""Run logging: a JSONL metrics log, TensorBoard scalars and image grids."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from gleam_mri.atomic import atomic_write


class RunLogger:
    """Writes ``metrics.jsonl`` (one record per logged step) and TensorBoard events.

    On resume from step ``start``, records of later steps (written after the last checkpoint by
    the interrupted run) are dropped, so the log matches the resumed run exactly.
    """

    def __init__(
        self,
        out_dir: str | Path,
        start: int = 0,
        tensorboard: bool = True,
        filename: str = "metrics.jsonl",
    ) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / filename
        self._truncate_after(start)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=start or None)

    def _truncate_after(self, start: int) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= start:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
        with atomic_write(self.path, "w") as f:
            f.write("".join(f"{line}\n" for line in kept))

    def _write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Log training scalars of ``step``."""
        clean = {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
        self._write({"step": step, **{f"train/{k}": v for k, v in clean.items()}})
        if self.writer is not None:
            for key, value in clean.items():
                if math.isfinite(value):
                    self.writer.add_scalar(f"train/{key}", value, step)

    def validation(self, step: int, metrics: dict[str, float], results: list) -> None:
        """Log validation metrics of ``step`` and an image grid of the first result (if any)."""
        self._write({"step": step, **metrics})
        if self.writer is None:
            return
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        if results:
            first = results[0]
            middle = first.target.shape[0] // 2
            target, recon = first.target[middle], first.recon[middle]
            peak = float(target.max()) or 1.0
            error = np.abs(recon - target) * 5
            grid = np.concatenate([target, recon, error], axis=1) / peak
            self.writer.add_image("val/target_recon_error", np.clip(grid, 0, 1)[None], step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
