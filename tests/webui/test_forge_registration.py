"""Optional: GFTI's in-memory embedding data against Forge's REAL `backend/text_processing/textual_inversion.py`
(read from a Forge checkout outside the repo: set GFTI_FORGE_GIT to its git directory; skipped otherwise)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest
import torch

from gfti_core.formats import Embedding, write_embedding
from gfti_core.tiny import tiny_tokenizer
from gfti_webui.host_a1111 import embedding_data

FORGE_GIT = Path(os.environ.get("GFTI_FORGE_GIT", "/work/.mirror/lllyasviel+stable-diffusion-webui-forge/repo"))


@pytest.fixture(scope="module")
def forge_ti(tmp_path_factory):
    if not FORGE_GIT.is_dir():
        pytest.skip(f"no Forge checkout at {FORGE_GIT} (set GFTI_FORGE_GIT)")
    src = subprocess.run(["git", f"--git-dir={FORGE_GIT}", "show", "HEAD:backend/text_processing/textual_inversion.py"],
                         capture_output=True, text=True)
    if src.returncode:
        pytest.skip(src.stderr.strip())
    path = tmp_path_factory.mktemp("forge") / "forge_textual_inversion.py"
    path.write_text(src.stdout)
    spec = importlib.util.spec_from_file_location("forge_textual_inversion", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("vectors", [{"clip_l": torch.randn(2, 768)},
                                     {"clip_l": torch.randn(2, 768), "clip_g": torch.randn(2, 1280)}])
def test_temporary_registration_and_removal(forge_ti, vectors):
    tok = tiny_tokenizer()
    db = forge_ti.EmbeddingDatabase(tok, expected_shape=sum(v.shape[1] for v in vectors.values()))
    made = forge_ti.create_embedding_from_data(embedding_data(Embedding(vectors, "gfti-preview-x")), "gfti-preview-x")
    db.register_embedding_by_name(made, "gfti-preview-x")
    ids = tok(["a gfti-preview-x photo"], add_special_tokens=False)["input_ids"][0]
    found, length = db.find_embedding_at_position(ids, 1)
    assert found is made and made.vectors == 2 and length == len(tok(["gfti-preview-x"], add_special_tokens=False)["input_ids"][0])
    if len(vectors) == 1:
        assert torch.equal(made.vec, vectors["clip_l"])
    else:
        assert made.shape == 2048 and torch.equal(made.vec["clip_g"], vectors["clip_g"])
    db.register_embedding_by_name(None, "gfti-preview-x")
    assert db.find_embedding_at_position(ids, 1) == (None, None) and not db.word_embeddings


@pytest.mark.parametrize("fmt", ["safetensors", "a1111-pt"])
def test_forge_loads_the_file_gfti_writes(forge_ti, tmp_path, fmt):
    tok = tiny_tokenizer()
    write_embedding(tmp_path / "my-thing", Embedding({"clip_l": torch.randn(3, 768)}, "my-thing"), fmt)
    db = forge_ti.EmbeddingDatabase(tok, expected_shape=768)
    db.add_embedding_dir(str(tmp_path))
    db.load_textual_inversion_embeddings()
    assert list(db.word_embeddings) == ["my-thing"] and db.word_embeddings["my-thing"].vectors == 3


def test_forge_family_comes_from_the_engines_own_fields():
    """Forge sets is_sd1/is_sd2/is_sdxl/is_sd3/is_inpaint on its diffusion engine (backend/diffusion_engine);
    Flux carries a CLIP-L and SD3.5 a CLIP-G, so widths alone would mistake them for SD1 / SDXL."""
    import pytest

    from gfti_core.errors import GFTIError
    from gfti_webui.host_forge import check_family

    def engine(name, **flags):
        return type(name, (), {"is_sd1": False, "is_sd2": False, "is_sdxl": False, "is_sd3": False,
                               "is_inpaint": False, **flags})()

    assert check_family(engine("StableDiffusion", is_sd1=True)) == "sd1"
    assert check_family(engine("StableDiffusionXL", is_sdxl=True)) == "sdxl"
    for bad, words in ((engine("Flux"), "Flux"), (engine("StableDiffusion3", is_sd3=True), "StableDiffusion3"),
                       (engine("StableDiffusionXLRefiner", is_sdxl=True), "refiner"),
                       (engine("StableDiffusion", is_sd1=True, is_inpaint=True), "inpainting")):
        with pytest.raises(GFTIError, match=words) as err:
            check_family(bad)
        assert "SD1, SD2 and SDXL" in str(err.value) and "\n" not in str(err.value)
