"""Safe names and atomic, non-clobbering writes (gfti_core.safe_io)."""
from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from gfti_core import safe_io
from gfti_core.errors import GFTIError, OutputExistsError, UnsafeNameError
from gfti_core.safe_io import atomic_write, atomic_write_bytes, display_path, resolve_inside, safe_stem

UNSAFE_NAMES = [
    "", "   ", "\t", ".", "..", "../escape", "a/b", "a\\b", "/etc/passwd", "\\\\server\\share",
    "a\x00b", "line\nbreak", "bell\x07", "del\x7f",
    "CON", "con", "Con.txt", "PRN", "aux", "NUL.safetensors", "COM1", "com9.pt", "LPT1", "lpt9", "COM¹",
    "trailing.", "trailing ", "x" * 121,
    "a:b", "C:evil", "what?", "star*", "pipe|", "<tag>", 'quote"',
]
SAFE_NAMES = ["my-concept", "sks_2", "gfti-concept", "café", "概念", "a.b", "CONSOLE", "com10", "x" * 120, "a b"]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_unsafe_names_rejected(name):
    with pytest.raises(UnsafeNameError) as info:
        safe_stem(name)
    message = str(info.value)
    assert "\n" not in message and "use a plain name" in message


@pytest.mark.parametrize("name", SAFE_NAMES)
def test_safe_names_returned_unchanged(name):
    assert safe_stem(name) == name


def test_non_string_name_rejected():
    with pytest.raises(UnsafeNameError):
        safe_stem(b"bytes")  # type: ignore[arg-type]


def test_resolve_inside_joins_name_and_suffix(tmp_path):
    assert resolve_inside(tmp_path, "concept", ".pt") == tmp_path / "concept.pt"


@pytest.mark.parametrize("name", ["../outside", "..", "/tmp/x", "sub/../../x"])
def test_resolve_inside_rejects_escapes(tmp_path, name):
    with pytest.raises(UnsafeNameError):
        resolve_inside(tmp_path, name, ".pt")


@pytest.mark.parametrize("suffix", ["pt", "./x", "/../x.pt", ".a/b", ".x\x00"])
def test_resolve_inside_rejects_bad_suffix(tmp_path, suffix):
    with pytest.raises(UnsafeNameError):
        resolve_inside(tmp_path, "concept", suffix)


def test_resolve_inside_rejects_symlink_pointing_outside(tmp_path):
    folder, outside = tmp_path / "embeddings", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (folder / "evil.pt").symlink_to(outside / "victim.pt")
    with pytest.raises(UnsafeNameError, match="outside"):
        resolve_inside(folder, "evil", ".pt")


def test_resolve_inside_allows_symlink_within_folder_and_symlinked_folder(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "target.pt").write_bytes(b"x")
    (real / "alias.pt").symlink_to(real / "target.pt")
    linked_folder = tmp_path / "linked"
    linked_folder.symlink_to(real, target_is_directory=True)
    assert resolve_inside(real, "alias", ".pt") == real / "alias.pt"
    assert resolve_inside(linked_folder, "new", ".pt") == linked_folder / "new.pt"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(safe_io.TEMP_PREFIX))


def test_atomic_write_bytes_writes_and_refuses_to_overwrite(tmp_path):
    target = tmp_path / "out.bin"
    assert atomic_write_bytes(target, b"first") == target
    assert target.read_bytes() == b"first"
    with pytest.raises(OutputExistsError, match="overwrite"):
        atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"first"
    atomic_write_bytes(target, b"third", overwrite=True)
    assert target.read_bytes() == b"third"
    assert _leftovers(tmp_path) == []


def test_written_file_gets_normal_permissions_not_mkstemp_0600(tmp_path):
    target = atomic_write_bytes(tmp_path / "perm.bin", b"x")
    umask = safe_io._current_umask()
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_temp_file_lives_in_target_folder(tmp_path):
    """Same folder = same filesystem, so the final rename/link is atomic even if /tmp is elsewhere."""
    seen: list[Path] = []

    def writer(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"data")

    target = tmp_path / "sub" / "out.bin"
    target.parent.mkdir()
    atomic_write(target, writer)
    assert seen[0].parent == target.parent
    assert seen[0].name.startswith(".gfti-") and seen[0].name.endswith(".tmp")
    assert not seen[0].exists()


@pytest.mark.parametrize("exc_type", [ValueError, KeyboardInterrupt])
def test_failed_writer_leaves_nothing_behind(tmp_path, exc_type):
    def writer(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise exc_type("boom")

    with pytest.raises(exc_type):
        atomic_write(tmp_path / "out.bin", writer)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_becomes_gfti_error(tmp_path):
    def writer(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(GFTIError, match="disk is full") as info:
        atomic_write(tmp_path / "out.bin", writer)
    assert str(tmp_path) in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_read_only_folder_gives_gfti_error_and_no_stray_files(tmp_path, monkeypatch, overwrite):
    """Tests run as root, where chmod alone does not stop writes, so the final step is made to fail too."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if overwrite:
        (folder / "out.bin").write_bytes(b"old")

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", denied)
    monkeypatch.setattr(os, "link", denied)
    folder.chmod(0o500)
    try:
        with pytest.raises(GFTIError, match="permission denied") as info:
            atomic_write_bytes(folder / "out.bin", b"new", overwrite=overwrite)
    finally:
        folder.chmod(0o700)
    assert str(folder) in str(info.value)
    assert sorted(p.name for p in folder.iterdir()) == (["out.bin"] if overwrite else [])
    if overwrite:
        assert (folder / "out.bin").read_bytes() == b"old"


def test_read_only_filesystem_when_creating_temp(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(safe_io.tempfile, "mkstemp", read_only)
    with pytest.raises(GFTIError, match="read-only"):
        atomic_write_bytes(tmp_path / "out.bin", b"x")
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_gives_gfti_error(tmp_path):
    with pytest.raises(GFTIError, match="does not exist"):
        atomic_write_bytes(tmp_path / "missing" / "out.bin", b"x")


def test_concurrent_writers_exactly_one_wins(tmp_path):
    """All writers finish their temp files before any commits, so every one passes the early exists check;
    only the atomic link decides."""
    n = 6
    barrier = threading.Barrier(n)
    target = tmp_path / "race.bin"
    results: dict[int, object] = {}

    def run(i: int) -> None:
        def writer(tmp: Path) -> None:
            tmp.write_bytes(f"writer {i}".encode())
            barrier.wait(timeout=10)

        try:
            atomic_write(target, writer)
            results[i] = "won"
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    winners = [i for i, r in results.items() if r == "won"]
    losers = [r for r in results.values() if r != "won"]
    assert len(winners) == 1
    assert len(losers) == n - 1 and all(isinstance(r, OutputExistsError) for r in losers)
    assert target.read_bytes() == f"writer {winners[0]}".encode()
    assert _leftovers(tmp_path) == []


def test_fallback_when_hard_links_unsupported(tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")  # what vfat answers

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"one")
    assert target.read_bytes() == b"one"
    with pytest.raises(OutputExistsError):
        atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"one"
    assert _leftovers(tmp_path) == []


def test_fallback_removes_its_placeholder_when_replace_fails(tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(errno.ENOTSUP, "Operation not supported")

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(GFTIError):
        atomic_write_bytes(tmp_path / "out.bin", b"x")
    assert list(tmp_path.iterdir()) == []


def test_display_path_survives_undecodable_names():
    name = os.fsdecode(b"caf\xe9.png")
    shown = display_path(name)
    shown.encode("utf-8")  # would raise for lone surrogates
    assert shown.startswith("caf") and shown.endswith(".png")
