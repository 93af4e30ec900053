"""Turn toy_bench results (one or more results.json) into a markdown table and curve plots.

    python benchmarks/toy_report.py benchmarks/results/toy*/results.json --out benchmarks/results

Runs of the same concept and seed are merged (toy_bench is deterministic per concept and seed: same images,
init and evaluation noise), so new rows can be measured beside rows of an earlier run without repeating them;
a row measured twice keeps the later file's numbers.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

CURVES = ("gfti", "gfti+context", "seed-faithful", "gradient-ti", "gradient-ti+context")
POINTS = ("init", "true-words")


def load(paths):
    merged: dict[tuple, dict] = {}
    for path in paths:
        for entry in json.loads(Path(path).read_text())["results"]:
            into = merged.setdefault((entry["concept"], entry["seed"]), {})
            for key, value in entry.items():
                # dicts (per-variant init / context) keep both runs' entries; anything else: the later run wins
                both = isinstance(value, dict) and isinstance(into.get(key), dict)
                into[key] = {**into[key], **value} if both else value
    return list(merged.values())


def curve_names(results) -> list[str]:
    """The fixed rows, then every configured GFTI variant ("gfti:field=value,...") present."""
    variants = sorted({k for r in results for k, v in r.items()
                       if k.startswith(("gfti:", "gradient-ti:")) and isinstance(v, list)})
    return [n for n in CURVES if any(n in r for r in results)] + variants


def final(entry):
    return entry[-1] if isinstance(entry, list) else entry


def table(results) -> str:
    rows = defaultdict(list)
    names = curve_names(results) + list(POINTS)
    for r in results:
        for name in names:
            if name in r:
                rows[name].append(final(r[name]))
        for name, point in r.get("variant_init", {}).items():  # e0 of a variant, before any search
            rows[f"init of {name}"].append(point)
    names += sorted(k for k in rows if k.startswith("init of "))
    lines = ["| method | fidelity | editability | colour right | shape right | green bg (edit prompt) | max vector norm "
             "| wall s (search) | runs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        if not rows[name]:
            continue
        vals = rows[name]
        mean = lambda k: sum(v.get(k, 0) for v in vals) / len(vals)  # noqa: E731
        norm = f"{mean('norm'):.2f}" if "norm" in vals[0] else "–"
        secs = f"{mean('seconds'):.0f}" if "seconds" in vals[0] else "–"
        green = f"{mean('green_background'):.2f}" if "green_background" in vals[0] else "–"
        lines.append(f"| {name} | {mean('fidelity'):.2f} | {mean('editability'):.2f} | {mean('colour'):.2f} | "
                     f"{mean('shape'):.2f} | {green} | {norm} | {secs} | {len(vals)} |")
    concepts = sorted({(r['concept'], r['seed']) for r in results})
    lines.append("")
    lines.append("Concepts × seeds: " + ", ".join(f"{c} (seed {s})" for c, s in concepts))
    return "\n".join(lines)


def per_concept(results) -> str:
    names = curve_names(results) + [n for n in POINTS if any(n in r for r in results)]
    lines = ["| concept | seed | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for r in results:
        cells = [f"{final(r[n])['fidelity']:.2f} / {final(r[n])['editability']:.2f}" if n in r else "–" for n in names]
        lines.append(f"| {r['concept']} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def context_accuracy(results) -> str:
    """How often auto context named an image's true background (the generator knows it)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from toyworld.concepts import concept_scenes
    from toyworld.scenes import article

    tally = defaultdict(lambda: [0, 0])
    for r in results:
        concept = tuple(reversed(r["concept"].split()))  # "purple star" -> ("star", "purple")
        truth = [f"on {article(s.background)} {s.background} background" for s in concept_scenes(concept, 6, r["seed"])]
        for name, chosen in (r.get("variant_context") or {}).items():
            if chosen:
                tally[name][0] += sum(c == t for c, t in zip(chosen, truth))
                tally[name][1] += len(truth)
    if not tally:
        return ""
    return "Auto context named the true background: " + "; ".join(
        f"{name}: {right}/{total}" for name, (right, total) in sorted(tally.items()))


def paired(results, first: str, second: str, key: str = "fidelity") -> str:
    """Per-run difference first − second over the runs that have both rows, with its standard error: the
    runs share images, start and evaluation noise, so the paired difference is the honest comparison."""
    diffs = [final(r[first])[key] - final(r[second])[key] for r in results if first in r and second in r]
    if len(diffs) < 2:
        return f"{first} − {second}: fewer than 2 runs with both rows"
    mean, se = statistics.mean(diffs), statistics.stdev(diffs) / len(diffs) ** 0.5
    return f"{key}, {first} − {second}: {mean:+.3f} ± {se:.3f} (standard error, {len(diffs)} runs)"


def plot(results, out: Path, only: list[str] | None = None) -> None:
    """Fidelity vs rows and vs wall time; `only` keeps those rows (a plot of 20 rows is unreadable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in curve_names(results):
        if only and name not in only:
            continue
        curves = [r[name] for r in results if name in r]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        for ax, key in zip(axes, ("rows", "seconds")):
            xs = [sum(c[i][key] for c in curves) / len(curves) for i in range(n)]
            ys = [sum(c[i]["fidelity"] for c in curves) / len(curves) for i in range(n)]
            ax.plot(xs, ys, marker="o", label=name)
    for name, style in (("init", ":"), ("true-words", "--")):  # where the search starts, and the model's ceiling
        points = [r[name]["fidelity"] for r in results if name in r]
        if points:
            for ax in axes:
                ax.axhline(sum(points) / len(points), color="gray", linestyle=style, label=f"{name} (no search)")
    for ax, label in zip(axes, ("UNet forward rows", "wall time of the search (s)")):
        ax.set_xlabel(label)
        ax.set_ylabel("fidelity")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Toy world: fidelity vs budget (mean over concepts and seeds)")
    fig.tight_layout()
    fig.savefig(out / "toy_fidelity_curves.png", dpi=90)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("results", nargs="+")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--plot", default="", help='rows to draw, ";"-separated (default: all)')
    p.add_argument("--paired", action="append", default=[], metavar="A;B",
                   help="also print the per-run difference A − B (fidelity and editability); repeatable")
    args = p.parse_args()
    pairs = [pair.split(";") for pair in args.paired]
    for pair, names in zip(args.paired, pairs):
        if len(names) != 2:
            p.error(f"--paired {pair!r}: give two row names separated by one ';', e.g. \"gfti;gradient-ti\"")
    results = load(args.results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(results, out, [n for n in args.plot.split(";") if n] or None)
    text = table(results) + "\n\nPer concept (fidelity / editability):\n\n" + per_concept(results)
    text += "\n\n" + context_accuracy(results)
    for first, second in pairs:
        text += "\n\n" + "\n".join(paired(results, first, second, key) for key in ("fidelity", "editability"))
    (out / "toy_table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
