"""Stages of `nbp demo`: each runs once, records its result in a done-marker, and is reused after.

A stage is a function that writes its files under `out/<name>/` and returns a small
JSON-able dict (its numbers and output paths). The runner writes
`out/<name>/done.json` (result + seconds) atomically and only after the function
returned, so:

- a rerun with the same `--out` finds the marker and reuses the stage instead of redoing it;
- an interrupted stage (Ctrl-C, crash) has no marker; the next run clears its
  half-written folder and runs it again, while every finished stage stays intact.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nbp.errors import UserError
from nbp.files import write_json_atomic

DONE_NAME = "done.json"


def log(message: str) -> None:
    """Demo progress lines go to stderr, next to the progress bars (stdout stays for the summary)."""
    print(f"[demo] {message}", file=sys.stderr, flush=True)


@dataclass
class StageRecord:
    name: str
    seconds: float
    result: dict
    reused: bool


@dataclass
class StageRunner:
    out: Path
    records: dict[str, StageRecord] = field(default_factory=dict)

    def folder(self, name: str) -> Path:
        return self.out / name

    def marker(self, name: str) -> Path:
        return self.folder(name) / DONE_NAME

    def run(self, name: str, fn: Callable[[Path], dict]) -> dict:
        """Run `fn(stage_folder)` unless a previous run finished this stage; return its result."""
        marker = self.marker(name)
        if marker.is_file():
            record = self._load(name, marker)
            if record is not None:
                log(f"stage '{name}': reusing the finished result in {self.folder(name)} "
                    f"(took {record.seconds:.1f} s; delete that folder to redo it)")
                self.records[name] = record
                return record.result
        folder = self.folder(name)
        if folder.exists():
            # No marker: a run was interrupted here. Everything inside is ours and half-done.
            log(f"stage '{name}': clearing the unfinished attempt in {folder}")
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        log(f"stage '{name}': running")
        started = time.perf_counter()
        result = fn(folder)
        seconds = time.perf_counter() - started
        # The marker is the last thing written: its presence means every file of the stage is complete.
        write_json_atomic(marker, {"stage": name, "seconds": seconds, "result": result})
        log(f"stage '{name}': done in {seconds:.1f} s")
        self.records[name] = StageRecord(name, seconds, result, reused=False)
        return result

    def _load(self, name: str, marker: Path) -> StageRecord | None:
        try:
            data = json.loads(marker.read_text())
            return StageRecord(name, float(data["seconds"]), dict(data["result"]), reused=True)
        except (OSError, ValueError, KeyError, TypeError):
            log(f"stage '{name}': its marker {marker} is unreadable; running the stage again")
            return None


@dataclass
class Budget:
    """Seconds per stage for a demo of `minutes` minutes; shares are fractions of the whole.

    Only training is bounded by time (Trainer max_time); the other stages are bounded
    by the amount of work, which is scaled with `minutes` (dataset size, samples).
    """

    minutes: float
    # The untimed work (writing and encoding videos, evaluation, start-up) takes about a tenth; the frame
    # model gets a third because with less it does not learn which way objects move
    # (docs/experiments/2026-12-07-demo.md, "Why a third of the time for the frame model").
    tokenizer_share: float = 0.24
    model_share: float = 0.15  # each of the class-conditional pair (NBP and its NTP twin: the same time)
    frames_share: float = 0.33  # the frame-prediction transformer

    def __post_init__(self):
        if not self.minutes > 0:
            raise UserError(f"--minutes={self.minutes} is invalid; give a positive number (15 is the full demo)")

    @property
    def total_seconds(self) -> float:
        return 60.0 * self.minutes

    @property
    def tokenizer_seconds(self) -> float:
        return self.tokenizer_share * self.total_seconds

    @property
    def model_seconds(self) -> float:
        return self.model_share * self.total_seconds

    @property
    def frames_seconds(self) -> float:
        return self.frames_share * self.total_seconds

    def transformer_seconds(self, lanes: int) -> dict[str, float]:
        """Training seconds of the nbp, ntp and frames transformers when `lanes` of them train at once.

        The stage lasts as long in every case: the three shares' sum. One lane: one model after
        the other, each with its share. Two: the class pair one after the other in one lane (the
        same time each, so they compare fairly), the frame model in the other, all stage long.
        Three or more: all three, all stage long.
        """
        if lanes < 2:
            return {"nbp": self.model_seconds, "ntp": self.model_seconds, "frames": self.frames_seconds}
        stage = 2 * self.model_seconds + self.frames_seconds
        pair = stage / 2 if lanes == 2 else stage
        return {"nbp": pair, "ntp": pair, "frames": stage}
