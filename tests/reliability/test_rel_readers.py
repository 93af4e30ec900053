"""The two file readers under attack: `load_state` raises only `StateFileError` and `read_embedding` only
`EmbeddingFileError`, whatever the bytes, and whatever they do return is valid.

Fuzzing is bounded by example counts (derandomized, so every run checks the same inputs in a few seconds).
Byte-level mutation of embedding files is in tests/test_formats.py (test_hostile_bytes_only_raise_embedding_file_
error); here: byte-level mutation of state files, structure-aware edits of the safetensors header (dtype, shape,
offsets, deleted entries, metadata values and the JSON documents inside them) for both readers, and
deterministic cases of state metadata that lies about the shapes."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_backend import FakeBackend
from rel_helpers import evil_pt
from gfti_core.config import InversionConfig
from gfti_core.engine import run_generations, start_run
from gfti_core.errors import EmbeddingFileError, StateFileError
from gfti_core.formats import MAX_VECTORS, Embedding, read_embedding, write_embedding
from gfti_core.state_io import load_state, state_to_bytes

FUZZ = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _valid_state() -> bytes:
    backend = FakeBackend()
    cfg = InversionConfig(init_mode="word", init_text="cat", subspace_dim=3, popsize=4, samples_per_candidate=2)
    masks = torch.ones(2, 1, 8, 8)
    state = start_run(backend, cfg, torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), masks=masks)
    return state_to_bytes(run_generations(state, backend, 2))


def _valid_embeddings() -> list[tuple[str, bytes]]:
    gen = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for fmt, vectors in [("safetensors", {"clip_l": torch.randn(2, 32, generator=gen)}),
                             ("safetensors", {"clip_l": torch.randn(1, 32, generator=gen),
                                              "clip_g": torch.randn(1, 48, generator=gen)}),
                             ("diffusers", {"clip_l": torch.randn(1, 32, generator=gen)})]:
            path = write_embedding(Path(tmp) / f"e{len(files)}", Embedding(vectors, "sks", {"gfti.steps": "3"}), fmt)
            files.append((path.suffix, path.read_bytes()))
        return files


VALID_STATE = _valid_state()
VALID_EMBEDDINGS = _valid_embeddings()

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)


def _split(raw: bytes) -> tuple[dict, bytes]:
    size = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + size]), raw[8 + size:]


def _join(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + body


@st.composite
def byte_mutations(draw, raw: bytes) -> bytes:
    """Random bytes, or `raw` truncated / with flipped, inserted bytes / a new header length."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "header-length"]))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[:8] = draw(st.integers(0, 2**64 - 1)).to_bytes(8, "little")
    return bytes(data)


def _edit_metadata(draw, meta: dict) -> None:
    key = draw(st.sampled_from(sorted(meta) + ["<new>"]))
    if key == "<new>":
        meta[draw(st.text(max_size=8))] = draw(st.text(max_size=8))
        return
    try:
        document = json.loads(meta[key])
    except ValueError:
        document = None
    if isinstance(document, dict) and document and draw(st.booleans()):  # edit one field of a JSON document
        document[draw(st.sampled_from(sorted(document)))] = draw(JSON)
        meta[key] = json.dumps(document)
    elif draw(st.booleans()):
        meta[key] = json.dumps(draw(JSON))
    else:
        del meta[key]


def _edit_tensor(draw, entry: dict) -> None:
    what = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
    if what == "dtype":
        entry["dtype"] = draw(st.sampled_from(["F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3", "X"]))
    elif what == "shape":
        entry["shape"] = draw(st.lists(st.integers(0, 2**40), max_size=3))
    else:
        entry["data_offsets"] = draw(st.lists(st.integers(0, 2**33), min_size=2, max_size=2))


@st.composite
def header_edits(draw, raw: bytes) -> bytes:
    """`raw` (a safetensors file) with 1-3 edits of its JSON header; the tensor bytes are kept."""
    header, body = _split(raw)
    for _ in range(draw(st.integers(1, 3))):
        meta, tensors = header.get("__metadata__"), sorted(k for k in header if k != "__metadata__")
        if meta and (draw(st.booleans()) or not tensors):  # half the edits keep the file parseable
            _edit_metadata(draw, meta)
        elif tensors:
            key = draw(st.sampled_from(tensors))
            if draw(st.integers(0, 3)):
                _edit_tensor(draw, header[key])
            else:
                del header[key]
    return _join(header, body)


def _load(reader, data: bytes, suffix: str = ".safetensors"):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        return reader(path)


def _check_state(data: bytes) -> None:
    try:
        state = _load(load_state, data)
    except StateFileError:
        return
    assert state.opt_fitness.shape == (state.generation, state.opt_spec.popsize)  # a returned state is usable
    assert np.isfinite(state.optimizer().mean).all()


def _check_embedding(data: bytes, suffix: str) -> None:
    try:
        emb = _load(read_embedding, data, suffix)
    except EmbeddingFileError:
        return
    assert 1 <= emb.num_vectors <= MAX_VECTORS
    assert all(t.dtype == torch.float32 and bool(torch.isfinite(t).all()) for t in emb.vectors.values())


@FUZZ
@given(byte_mutations(VALID_STATE))
def test_state_reader_survives_mutated_bytes(data):
    _check_state(data)


@FUZZ
@given(header_edits(VALID_STATE))
def test_state_reader_survives_header_edits(data):
    _check_state(data)


@FUZZ
@given(st.sampled_from(VALID_EMBEDDINGS).flatmap(lambda f: st.tuples(st.just(f[0]), header_edits(f[1]))))
def test_embedding_reader_survives_header_edits(case):
    suffix, data = case
    _check_embedding(data, suffix)


# ------------------------------------------------------------------------------ state metadata that lies

def _lie(field: str, edit) -> bytes:
    header, body = _split(VALID_STATE)
    document = json.loads(header["__metadata__"][field])
    header["__metadata__"][field] = json.dumps(edit(document))
    return _join(header, body)


@pytest.mark.parametrize("field, edit, match", [
    ("encoders", lambda d: {**d, "clip_l": 32}, "do not match width 32"),
    ("encoders", lambda d: {**d, "clip_g": 16}, "basis.clip_g"),
    ("config", lambda d: {**d, "num_vectors": 2}, "1 vector|2 vector"),
    ("config", lambda d: {**d, "popsize": 0}, "popsize"),
    ("opt_spec", lambda d: {**d, "dim": d["dim"] + 1}, "do not match the subspace"),
    ("opt_spec", lambda d: {**d, "popsize": d["popsize"] + 1}, "do not match the subspace"),
    ("opt_spec", lambda d: {**d, "sigma": 0.0}, "step size"),
    ("opt_spec", lambda d: {**d, "seed": d["seed"] + 1}, "inconsistent"),
    ("prompts", lambda d: d[:1], "every latent needs"),
])
def test_state_metadata_that_lies_about_shapes_is_refused(tmp_path, field, edit, match):
    path = tmp_path / "liar.safetensors"
    path.write_bytes(_lie(field, edit))
    with pytest.raises(StateFileError, match=match) as info:
        load_state(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_pickle_given_as_a_state_file_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(StateFileError, match="not a valid GFTI state file"):
        load_state(evil_pt(tmp_path / "evil.pt", marker))
    assert not marker.exists()
