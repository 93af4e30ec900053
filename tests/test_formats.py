"""Embedding files: round trips, host-compatible layouts, hostile and damaged input (gfti_core.formats)."""
from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from gfti_core.errors import EmbeddingFileError, GFTIError, OutputExistsError
from gfti_core.formats import (
    FAMILY_WIDTHS,
    FORMATS,
    MAX_VECTORS,
    Embedding,
    describe,
    read_embedding,
    write_embedding,
)

FAMILIES = {
    "sd1": {"clip_l": 768},
    "sd2": {"clip_h": 1024},
    "sdxl": {"clip_l": 768, "clip_g": 1280},
    "toy": {"clip_l": 32},
    "toy-xl": {"clip_l": 32, "clip_g": 48},
}
SINGLE_ENCODER_ONLY = ("diffusers", "a1111-pt")
RUN_FACTS = {"gfti.steps": "120", "gfti.evaluations": "2400", "gfti.best_loss": "0.1234", "gfti.seed": "7",
             "gfti.model_name": "toy.safetensors", "gfti.model_hash": "abc123",
             "gfti.config": json.dumps({"sigma0": 0.5})}


def make_embedding(widths: dict[str, int], n: int = 3, token: str = "sks", seed: int = 0) -> Embedding:
    gen = torch.Generator().manual_seed(seed)
    vectors = {name: torch.randn(n, width, generator=gen) * 0.02 for name, width in widths.items()}
    return Embedding(vectors=vectors, token=token, metadata=dict(RUN_FACTS))


# ------------------------------------------------------------------------------------------ round trips

@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path, fmt, family, n):
    widths = FAMILIES[family]
    emb = make_embedding(widths, n)
    if fmt in SINGLE_ENCODER_ONLY and len(widths) > 1:
        with pytest.raises(EmbeddingFileError, match="safetensors"):
            write_embedding(tmp_path / "sks", emb, fmt)
        assert list(tmp_path.iterdir()) == []
        return
    path = write_embedding(tmp_path / "sks", emb, fmt)
    for expect in (widths, None):
        back = read_embedding(path, expect=expect)
        assert back.widths == widths
        for name, tensor in emb.vectors.items():
            assert back.vectors[name].dtype == torch.float32
            assert torch.equal(back.vectors[name], tensor)
        assert back.num_vectors == n
        assert back.token == "sks"
        assert back.source_format == fmt
        assert back.family == emb.family
        assert RUN_FACTS.items() <= back.metadata.items()


def test_family_names():
    assert make_embedding(FAMILY_WIDTHS["sd1"]).family == "sd1"
    assert make_embedding(FAMILY_WIDTHS["sd2"]).family == "sd2"
    assert make_embedding(FAMILY_WIDTHS["sdxl"]).family == "sdxl"
    assert make_embedding({"clip_l": 32}).family == "unknown family (width 32)"


def test_safetensors_layout_keeps_run_facts_in_metadata_not_tensors(tmp_path):
    sd1 = write_embedding(tmp_path / "a", make_embedding(FAMILIES["sd1"]))
    sdxl = write_embedding(tmp_path / "b", make_embedding(FAMILIES["sdxl"]))
    with safe_open(str(sd1), "pt") as fh:
        assert list(fh.keys()) == ["emb_params"]  # ComfyUI takes the first tensor: there must be only one
        meta = fh.metadata()
    assert RUN_FACTS.items() <= meta.items()
    assert meta["gfti.token"] == "sks"
    with safe_open(str(sdxl), "pt") as fh:
        assert sorted(fh.keys()) == ["clip_g", "clip_l"]
        assert fh.get_tensor("clip_g").shape == (3, 1280)


def test_a1111_payload_matches_what_a1111_writes(tmp_path):
    emb = make_embedding(FAMILIES["sd1"], n=2)
    path = write_embedding(tmp_path / "sks", emb, "a1111-pt")
    data = torch.load(path, map_location="cpu", weights_only=True)  # what ComfyUI does
    assert data["string_to_token"] == {"*": 265}
    assert torch.equal(data["string_to_param"]["*"], emb.vectors["clip_l"])
    assert data["name"] == "sks" and data["step"] == 120
    assert data["sd_checkpoint"] == "abc123" and data["sd_checkpoint_name"] == "toy.safetensors"


def test_diffusers_layout_is_token_keyed(tmp_path):
    path = write_embedding(tmp_path / "file", make_embedding(FAMILIES["sd2"], token="<cat-toy>"), "diffusers")
    with safe_open(str(path), "pt") as fh:
        assert list(fh.keys()) == ["<cat-toy>"]


