"""Atomic writes: a failed run never leaves a half-written or overwritten output behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

PARTITION = "date"  # CDR folders are partitioned by call date: cdr/date=YYYY-MM-DD/*.parquet


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def partition_hashes(folder: Path) -> dict[str, str]:
    """Per ``date=...`` partition of ``folder``, by partition value: the :func:`content_hash` of its
    files in name order. Content, not modification time: a rewritten or touched file with the same
    bytes is the same partition."""
    return {
        p.name.split("=", 1)[1]: content_hash(*sorted(f for f in p.rglob("*") if f.is_file()))
        for p in sorted(Path(folder).glob(f"{PARTITION}=*"))
        if p.is_dir()
    }
