"""Stores read over HTTP give the local results: a real ``http.server`` on loopback serves a
folder of stores built by test_storetools (complete and partial), once as Python ships it (no
Range support: every byte range comes back as the whole object) and once with Range support
(what nginx, S3 or the hub do). ``--storage-options`` must reach the server. ``memory://`` equality
is tested in test_analysis.py (analyze_store) and test_storetools.py (publish, open).
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import polars as pl
import polars.selectors as cs
import pytest

from analyze.cli import main as cli_main
from layercal.store.cli import main as store_main
from tests.layercal.store.fixtures import LAYOUT, build

HEADER = "X-Layercal-Test"


@dataclass
class Server:
    base: str
    seen: list[tuple[str, str | None, str | None, int]] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def statuses(self) -> set[int]:
        return {s for *_, s in self.seen}


class _Quiet(SimpleHTTPRequestHandler):
    """``python -m http.server``'s handler, recording (path, Range, test header, status)."""

    seen: list[tuple[str, str | None, str | None, int]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        self.seen.append((self.path, self.headers.get("Range"), self.headers.get(HEADER), code))
        super().send_response(code, message)


class _Ranged(_Quiet):
    """The same with single byte ranges (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) as 206."""

    def do_GET(self) -> None:
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
        path = Path(self.translate_path(self.path))
        if not m or not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        a, b = m.groups()
        lo = len(data) - int(b) if not a else int(a)
        hi = len(data) if not a or not b else int(b) + 1
        part = data[max(lo, 0) : hi]
        self.send_response(206)
        self.send_header(
            "Content-Range", f"bytes {max(lo, 0)}-{max(lo, 0) + len(part) - 1}/{len(data)}"
        )
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        self.wfile.write(part)


def _serve(root: Path, handler: type[_Quiet]) -> Iterator[Server]:
    server = Server("")
    cls = type("Handler", (handler,), {"seen": server.seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(cls, directory=str(root)))
    server.base = f"http://127.0.0.1:{httpd.server_port}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("www")
    build(root / "ref.zarr", range(LAYOUT.n_blocks))
    build(root / "part.zarr", [0, 2])  # unfinished: no consolidated metadata, zarr lists
    return root


@pytest.fixture(scope="module")
def plain(site) -> Iterator[Server]:
    yield from _serve(site, _Quiet)


@pytest.fixture(scope="module")
def ranged(site) -> Iterator[Server]:
    yield from _serve(site, _Ranged)


def _options(tag: str) -> list[str]:
    return ["--storage-options", json.dumps({"headers": {HEADER: tag}})]


def _analyze(store: str, out: Path, *extra: str) -> Path:
    argv = ["analyze", store, "--out", str(out), "--n-boot", "50", "--vocab-examples", "all"]
    assert cli_main([*argv, "--no-cache", *extra]) == 0
    return out


def _same_tables(a: Path, b: Path) -> None:
    assert (a / "layers.csv").read_bytes() == (b / "layers.csv").read_bytes()
    assert json.loads((a / "landmarks.json").read_text()) == json.loads(
        (b / "landmarks.json").read_text()
    )
    ga, gb = (pl.read_csv(d / "by_group.csv") for d in (a, b))
    assert ga.drop(cs.numeric()).equals(gb.drop(cs.numeric()))  # polars sums groups in parallel:
    np.testing.assert_allclose(*(g.select(cs.numeric()).to_numpy() for g in (ga, gb)), rtol=1e-12)
    with np.load(a / "reliability.npz") as ra, np.load(b / "reliability.npz") as rb:
        assert all(np.array_equal(ra[k], rb[k]) for k in ra.files)


def test_analyze_over_http_equals_local(site, plain, ranged, tmp_path, capsys):
    plain.seen.clear(), ranged.seen.clear()
    local = _analyze(str(site / "ref.zarr"), tmp_path / "local")
    _same_tables(_analyze(ranged.url("ref.zarr"), tmp_path / "ranged", *_options("r")), local)
    # the server without ranges, read by worker processes (the store object is pickled to them)
    via = _analyze(
        plain.url("ref.zarr"),
        tmp_path / "plain",
        *_options("p"),
        *("--scheduler", "processes", "--workers", "1", "--threads-per-worker", "1"),
    )
    _same_tables(via, local)
    assert {h for *_, h, _ in ranged.seen} == {"r"} and {h for *_, h, _ in plain.seen} == {"p"}
    assert json.loads((via / "meta.json").read_text())["store"] == plain.url("ref.zarr")
    assert "error" not in capsys.readouterr().err


def test_partial_reads_and_unconsolidated_stores_over_http(site, plain, ranged, capsys):
    """``summary`` reads one layer of each shard (byte ranges); an unfinished store has no
    consolidated metadata, so zarr lists the folder (http.server's HTML listing)."""
    for name, extra in (("ref.zarr", []), ("part.zarr", ["--allow-partial"])):
        assert cli_main(["summary", str(site / name), *extra]) == 0
        local = capsys.readouterr().out.split("\n", 1)[1]
        for server in (plain, ranged):
            assert cli_main(["summary", server.url(name), *extra, *_options("s")]) == 0
            assert capsys.readouterr().out.split("\n", 1)[1] == local
    assert 206 in ranged.statuses() and 206 not in plain.statuses()
    assert cli_main(["summary", plain.url("missing.zarr")]) == 1
    assert "no layercal store at" in capsys.readouterr().err


def test_store_info_and_verify_over_http(site, plain, capsys):
    plain.seen.clear()
    assert store_main(["store", "info", str(site / "ref.zarr"), "--json"]) == 0
    local = json.loads(capsys.readouterr().out)
    url = plain.url("ref.zarr")
    assert store_main(["store", "info", url, "--json", *_options("i")]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote.pop("store") == url and local.pop("store") == str(site / "ref.zarr")
    # an HTTP folder listing carries no object sizes: info asks each object's size (HEAD)
    assert remote == local
    assert store_main(["store", "verify", url, *_options("v")]) == 0
    assert f"verify {url}: OK" in capsys.readouterr().out
    assert {"i", "v"} <= {h for *_, h, _ in plain.seen}


def test_nullspace_direction_and_steer_over_http(site, plain, tmp_path, capsys):
    """The other analysis commands take the URL and --storage-options; outputs equal local."""
    plain.seen.clear()
    outs = {}
    for where, store in (("local", str(site / "ref.zarr")), ("http", plain.url("ref.zarr"))):
        o = tmp_path / where
        common = [store, *_options("n"), "--scheduler", "threads"]
        argv = ["nullspace", *common, "--out", str(o / "ns"), "--cache-dir", str(tmp_path / "svd")]
        assert cli_main([*argv, "--n-boot", "20", "--random", "1", "--layers", "2,4"]) == 0
        fit = ["direction", "fit", *common, "-o", str(o / "dir"), "--n-boot", "3", "--no-svd"]
        assert cli_main(fit) == 0
        steer = ["steer", *common, "--direction", str(o / "dir"), "--out", str(o / "steer")]
        assert cli_main([*steer, "--n-boot", "20", "--random", "1", "--no-nullspace"]) == 0
        outs[where] = o
    capsys.readouterr()
    for name in ("ns/ablation.csv", "steer/steering.csv", "steer/sweep.csv"):
        assert (outs["local"] / name).read_text() == (outs["http"] / name).read_text(), name
    with (
        np.load(outs["local"] / "dir/direction.npz") as a,
        np.load(outs["http"] / "dir/direction.npz") as b,
    ):
        assert all(np.array_equal(a[k], b[k]) for k in a.files)


def test_storage_options_must_be_a_json_object(capsys):
    for bad in ("{not json", "[1, 2]"):
        with pytest.raises(SystemExit) as e:
            cli_main(["summary", "http://127.0.0.1:9/x.zarr", "--storage-options", bad])
        assert e.value.code == 2
        assert "--storage-options" in capsys.readouterr().err
