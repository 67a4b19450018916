"""`data download` against a PhysioNet-shaped loopback server built from ../shared/data."""

from __future__ import annotations

import hashlib
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmark.data.cinc2017 import CinC2017
from benchmark.data.base import PrepareParams
from benchmark.data.download import PHYSIONET_URL_ENV, download
from benchmark.errors import DataError, UserError


class RangeHandler(BaseHTTPRequestHandler):
    """Static files from ``server.root`` with ``Range: bytes=N-`` / ``bytes=N-M`` support."""

    def do_GET(self):  # noqa: N802 (http.server naming)
        rng = self.headers.get("Range")
        self.server.requests.append((self.path, rng))
        path = (self.server.root / self.path.lstrip("/")).resolve()
        if self.server.root not in path.parents or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        if rng:
            start_s, _, end_s = rng.removeprefix("bytes=").partition("-")
            start = int(start_s)
            end = int(end_s) if end_s else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path):
    root = (tmp_path / "physionet").resolve()
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.root = root
    httpd.requests = []
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def publish(db: Path, files: dict[str, Path], wrong: set[str] = frozenset()) -> None:
    """Copy ``files`` (remote path -> source) under ``db`` and write its SHA256SUMS.txt."""
    lines = []
    for rel, src in files.items():
        dst = db / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
        digest = sha(dst.read_bytes())
        if rel in wrong:
            digest = sha(b"not this file")
        lines.append(f"{digest} {rel}")
    (db / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def mitdb_server(server, data_root):
    files = {f"100.{ext}": data_root / "mitdb" / f"100.{ext}" for ext in ("hea", "dat", "atr")}
    publish(server.root / "mitdb" / "1.0.0", files)
    return server, files


def file_requests(server) -> list[tuple[str, str | None]]:
    return [r for r in server.requests if not r[0].endswith("SHA256SUMS.txt")]


def test_round_trip_and_skip_of_verified_files(mitdb_server, tmp_path):
    server, files = mitdb_server
    out = download("mitdb", tmp_path / "dl", base_url=server.url, progress=False, timeout=10)
    assert out == tmp_path / "dl" / "mitdb"
    for rel, src in files.items():
        assert (out / rel).read_bytes() == src.read_bytes()
    assert not list(out.glob("*.part"))
    assert len(file_requests(server)) == 3
    server.requests.clear()
    download("mitdb", tmp_path / "dl", base_url=server.url, progress=False, timeout=10)
    assert file_requests(server) == []  # everything present and verified: nothing fetched again


def test_resume_partial_file_with_range_request(mitdb_server, tmp_path, data_root):
    server, files = mitdb_server
    out = tmp_path / "dl" / "mitdb"
    out.mkdir(parents=True)
    full = (data_root / "mitdb" / "100.dat").read_bytes()
    (out / "100.dat.part").write_bytes(full[:300_000])
    download("mitdb", tmp_path / "dl", base_url=server.url, progress=False, timeout=10)
    assert ("/mitdb/1.0.0/100.dat", "bytes=300000-") in server.requests
    assert (out / "100.dat").read_bytes() == full
    assert not (out / "100.dat.part").exists()


def test_checksum_failure_names_file_and_leaves_nothing(server, data_root, tmp_path):
    files = {f"100.{ext}": data_root / "mitdb" / f"100.{ext}" for ext in ("hea", "atr")}
    publish(server.root / "mitdb" / "1.0.0", files, wrong={"100.atr"})
    with pytest.raises(DataError) as exc:
        download("mitdb", tmp_path / "dl", base_url=server.url, progress=False, workers=1, timeout=10)
    msg = str(exc.value)
    assert "\n" not in msg and "100.atr" in msg and "checksum" in msg
    out = tmp_path / "dl" / "mitdb"
    assert not (out / "100.atr").exists() and not (out / "100.atr.part").exists()
    assert (out / "100.hea").read_bytes() == (data_root / "mitdb" / "100.hea").read_bytes()


def test_cinc2017_layout_is_flattened_and_loads(server, data_root, tmp_path, monkeypatch):
    src = data_root / "cinc2017"
    recs = {"A00001": "A00", "A01001": "A01"}
    files = {f"training/{d}/{r}.{e}": src / f"{r}.{e}" for r, d in recs.items() for e in ("hea", "mat")}
    labels = tmp_path / "v3.csv"
    labels.write_text("A00001,N\nA01001,A\n")
    files["REFERENCE-v3.csv"] = labels
    files["training2017.zip"] = src / "A00001.mat"  # stands in for the archive: must not be fetched
    publish(server.root / "challenge-2017" / "1.0.0", files)
    monkeypatch.setenv(PHYSIONET_URL_ENV, server.url.rstrip("/"))  # base URL from the environment
    out = download("cinc2017", tmp_path / "dl", progress=False, timeout=10)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["A00001.hea", "A00001.mat", "A01001.hea", "A01001.mat", "REFERENCE.csv"]
    )
    assert not any(p.endswith(".zip") for p, _ in server.requests)
    p = PrepareParams()
    scan = CinC2017.scan(CinC2017.root(tmp_path / "dl", p), p)
    assert scan.meta.drop_duplicates("record")["label"].tolist() == ["N", "A"]
    x = CinC2017.read_group(out, scan.meta.iloc[:3], p)
    assert x.shape == (3, 1, 1000)


def test_unknown_database_and_network_failure(tmp_path, server):
    with pytest.raises(UserError) as exc:
        download("mitbd", tmp_path, progress=False)
    assert "mitdb" in str(exc.value) and "ptbxl" in str(exc.value)
    # nothing published on the server: SHA256SUMS.txt is a 404
    with pytest.raises(UserError) as exc:
        download("ptbxl", tmp_path, base_url=server.url, progress=False, timeout=5)
    msg = str(exc.value)
    assert "\n" not in msg and "ptb-xl/1.0.3/SHA256SUMS.txt" in msg and "re-run" in msg
    # connection refused: a port with no server behind it
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(UserError) as exc:
        download("mitdb", tmp_path, base_url=f"http://127.0.0.1:{port}/", progress=False, timeout=5)
    assert f"127.0.0.1:{port}" in str(exc.value) and "re-run" in str(exc.value)


def test_cli_download_round_trip_and_error(mitdb_server, tmp_path):
    import subprocess
    import sys

    server, files = mitdb_server
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "benchmark", "data", "download", "mitdb", "--to", str(tmp_path / "dl")]
    done = subprocess.run(cmd + ["--base-url", server.url], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for rel, src in files.items():
        assert (tmp_path / "dl" / "mitdb" / rel).read_bytes() == src.read_bytes()
    bad = subprocess.run(cmd + ["--base-url", server.url + "nothing/"], cwd=root, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: download of") and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr
