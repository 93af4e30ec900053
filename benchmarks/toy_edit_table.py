"""Editability table of BENCHMARKS.md: the measures run (v3_edit_c*) joined with the main run (v3_main_c*) on the
concepts both cover, so every row is averaged over the same concepts.

    python benchmarks/toy_edit_table.py
"""
import json, glob
main, edit = [], []
for p in sorted(glob.glob("benchmarks/results/v3_main_c*/results.json")): main += json.load(open(p))["results"]
for p in sorted(glob.glob("benchmarks/results/v3_edit_c*/results.json")): edit += json.load(open(p))["results"]
concepts = [r["concept"] for r in edit]
rows = {}
def add(name, point): rows.setdefault(name, []).append(point)
for r in main:
    if r["concept"] not in concepts: continue
    for k in ("gfti", "gradient-ti", "gfti:auto_context=1,masks=1 [before init re-scoring]"):
        add(k, r[k][-1])
    add("init (e0 of gfti)", r["init"]); add("true words", r["true-words"])
for r in edit:
    for k, v in r.items():
        if k.startswith(("gfti:", "gradient-ti:")): add(k, v[-1])
    for k, v in r["variant_init"].items():
        if k == "gfti:auto_context=1": add("init (e0 after context re-scoring)", v)
print("| method | fidelity | editability | green background in the edit prompt's images | max vector norm | wall s |")
print("|---|---|---|---|---|---|")
for k, vals in rows.items():
    m = lambda key: sum(v.get(key, 0) for v in vals) / len(vals)
    g = f"{m('green_background'):.2f}" if all("green_background" in v for v in vals) else "–"
    n = f"{m('norm'):.2f}" if "norm" in vals[0] else "–"
    t = f"{m('seconds'):.0f}" if "seconds" in vals[0] else "–"
    print(f"| {k} | {m('fidelity'):.2f} | {m('editability'):.2f} | {g} | {n} | {t} |")
print()
print("Concepts: " + ", ".join(concepts) + " (seed 0)")
