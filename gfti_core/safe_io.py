"""Safe file names and atomic, non-clobbering writes.

Hosts watch their embeddings folders (A1111 reloads when the folder's mtime changes, ComfyUI re-reads the
file on every tokenize), so a half-written file must never be visible under its final name. Every GFTI
output therefore goes: temp file in the *same* folder -> flush + fsync -> atomic rename/link into place.
The temp file lives beside the target because `os.replace` is only atomic within one filesystem.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

from .errors import GFTIError, OutputExistsError, UnsafeNameError

__all__ = [
    "MAX_STEM_CHARS",
    "safe_stem",
    "resolve_inside",
    "atomic_write",
    "atomic_write_bytes",
    "display_path",
]

logger = logging.getLogger(__name__)

MAX_STEM_CHARS = 120
TEMP_PREFIX = ".gfti-"
TEMP_SUFFIX = ".tmp"

# Windows refuses these as file names even with an extension ("con.txt"), in any letter case.
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
    + [f"{dev}{sup}" for dev in ("COM", "LPT") for sup in "\u00b9\u00b2\u00b3"]  # COM¹ etc. count too
)
# ':' also makes "C:name" drive-relative and "name:stream" an NTFS alternate data stream on Windows;
# the others are simply invalid there. Rejecting them everywhere keeps outputs portable between hosts.
_WINDOWS_INVALID_CHARS = set('<>:"|?*')
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

# OSError numbers that mean "this folder cannot take the file" -> user-fixable, reported as GFTIError.
_USER_FIXABLE_ERRNOS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
    getattr(errno, "EDQUOT", -1001): "the disk quota is exceeded",
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "a folder with that name already exists",
    errno.ENAMETOOLONG: "the file name is too long",
}
# os.link errors that mean "hard links are not supported here" (FAT, some network/FUSE mounts).
_NO_HARDLINK_ERRNOS = {
    errno.EPERM,
    errno.EXDEV,
    errno.EMLINK,
    errno.ENOSYS,
    errno.EINVAL,
    getattr(errno, "ENOTSUP", -1002),
    getattr(errno, "EOPNOTSUPP", -1003),
}


def display_path(path: os.PathLike | str) -> str:
    """`path` as printable text: undecodable bytes in names (surrogate escapes) become `\\udcXX`.

    A message containing lone surrogates would crash a UTF-8 console or log handler; this never does.
    """
    return os.fspath(path).encode("utf-8", "backslashreplace").decode("utf-8")


def safe_stem(name: str) -> str:
    """Return `name` unchanged if it is a safe, portable file-name stem, else raise `UnsafeNameError`.

    Rejects: empty/whitespace, '.'/'..', absolute paths, '/' or '\\\\', control characters (incl. NUL),
    Windows-invalid characters (< > : \" | ? *), Windows device names (CON, com1.txt, ...), names ending
    in '.' or ' ', and names longer than `MAX_STEM_CHARS`.
    """
    if not isinstance(name, str):
        raise UnsafeNameError(f"file name must be text, got {type(name).__name__}; "
                              "pass a plain name such as 'my-concept'")
    shown = display_path(name)[:80]
    problem = _stem_problem(name)
    if problem:
        raise UnsafeNameError(f"unsafe file name {shown!r}: {problem}; use a plain name such as 'my-concept' "
                              "(letters, digits, '-', '_')")
    return name


def _stem_problem(name: str) -> str | None:
    """The reason `name` is unsafe, or None. Order matters only for the clarity of the message."""
    if not name.strip():
        return "it is empty"
    if name in (".", ".."):
        return "it refers to a folder"
    if "/" in name or "\\" in name:
        return "it contains a path separator"
    if os.path.isabs(name) or Path(name).is_absolute():
        return "it is an absolute path"
    if _CONTROL_CHARS.search(name):
        return "it contains control characters"
    bad = sorted(set(name) & _WINDOWS_INVALID_CHARS)
    if bad:
        return f"it contains {''.join(bad)!r}, which Windows does not allow in file names"
    if name.endswith((".", " ")):
        return "it ends in a dot or space, which Windows silently strips"
    if name.split(".", 1)[0].strip().upper() in _WINDOWS_RESERVED:
        return "it is a reserved device name on Windows"
    if len(name) > MAX_STEM_CHARS:
        return f"it is {len(name)} characters long (at most {MAX_STEM_CHARS})"
    return None


def resolve_inside(folder: os.PathLike | str, name: str, suffix: str = "") -> Path:
    """Return `folder/<name><suffix>` after checking `name` and that the result stays inside `folder`.

    Symlinks are resolved on both sides, so a pre-existing link `folder/evil.pt -> /etc/...` is refused.
    The returned path is the unresolved join (writing replaces a link rather than following it).
    """
    stem = safe_stem(name)
    if suffix and (not suffix.startswith(".") or _stem_problem(suffix[1:]) or "/" in suffix or "\\" in suffix):
        raise UnsafeNameError(f"unsafe file suffix {display_path(suffix)!r}; use a plain extension such as '.pt'")
    base = Path(folder)
    candidate = base / f"{stem}{suffix}"
    root = base.resolve()
    target = candidate.resolve()
    if target != root and root not in target.parents:
        raise UnsafeNameError(f"{display_path(candidate)} resolves to {display_path(target)}, outside "
                              f"{display_path(root)}; remove that link or choose another name")
    return candidate


def atomic_write_bytes(path: os.PathLike | str, data: bytes, overwrite: bool = False) -> Path:
    """Atomically write `data` to `path` (see `atomic_write`)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write(path, write, overwrite=overwrite)


def atomic_write(path: os.PathLike | str, writer: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Let `writer(tmp_path)` fill a temp file beside `path`, then move it into place atomically.

    Without `overwrite`, the final step is `os.link` (fails if the name exists), so of two concurrent
    writers of one name exactly one wins and the other gets `OutputExistsError`. Readers never see a
    partial file. On any failure the temp file is removed. Permission/read-only/disk-full problems are
    raised as `GFTIError` naming the folder.
    """
    path = Path(path)
    folder = path.parent
    if not overwrite and os.path.lexists(path):
        raise _exists_error(path)
    tmp = _make_temp(path)
    try:
        writer(tmp)
        _fsync_file(tmp)
        _set_default_mode(tmp, path)
        _commit(tmp, path, overwrite)
    except BaseException as exc:  # also KeyboardInterrupt: never leave a .gfti-*.tmp behind
        _remove_quietly(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, GFTIError):
            raise _os_error_to_gfti(exc, path) from exc
        raise
    _fsync_dir(folder)
    logger.debug("wrote %s", display_path(path))
    return path


def _make_temp(path: Path) -> Path:
    """Create an empty temp file in the target's folder (same filesystem -> atomic rename/link)."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise _os_error_to_gfti(exc, path) from exc
    os.close(fd)
    return Path(name)


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished temp file to `path`; without `overwrite`, only if `path` does not exist yet."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError as exc:
        if exc.errno not in _NO_HARDLINK_ERRNOS:
            raise
        logger.debug("hard links unsupported in %s (%s); using exclusive create", display_path(path.parent), exc)
        _commit_exclusive(tmp, path)
        return
    _remove_quietly(tmp)


def _commit_exclusive(tmp: Path, path: Path) -> None:
    """Fallback without hard links: claim the name with O_EXCL, then replace the placeholder atomically."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise _exists_error(path) from None
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(path)  # the empty placeholder is ours; do not leave it behind
        raise


def _exists_error(path: Path) -> OutputExistsError:
    return OutputExistsError(f"{display_path(path)} exists; pass overwrite=True / --overwrite or choose another name")


def _os_error_to_gfti(exc: OSError, path: Path) -> Exception:
    """Map user-fixable OS errors to a one-line GFTIError; return other errors unchanged."""
    reason = _USER_FIXABLE_ERRNOS.get(exc.errno)
    if reason is None:
        return exc
    return GFTIError(f"cannot write {display_path(path.name)} in folder {display_path(path.parent)}: {reason}; "
                     "choose a writable folder with free space, or fix its permissions")


def _fsync_file(path: Path) -> None:
    """Force the temp file's bytes to disk before it becomes visible (a crash must not leave zeros)."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX only; best effort, Windows cannot open folders)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _set_default_mode(tmp: Path, path: Path) -> None:
    """mkstemp creates 0600 files; give the output normal permissions so a host running as another user
    can read it: the existing file's mode when replacing, else 0666 minus the umask."""
    try:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_current_umask()
        os.chmod(tmp, mode)
    except OSError as exc:  # cosmetic: never fail a write over permissions bits
        logger.debug("could not set mode of %s: %s", display_path(tmp), exc)


def _current_umask() -> int:
    """The process umask, read without changing it where possible (os.umask(x) is process-global)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove temporary file %s: %s", display_path(path), exc)