def test_written_tensors_are_detached_cpu_float32(tmp_path):
    vec = torch.randn(2, 32, dtype=torch.float64, requires_grad=True)
    emb = Embedding({"clip_l": vec.t().t()}, token="g")
    back = read_embedding(write_embedding(tmp_path / "g", emb, "a1111-pt"))
    assert back.vectors["clip_l"].dtype == torch.float32 and not back.vectors["clip_l"].requires_grad
    assert torch.allclose(back.vectors["clip_l"], vec.detach().float())


def test_token_falls_back_to_file_stem(tmp_path):
    emb = make_embedding(FAMILIES["toy"], token="")
    assert read_embedding(write_embedding(tmp_path / "stemname", emb)).token == "stemname"


def test_suffix_added_or_checked(tmp_path):
    emb = make_embedding(FAMILIES["toy"])
    assert write_embedding(tmp_path / "a", emb, "a1111-pt").name == "a.pt"
    assert write_embedding(tmp_path / "sks.v2", emb).name == "sks.v2.safetensors"
    assert write_embedding(tmp_path / "x.SAFETENSORS", emb, "diffusers").name == "x.SAFETENSORS"
    with pytest.raises(EmbeddingFileError, match=r"\.pt"):
        write_embedding(tmp_path / "b.safetensors", emb, "a1111-pt")
    with pytest.raises(EmbeddingFileError, match="unknown embedding format"):
        write_embedding(tmp_path / "c", emb, "ckpt")


def test_existing_file_not_overwritten_without_flag(tmp_path):
    first, second = make_embedding(FAMILIES["toy"], seed=1), make_embedding(FAMILIES["toy"], seed=2)
    path = write_embedding(tmp_path / "sks", first)
    with pytest.raises(OutputExistsError, match="overwrite"):
        write_embedding(path, second)
    assert torch.equal(read_embedding(path).vectors["clip_l"], first.vectors["clip_l"])
    write_embedding(path, second, overwrite=True)
    assert torch.equal(read_embedding(path).vectors["clip_l"], second.vectors["clip_l"])


def test_disk_full_while_writing_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(GFTIError, match="disk is full"):
        write_embedding(tmp_path / "sks", make_embedding(FAMILIES["sd1"]), "a1111-pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [
    {"clip_l": torch.full((2, 32), float("nan"))},
    {"clip_l": torch.zeros(0, 32)},
    {"clip_l": torch.zeros(MAX_VECTORS + 1, 32)},
    {"clip_l": torch.zeros(2, 3, 32)},
    {"clip_l": torch.zeros(2, 32, dtype=torch.int64)},
    {"clip_l": torch.zeros(2, 32), "clip_g": torch.zeros(3, 48)},
    {},
])
def test_writer_refuses_invalid_embeddings(tmp_path, bad):
    with pytest.raises(EmbeddingFileError):
        write_embedding(tmp_path / "bad", Embedding(bad, token="x"))
    assert list(tmp_path.iterdir()) == []


def test_describe_summarises(tmp_path):
    text = describe(read_embedding(write_embedding(tmp_path / "sks", make_embedding(FAMILIES["sdxl"]))))
    for expected in ("sks", "safetensors", "SDXL (clip_l 768 + clip_g 1280)", "vectors:  3", "[3, 1280]",
                     "norms", "gfti.steps = 120"):
        assert expected in text


# ------------------------------------------------------------------------------------- foreign files

def test_reads_diffusers_bin_with_1d_tensor(tmp_path):
    vec = torch.randn(768)
    path = tmp_path / "learned_embeds.bin"
    torch.save({"<cat-toy>": vec}, path)
    emb = read_embedding(path, expect={"clip_l": 768})
    assert emb.token == "<cat-toy>" and emb.family == "sd1"
    assert torch.equal(emb.vectors["clip_l"], vec.unsqueeze(0))


def test_reads_foreign_a1111_pt(tmp_path):
    vec = torch.nn.Parameter(torch.randn(4, 1024))
    payload = {"string_to_token": {"*": 265}, "string_to_param": {"*": vec}, "name": "charturner",
               "step": 3000, "sd_checkpoint": "a9263745", "sd_checkpoint_name": "v2-1_768"}
    path = tmp_path / "ct.pt"
    torch.save(payload, path)
    emb = read_embedding(path)
    assert emb.token == "charturner" and emb.family == "sd2" and list(emb.vectors) == ["clip_h"]
    assert emb.metadata["a1111.step"] == "3000" and emb.metadata["a1111.sd_checkpoint"] == "a9263745"
    assert torch.equal(emb.vectors["clip_h"], vec.detach())


def test_reads_kohya_sdxl_safetensors_and_bare_tensor(tmp_path):
    save_file({"clip_g": torch.randn(2, 1280), "clip_l": torch.randn(2, 768)}, str(tmp_path / "xl.safetensors"))
    assert read_embedding(tmp_path / "xl.safetensors").family == "sdxl"
    torch.save(torch.randn(2, 32), tmp_path / "bare.pt")
    emb = read_embedding(tmp_path / "bare.pt", expect={"clip_h": 32})
    assert list(emb.vectors) == ["clip_h"] and emb.token == "bare"


class _Evil:
    """Unpickling this would run a shell command creating the marker file."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("container", ["torch-zip", "raw-pickle"])
def test_pickle_payload_refused_without_executing(tmp_path, container):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = str(marker)
    path = tmp_path / "evil.pt"
    payload = {"string_to_param": {"*": torch.zeros(1, 768)}, "name": "x", "extra": evil}
    if container == "torch-zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(EmbeddingFileError, match="refusing to load .*Python objects beyond tensors"):
        read_embedding(path)
    assert not marker.exists()


@pytest.mark.parametrize("file_family, model_family, file_text, model_text", [
    ("sdxl", "sd1", "SDXL (clip_l 768 + clip_g 1280)", "SD1 (768)"),
    ("sd1", "sdxl", "SD1 (768)", "SDXL (clip_l 768 + clip_g 1280)"),
    ("sd2", "sd1", "SD2 (1024)", "SD1 (768)"),
    ("sd1", "sd2", "SD1 (768)", "SD2 (1024)"),
    ("toy", "sd1", "unknown family (width 32)", "SD1 (768)"),
    ("sd1", "toy", "SD1 (768)", "unknown family (width 32)"),
])
def test_wrong_family_error_names_both(tmp_path, file_family, model_family, file_text, model_text):
    path = write_embedding(tmp_path / "sks", make_embedding(FAMILIES[file_family]))
    with pytest.raises(EmbeddingFileError) as info:
        read_embedding(path, expect=FAMILIES[model_family])
    message = str(info.value)
    assert f"this embedding is for {file_text} but the model is {model_text}" in message
    assert "use an" in message and "\n" not in message


def test_wrong_family_message_exact(tmp_path):
    path = write_embedding(tmp_path / "xl", make_embedding(FAMILIES["sdxl"]))
    with pytest.raises(EmbeddingFileError, match=r"this embedding is for SDXL \(clip_l 768 \+ clip_g 1280\) but "
                                                 r"the model is SD1 \(768\); use an SD1 embedding"):
        read_embedding(path, expect={"clip_l": 768})


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_nan_in_file_rejected_naming_the_file(tmp_path, suffix):
    bad = torch.zeros(2, 768)
    bad[1, 5] = float("nan") if suffix == ".pt" else float("inf")
    path = tmp_path / f"nanny{suffix}"
    if suffix == ".pt":
        torch.save({"string_to_param": {"*": bad}, "name": "n"}, path)
    else:
        save_file({"emb_params": bad}, str(path))
    with pytest.raises(EmbeddingFileError, match="nanny.*NaN or Inf"):
        read_embedding(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_file_rejected(tmp_path, fmt):
    path = write_embedding(tmp_path / "sks", make_embedding(FAMILIES["sd1"]), fmt)
    data = path.read_bytes()
    for cut in (len(data) // 2, 20, 9):
        path.write_bytes(data[:cut])
        with pytest.raises(EmbeddingFileError) as info:
            read_embedding(path)
        assert "sks" in str(info.value)


def test_missing_empty_and_folder_rejected(tmp_path):
    with pytest.raises(EmbeddingFileError, match="does not exist"):
        read_embedding(tmp_path / "nope.pt")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(EmbeddingFileError, match="empty"):
        read_embedding(tmp_path / "empty.safetensors")
    with pytest.raises(EmbeddingFileError, match="not a file"):
        read_embedding(tmp_path)


@pytest.mark.parametrize("tensors, match", [
    ({f"layer{i}.weight": torch.zeros(2, 2) for i in range(20)}, "not an embedding"),
    ({"emb_params": torch.zeros(2, 3, 32)}, r"\[N, D\]"),
    ({"emb_params": torch.zeros(MAX_VECTORS + 1, 32)}, r"\[N, D\]"),
    ({"emb_params": torch.zeros(2, 32, dtype=torch.int32)}, "floating"),
    ({"clip_l": torch.zeros(2, 768), "clip_g": torch.zeros(3, 1280)}, "same N"),
    ({"a": torch.zeros(1, 8), "b": torch.zeros(1, 8)}, "no embedding tensor"),
])
def test_structurally_bad_safetensors_rejected(tmp_path, tensors, match):
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(EmbeddingFileError, match=match):
        read_embedding(path)


def test_disagreeing_metadata_is_ignored_with_warning(tmp_path, caplog):
    path = tmp_path / "liar.safetensors"
    save_file({"emb_params": torch.zeros(3, 768)}, str(path),
              metadata={"gfti.num_vectors": "5", "gfti.family": "sdxl", "gfti.steps": "9"})
    with caplog.at_level(logging.WARNING, logger="gfti_core.formats"):
        emb = read_embedding(path)
    assert emb.num_vectors == 3 and emb.family == "sd1"
    assert emb.metadata == {"gfti.steps": "9"}
    assert "disagrees" in caplog.text


# ------------------------------------------------------------------------------- property: any bytes

def _valid_files() -> list[tuple[str, bytes]]:
    """Bytes of one valid file per format (and a diffusers .bin), to be mutated."""
    files = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, family in [("safetensors", "sd1"), ("safetensors", "toy-xl"), ("diffusers", "toy"),
                            ("a1111-pt", "toy")]:
            path = write_embedding(Path(tmp) / fmt, make_embedding(FAMILIES[family], n=2), fmt, overwrite=True)
            files.append((path.suffix, path.read_bytes()))
        torch.save({"<t>": torch.randn(32)}, Path(tmp) / "d.bin")
        files.append((".bin", (Path(tmp) / "d.bin").read_bytes()))
    return files


VALID_FILES = _valid_files()


@st.composite
def hostile_files(draw):
    """Random bytes, or a valid file truncated / with flipped, replaced or inserted bytes."""
    if draw(st.booleans()):
        return draw(st.sampled_from([".safetensors", ".pt", ".bin"])), draw(st.binary(max_size=1024))
    suffix, data = draw(st.sampled_from(VALID_FILES))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite-header"]))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:  # the first bytes hold the safetensors header length / zip signature: hit them often
            data[: min(8, len(data))] = draw(st.binary(min_size=8, max_size=8))
    return suffix, bytes(data)


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_files())
def test_hostile_bytes_only_raise_embedding_file_error(case):
    suffix, data = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            emb = read_embedding(path, expect=None)
        except EmbeddingFileError:
            return
        # a mutation that kept the file valid must still yield a valid embedding
        assert 1 <= emb.num_vectors <= MAX_VECTORS
        assert all(bool(torch.isfinite(t).all()) for t in emb.vectors.values())


# --------------------------------------------------------------------------- diffusers loads our files

def _tiny_clip(tmp_path: Path):
    """Offline byte-level CLIP tokenizer + 2-layer, 32-wide CLIPTextModel."""
    transformers = pytest.importorskip("transformers")
    byte_symbols = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for symbol in byte_symbols + [s + "</w>" for s in byte_symbols] + ["<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(symbol, len(vocab))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = transformers.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"),
                                           model_max_length=77)
    config = transformers.CLIPTextConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=37, vocab_size=len(vocab), max_position_embeddings=77,
                                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                         pad_token_id=tokenizer.eos_token_id)
    return tokenizer, transformers.CLIPTextModel(config)


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP byte -> printable symbol table: printable bytes map to themselves, the rest to 256+."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes = {byte: byte for byte in printable}
    for byte in range(256):
        codes.setdefault(byte, 256 + len(codes) - len(printable))
    return [chr(codes[byte]) for byte in range(256)]


def test_diffusers_load_textual_inversion_accepts_our_sd1_files(tmp_path):
    pytest.importorskip("diffusers")
    from diffusers.loaders import TextualInversionLoaderMixin

    tokenizer, text_encoder = _tiny_clip(tmp_path)

    class TinyPipe(TextualInversionLoaderMixin):
        """Just enough of a pipeline for the mixin: tokenizer, text_encoder, no device map/offload hooks."""

        hf_device_map = None

        def __init__(self):
            self.tokenizer, self.text_encoder = tokenizer, text_encoder
            self.components = {"tokenizer": tokenizer, "text_encoder": text_encoder}

    pipe = TinyPipe()
    cases = [("safetensors", "<emb-a>", {"token": "<emb-a>"}), ("diffusers", "<emb-b>", {}),
             ("a1111-pt", "<emb-c>", {})]
    for i, (fmt, token, kwargs) in enumerate(cases):
        emb = make_embedding({"clip_l": 32}, n=i + 1, token=token, seed=i)
        path = write_embedding(tmp_path / f"file{i}", emb, fmt)
        pipe.load_textual_inversion(str(path), **kwargs)
        names = [token] + [f"{token}_{k}" for k in range(1, i + 1)]
        ids = tokenizer.convert_tokens_to_ids(names)
        rows = text_encoder.get_input_embeddings().weight[ids].detach()
        assert torch.equal(rows, emb.vectors["clip_l"]), fmt
