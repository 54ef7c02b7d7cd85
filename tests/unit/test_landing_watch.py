"""Settling landing files: size and mtime from any fsspec location, a hash only once a file stops changing."""

import hashlib
import time

import fsspec
import pytest

from platform_assets.defs.ingest import landing_watch as watch


@pytest.fixture(params=["local", "memory"])
def landing(request, tmp_path):
    """A landing URL and a writer for it, on the local disk and in fsspec's memory file system."""
    if request.param == "local":
        url = str(tmp_path / "landing")
    else:
        url = f"memory://landing-{time.monotonic_ns()}"
    fs, root = fsspec.core.url_to_fs(url)
    fs.mkdirs(root, exist_ok=True)
    yield url, lambda name, data: fs.pipe_file(f"{root}/{name}", data)
    if request.param == "memory":
        fs.rm(root, recursive=True)


def _sha(path):
    with fsspec.open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_size_and_mtime_come_from_local_and_memory_file_systems(landing):
    url, write = landing
    write("applications_2026-09-01.csv", b"a,b\n1,2\n")
    write(".applications_2026-09-02.csv.tmp", b"half")  # a writer's hidden file: not listed
    (stat,) = watch.stat_landing_files(url).values()
    assert stat["size"] == 8 and isinstance(stat["mtime"], float) and stat["mtime"] > 0


def test_a_file_settles_after_one_unchanged_tick_and_unsettles_when_it_grows(landing):
    url, write = landing
    write("applications_2026-09-01.csv", b"a,b\n1,2\n")
    settled, state = watch.settle({}, watch.stat_landing_files(url), _sha)
    assert settled == {}  # new: it may still be being written
    settled, state = watch.settle(state, watch.stat_landing_files(url), _sha)
    (path,) = settled
    assert settled[path] == hashlib.sha256(b"a,b\n1,2\n").hexdigest()

    write("applications_2026-09-01.csv", b"a,b\n1,2\n3,4\n")  # the writer goes on
    settled, state = watch.settle(state, watch.stat_landing_files(url), _sha)
    assert settled == {}
    settled, _ = watch.settle(state, watch.stat_landing_files(url), _sha)
    assert settled[path] == hashlib.sha256(b"a,b\n1,2\n3,4\n").hexdigest()
