"""Progress of a run's start (init scoring, auto context), for a host's progress bar.

The start scores words and phrases with the denoiser before the first generation; on a large model that is
minutes of work, so it reports rows done out of rows planned and honours the host's cancel like a generation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class StartProgress:
    stage: str        # what the start is doing now, in words ("scoring init words", "auto context", "done")
    done_rows: int    # denoiser rows evaluated so far by the start
    total_rows: int   # rows the start plans to evaluate (≥ done_rows; equal when the start has finished)


class StartTracker:
    """Turns the evaluator's row counts into monotone `StartProgress` reports.

    The plan is an estimate made before the work (how many words and phrases are scored); if the work runs
    past it the total grows with it, so `done_rows` never exceeds `total_rows` and the last report has both
    equal."""

    def __init__(self, planned_rows: int, on_progress: Callable[[StartProgress], None] | None):
        self.total = max(0, int(planned_rows))
        self.done = 0
        self.stage_name = "starting"
        self.on_progress = on_progress

    def stage(self, name: str, extra_rows: int = 0) -> None:
        """Enter a stage; `extra_rows` adds rows to the plan that were not known when it was made."""
        self.stage_name = name
        self.total += max(0, int(extra_rows))
        self._report()

    def rows(self, count: int) -> None:
        self.done += int(count)
        self._report()

    def finish(self) -> None:
        self.stage_name = "done"
        self.total = self.done
        self._report()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.total = max(self.total, self.done)
            self.on_progress(StartProgress(self.stage_name, self.done, self.total))
