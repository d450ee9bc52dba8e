"""Content hashes are cached by file stat: unchanged files are not read again, and content stays the
truth for every file whose stat moved (touched, rewritten, replaced)."""

import json
import os

from core.io import HashCache, cached_content_hash, partition_hashes


def _export(folder, days=("2026-01-01", "2026-01-02", "2026-01-03")):
    for d in days:
        part = folder / f"date={d}"
        part.mkdir(parents=True)
        (part / "part-0.parquet").write_bytes(f"calls of {d}".encode() * 100)
    return folder


def test_cached_hashes_equal_uncached_ones_and_unchanged_files_are_not_read(tmp_path):
    folder, cache = _export(tmp_path / "cdr"), tmp_path / "hashes.json"
    truth = partition_hashes(folder)
    assert partition_hashes(folder, cache) == truth and cache.exists()

    # proof the second run reads nothing: bytes changed behind an unchanged stat go unseen (the
    # trade the cache makes: same path, size, mtime_ns and inode means the same file)
    f = folder / "date=2026-01-02" / "part-0.parquet"
    st = f.stat()
    with open(f, "r+b") as fh:
        fh.write(b"X")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert partition_hashes(folder, cache) == truth
    assert partition_hashes(folder) != truth


def test_a_touched_file_with_the_same_bytes_is_rehashed_and_found_unchanged(tmp_path):
    folder, cache = _export(tmp_path / "cdr"), tmp_path / "hashes.json"
    truth = partition_hashes(folder, cache)
    f = folder / "date=2026-01-02" / "part-0.parquet"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 5_000_000_000))
    assert partition_hashes(folder, cache) == truth
    entry = json.loads(cache.read_text())["entries"][str(f.parent)]
    assert entry["stat"][0][2] == f.stat().st_mtime_ns  # re-read: the new stat is recorded


def test_changed_added_and_removed_partitions(tmp_path):
    folder, cache = _export(tmp_path / "cdr"), tmp_path / "hashes.json"
    truth = partition_hashes(folder, cache)
    f = folder / "date=2026-01-02" / "part-0.parquet"
    f.write_bytes(b"a late call" * 50)  # rewritten: another size and mtime
    _export(folder, days=("2026-01-04",))
    (folder / "date=2026-01-01" / "part-0.parquet").unlink()
    (folder / "date=2026-01-01").rmdir()
    now = partition_hashes(folder, cache)
    assert now == partition_hashes(folder)
    assert sorted(now) == ["2026-01-02", "2026-01-03", "2026-01-04"]
    assert now["2026-01-02"] != truth["2026-01-02"] and now["2026-01-03"] == truth["2026-01-03"]
    entries = json.loads(cache.read_text())["entries"]
    assert str(folder / "date=2026-01-01") not in entries  # forgotten with its partition


def test_a_replaced_file_is_rehashed_even_with_the_same_size_and_time(tmp_path):
    f, cache = tmp_path / "subscribers.parquet", tmp_path / "hashes.json"
    f.write_bytes(b"A" * 100)
    first = cached_content_hash(f, cache)
    st = f.stat()
    new = tmp_path / "new.parquet"
    new.write_bytes(b"B" * 100)
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, f)  # another inode
    assert cached_content_hash(f, cache) != first
    assert HashCache(None).hash(f, [f]) == cached_content_hash(f, cache)
