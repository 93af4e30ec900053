"""The live loss chart of a running ES step: the core's own chart (gfti_core/chart.py) of the run so far, sent
as a PNG data URL in a `gfti.loss` websocket message at the start and after every generation; web/gfti.js
shows it in a DOM widget on the node the message names (an execution id, so nodes inside subgraphs too).
Whatever the core's chart plots shows here; the numbers travel along for API clients."""
from __future__ import annotations

import base64
import dataclasses
import io
import math

from ..gfti_core.chart import render_loss_chart
from ..gfti_core.engine import GenerationReport
from .host import send_event

EVENT = "gfti.loss"
SIZE = (400, 160)
PER_GENERATION = ("best", "mean")  # the history keys the chart plots that a report carries one value of  # the widget shows it at about this size; larger only costs bandwidth


def chart_data_url(history: dict[str, list[float]]) -> str:
    buffer = io.BytesIO()
    render_loss_chart(history, *SIZE).save(buffer, "PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class LiveChart:
    """The history of one step's run, extended by each generation's report and broadcast as a chart."""

    def __init__(self, node_id, run_id: str, history: dict[str, list[float]]):
        self.node_id, self.run_id = node_id, run_id
        self.history = {key: [*history.get(key, [])] for key in (*PER_GENERATION, "holdout")}

    def start(self) -> None:
        send_event(EVENT, {"node": self.node_id, "run": self.run_id, "history": finite(self._curves()),
                           "chart": chart_data_url(self.history)})

    def add(self, report: GenerationReport) -> None:
        """Extend the curves the chart draws: one value per generation, and the hold-out points so far."""
        fields = dataclasses.asdict(report)
        for key in PER_GENERATION:
            self.history.setdefault(key, []).append(fields[key])
        self.history["holdout"] = [list(point) for point in report.holdout_curve]
        send_event(EVENT, {"node": self.node_id, "run": self.run_id, **finite(fields),
                           "chart": chart_data_url(self.history)})

    def _curves(self) -> dict[str, list[float]]:
        return {key: self.history[key] for key in ("best", "mean") if key in self.history}


def finite(data):
    """NaN/inf → None: the browser's JSON.parse rejects the NaN that Python's json writes."""
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list):
        return [finite(v) for v in data]
    return None if isinstance(data, float) and not math.isfinite(data) else data
