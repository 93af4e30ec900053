"""`make demo` end to end on the shipped toy model, shortened to 2 generations and 2 preview images."""
import re

import pytest
from PIL import Image

toyworld = pytest.importorskip("toyworld")


@pytest.mark.skipif(not (toyworld.MODEL_DIR / "model_index.json").exists(),
                    reason=f"toy model weights not found in {toyworld.MODEL_DIR}")
def test_demo_writes_its_outputs_and_reports_both_measures(tmp_path, capsys):
    from toyworld.demo import run
    from gfti_core.formats import read_embedding

    run(tmp_path, generations=2, preview=2)
    printed = capsys.readouterr().out
    for measure in ("fidelity", "editability"):
        line = re.search(rf"^{measure} \(purple star\): init ([\d.]+) -> learned ([\d.]+)", printed, re.M)
        assert line, printed
        assert all(0.0 <= float(v) <= 1.0 for v in line.groups())
    emb = read_embedding(tmp_path / "gfti-demo.safetensors")
    assert next(iter(emb.vectors.values())).shape == (1, 768)
    grid = Image.open(tmp_path / "samples.png")
    loss = Image.open(tmp_path / "gfti-demo.loss.png")
    rows = (grid.height // 2 - 4) / (64 + 4 + 14)  # image_grid: pad 4, label 14; the demo doubles the size
    assert rows == 3, "rows: learned, init, learned in a new context"
    assert loss.width > 100
    assert (tmp_path / "gfti-demo.state.safetensors").exists()
