"""Would choosing along the search path by held-out loss pick better vectors? A diagnostic over recorded runs.

Every GFTI run of toy_bench records curve points (rows, held-out loss of the chosen final vector, fidelity) at
a quarter, half and all of its budget. For every recorded 4096-row run under `benchmarks/results/` it compares
the fidelity of the last point with that of the point whose held-out loss is lowest (and with the best point,
an oracle that sees fidelity).

    python benchmarks/curve_choice.py
"""
from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean

RESULTS = Path(__file__).resolve().parent / "results"


def recorded_curves(budget: int = 4096) -> dict[tuple, list[dict]]:
    curves = {}
    for path in sorted(RESULTS.glob("**/results.json")):
        data = json.loads(path.read_text())
        runs = data["results"] if isinstance(data, dict) and "results" in data else data
        for run in runs if isinstance(runs, list) else [runs]:
            for method, points in run.items():
                if not (method.startswith("gfti") and isinstance(points, list) and points
                        and isinstance(points[0], dict) and "holdout_loss" in points[0]):
                    continue
                points = [p for p in points if p["rows"] <= budget]
                if any(p["rows"] == budget for p in points):
                    curves[(str(path.parent), run["concept"], run["seed"], method)] = points
    return curves


def main() -> None:
    curves = recorded_curves()
    last = [next(p for p in c if p["rows"] == 4096)["fidelity"] for c in curves.values()]
    by_loss = [min(c, key=lambda p: p["holdout_loss"])["fidelity"] for c in curves.values()]
    oracle = [max(p["fidelity"] for p in c) for c in curves.values()]
    print(f"{len(curves)} runs: last point {fmean(last):.3f}, lowest held-out loss {fmean(by_loss):.3f}, "
          f"best point (oracle) {fmean(oracle):.3f}")


if __name__ == "__main__":
    main()
