"""The toy benchmark's bookkeeping: variant names parse into typed overrides, and runs of the same concept and
seed merge into one row set (so the table never counts a concept twice)."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def _point(fidelity):
    return {"rows": 4096, "seconds": 1.0, "norm": 1.0, "fidelity": fidelity, "editability": fidelity,
            "colour": 1.0, "shape": fidelity, "green_background": 1.0}


def test_runs_of_one_concept_and_seed_merge(tmp_path):
    report = _module("toy_report")
    old = {"concept": "blue circle", "seed": 0, "init": _point(0.0), "gradient-ti": [_point(1.0)],
           "gfti:auto_context=1": [_point(0.0)], "variant_init": {"gfti:auto_context=1": _point(0.0)}}
    new = {"concept": "blue circle", "seed": 0, "init": _point(0.0), "gfti:auto_context=1": [_point(0.5)],
           "gfti:subspace_scale=8": [_point(0.75)], "variant_init": {"gfti:subspace_scale=8": _point(0.0)}}
    other_seed = {**new, "seed": 1}
    for name, entries in (("a", [old]), ("b", [new, other_seed])):
        (tmp_path / f"{name}.json").write_text(json.dumps({"results": entries}))
    results = report.load([tmp_path / "a.json", tmp_path / "b.json"])
    assert len(results) == 2
    merged = next(r for r in results if r["seed"] == 0)
    assert merged["gradient-ti"][-1]["fidelity"] == 1.0          # kept from the earlier run
    assert merged["gfti:auto_context=1"][-1]["fidelity"] == 0.5  # re-measured row: the later file wins
    assert set(merged["variant_init"]) == {"gfti:auto_context=1", "gfti:subspace_scale=8"}
    assert "| gfti:subspace_scale=8 | 0.75 |" in report.table(results)


def test_paired_difference_uses_only_runs_with_both_rows():
    report = _module("toy_report")
    runs = [{"concept": "c", "seed": s, "a": [_point(fa)], "b": [_point(fb)]}
            for s, (fa, fb) in enumerate([(1.0, 0.5), (0.5, 0.5), (0.75, 0.25)])]
    runs.append({"concept": "c", "seed": 9, "a": [_point(0.0)]})  # no "b": not a pair
    line = report.paired(runs, "a", "b")
    assert "+0.333 ± 0.167" in line and "3 runs" in line      # diffs 0.5, 0, 0.5: sd 0.289, se 0.167
    assert "fewer than 2" in report.paired(runs[:1], "a", "b")


def test_results_are_rewritten_in_place_without_leftovers(tmp_path):
    pytest.importorskip("diffusers")
    bench = _module("toy_bench")
    path = tmp_path / "run" / "results.json"
    bench.write_json(path, {"results": [1]})
    bench.write_json(path, {"results": [1, 2]})  # rewritten after every run: replaced, not refused
    assert json.loads(path.read_text()) == {"results": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp file left beside it


def test_variant_names_parse_into_typed_overrides():
    pytest.importorskip("diffusers")
    bench = _module("toy_bench")
    overrides, options = bench.parse_variant("gfti:subspace_scale=8,auto_context=0,masks=1,budget=12288")
    assert overrides == {"subspace_scale": 8.0, "auto_context": False}
    assert options == {"masks": True, "budget": 12288, "space": "full", "captions": "own"}
    _, options = bench.parse_variant("gradient-ti:space=gfti,captions=plain")
    assert (options["space"], options["captions"]) == ("gfti", "plain")
    with pytest.raises(ValueError, match="space='gfit'"):
        bench.parse_variant("gradient-ti:space=gfit")
    with pytest.raises(AttributeError):
        bench.parse_variant("gfti:no_such_field=1")


def test_gradient_ti_moves_only_the_placeholder_vector(tiny_sd1):
    """The comparison row trains what it claims: the embedding changes, every model weight stays put."""
    import torch

    from gfti_core.backends.diffusers_backend import DiffusersBackend
    from gfti_core.objective import TrainingSet
    from gfti_core.tiny import tiny_images

    backend = DiffusersBackend(tiny_sd1)
    data = TrainingSet(backend.encode_images(tiny_images(2)), [["a photo of <*>"]] * 2)
    width = backend.encoders[0].width
    init = torch.randn(1, width) * 0.3
    models = (tiny_sd1.unet, tiny_sd1.text_encoder)
    before = [{n: p.detach().clone() for n, p in m.named_parameters()} for m in models]
    learned = _module("gradient_ti").gradient_ti(backend, data, init, steps=2, batch=2, lr=1e-2)
    assert learned.shape == init.shape and torch.isfinite(learned).all()
    assert (learned - init).abs().max() > 1e-4
    for model, weights in zip(models, before):
        assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())


def test_gradient_ti_in_a_subspace_moves_only_inside_it(tiny_sd1):
    """space=gfti measures gradient TI on GFTI's terms: the learned vector is the start plus a combination of
    the basis rows, and nothing outside their span (checked against the orthogonal complement)."""
    import torch

    from gfti_core.backends.diffusers_backend import DiffusersBackend
    from gfti_core.objective import TrainingSet
    from gfti_core.tiny import tiny_images

    backend = DiffusersBackend(tiny_sd1)
    data = TrainingSet(backend.encode_images(tiny_images(2)), [["a photo of <*>"]] * 2)
    width = backend.encoders[0].width
    gen = torch.Generator().manual_seed(0)
    init, basis = torch.randn(1, width, generator=gen) * 0.3, torch.randn(3, width, generator=gen)
    recorded = []
    learned = _module("gradient_ti").gradient_ti(backend, data, init, steps=2, batch=2, lr=1e-2, basis=basis,
                                                 on_step=lambda step, vec, rows, s: recorded.append(vec))
    assert torch.equal(recorded[-1], learned)  # the curve's last point is the vector returned, after the step
    move = learned - init
    q = torch.linalg.qr(basis.T).Q  # [D, 3]
    outside = move - (move @ q) @ q.T
    assert move.norm() > 1e-4
    assert outside.norm() < 1e-5 * max(1.0, move.norm().item())
