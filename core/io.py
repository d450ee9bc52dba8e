"""Atomic writes: a failed run never leaves a half-written or overwritten output behind."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

PARTITION = "date"  # CDR folders are partitioned by call date: cdr/date=YYYY-MM-DD/*.parquet


def _atomic(path: Path, write) -> Path:
    """Write beside ``path`` into ``.<name>.<pid>.<random>.tmp``, then rename: readers see the old file
    or the new one, never half of one; what a killed writer leaves, the next writer removes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_leftovers(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> Path:
    return _atomic(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_json_atomic(obj: Any, path: Path) -> Path:
    def _write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(obj, indent=2, default=str) + "\n")

    return _atomic(path, _write)


def write_text_atomic(text: str, path: Path) -> Path:
    return _atomic(path, lambda tmp: Path(tmp).write_text(text))


def replace_dir_atomic(new: Path, final: Path) -> Path:
    """Swap a fully written folder ``new`` into place of ``final``; the old one is removed after.

    Two renames: at no moment is ``final`` half-written, and a failure before the swap leaves the
    previous folder as it was.
    """
    new, final = Path(new), Path(final)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    if old.is_file():  # a single-file table replaced by a folder (the engine changed)
        old.unlink()
    shutil.rmtree(old, ignore_errors=True)
    return final


def fingerprint(path: Path) -> str:
    """Size and modification time of a file, or of every file in a folder: cheap change detection."""
    files = sorted(Path(path).rglob("*")) if Path(path).is_dir() else [Path(path)]
    return ";".join(
        f"{f.relative_to(path) if f != Path(path) else ''}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
        for f in files
        if f.is_file()
    )


def sha256_files(*paths: Path) -> str:
    """SHA-256 (hex) of the files' bytes, in order, read in 1 MiB blocks."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def content_hash(*paths: Path) -> str:
    """First 16 hex digits of :func:`sha256_files`: a data version."""
    return sha256_files(*paths)[:16]


def _stat_key(files: list[Path]) -> list[list]:
    """What says a file is as it was when hashed: name, size, modification time (ns) and inode."""
    out = []
    for f in files:
        st = f.stat()
        out.append([str(f), st.st_size, st.st_mtime_ns, st.st_ino])
    return out


class HashCache:
    """Content hashes remembered by the files' (path, size, mtime_ns, inode), in a small JSON file.

    The content hash stays the truth: a file whose stat no longer matches (rewritten, touched,
    replaced) is read and hashed again, and a touched file with the same bytes hashes the same. What
    the cache saves is reading unchanged files on every run, the whole export at operator scale.
    ``path=None``: no cache (every file read). Use as a context manager to save on exit.
    """

    def __init__(self, path: Path | None):
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, dict] = {}
        self.seen: set[str] = set()
        self.changed = False
        if self.path is not None and self.path.exists():
            try:
                self.entries = json.loads(self.path.read_text()).get("entries", {})
            except (OSError, ValueError, AttributeError):
                self.entries = {}

    def sha256(self, key: Path, files: list[Path]) -> str:
        """:func:`sha256_files` of ``files`` (in order), recorded under ``key`` (a file or folder)."""
        stat = _stat_key(files)
        self.seen.add(str(key))
        entry = self.entries.get(str(key))
        if entry is not None and entry.get("stat") == stat:
            return entry["sha256"]
        h = sha256_files(*files)
        self.entries[str(key)] = {"stat": stat, "sha256": h}
        self.changed = True
        return h

    def hash(self, key: Path, files: list[Path]) -> str:
        """:func:`content_hash` of ``files``: the first 16 hex digits of :meth:`sha256`."""
        return self.sha256(key, files)[:16]

    def forget_unseen(self, under: Path) -> None:
        """Drop entries below ``under`` not asked for since loading (partitions gone from the folder)."""
        prefix = str(under).rstrip("/") + "/"
        for k in [k for k in self.entries if k.startswith(prefix) and k not in self.seen]:
            del self.entries[k]
            self.changed = True

    def save(self) -> None:
        if self.path is not None and self.changed:
            write_json_atomic({"format": 1, "entries": self.entries}, self.path)
            self.changed = False

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.save()


def cached_sha256(path: Path, cache: Path | None = None) -> str:
    """:func:`sha256_files` of one file, read only when its stat differs from the cached one.

    A folder (a table written by Spark's executors) hashes as its data files' hashes by relative path,
    each subfolder cached on its own: a build that adds one partition reads only that partition's files.
    Hidden and ``_`` files (Spark's ``.crc`` and ``_SUCCESS``) are not data and are left out."""
    path = Path(path)
    with HashCache(cache) as c:
        if not path.is_dir():
            return c.sha256(path, [path])
        parts = sorted({f.parent for f in _data_files(path)})
        listing = "\n".join(
            f"{p.relative_to(path)}:{c.sha256(p, sorted(f for f in p.iterdir() if _is_data(f)))}"
            for p in parts
        )
        c.forget_unseen(path)
    return hashlib.sha256(listing.encode()).hexdigest()


def _is_data(f: Path) -> bool:
    return f.is_file() and not f.name.startswith((".", "_"))


def _data_files(folder: Path) -> list[Path]:
    """The data files under ``folder``: no hidden or ``_`` files, nor anything in such a folder."""
    return [
        f
        for f in folder.rglob("*")
        if _is_data(f) and not any(p.startswith((".", "_")) for p in f.relative_to(folder).parts)
    ]


def cached_content_hash(path: Path, cache: Path | None = None) -> str:
    """:func:`content_hash` of one file, read only when its stat differs from the cached one."""
    return cached_sha256(path, cache)[:16]


def partition_hashes(folder: Path, cache: Path | None = None) -> dict[str, str]:
    """Per ``date=...`` partition of ``folder``, by partition value: the :func:`content_hash` of its
    files in name order. Content, not modification time: a rewritten or touched file with the same
    bytes is the same partition. With ``cache`` (a :class:`HashCache` file) a partition whose files'
    stats are as when last hashed is not read again."""
    with HashCache(cache) as c:
        out = {
            p.name.split("=", 1)[1]: c.hash(p, sorted(f for f in p.rglob("*") if f.is_file()))
            for p in sorted(Path(folder).glob(f"{PARTITION}=*"))
            if p.is_dir()
        }
        c.forget_unseen(Path(folder))
    return out


class WorkdirBusy(RuntimeError):
    """Another run of the same stage holds the workdir's lock."""


@contextmanager
def workdir_lock(workdir: Path, name: str) -> Iterator[None]:
    """One run of stage ``name`` per workdir at a time (a second one is refused, naming the first).

    An advisory ``flock`` on ``<workdir>/.locks/<name>.lock``: the kernel drops it when the holder's
    process ends, however it ends (kill -9 included), so a lock left by a dead run never blocks."""
    path = Path(workdir) / ".locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise WorkdirBusy(
            f"`churn {name}` is already running on {workdir} ({holder}); wait for it to end"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, since {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def write_secret(path: Path, text: str) -> None:
    """Create ``path`` holding ``text``, readable by its owner alone from the first byte (0600, then
    renamed into place: never a moment world-readable, never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_dead_leftovers(root: Path) -> list[Path]:
    """Remove what atomic writes of dead processes left in ``root``: ``.<name>.<pid>.<random>.partial``
    folders and ``.<name>.<pid>.<random>.tmp`` files whose writer no longer runs.

    An atomic write builds its output beside the target and swaps it in; a run killed in between leaves
    it behind. One without a pid in its name (an older release's) is removed too."""
    removed = []
    for d in [*Path(root).glob(".*.partial"), *Path(root).glob(".*.tmp")]:
        parts = d.name.split(".")
        pid = int(parts[-3]) if len(parts) > 4 and parts[-3].isdigit() else None
        if pid is None or not process_running(pid):
            if d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
            else:
                d.unlink(missing_ok=True)
            removed.append(d)
    return removed


def process_running(pid: int) -> bool:
    """Whether a process with this pid lives on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
