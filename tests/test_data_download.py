"""Downloads against a local HTTP server on 127.0.0.1: success, checksum mismatch, a connection
dropped mid-file (and resumed), offline. No other network is touched."""

import gzip
import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest

from vaekit.data import DataError, load_dataset
from vaekit.data import builtin as builtin_module
from vaekit.data import sources as sources_module
from vaekit.data.download import download
from vaekit.data.idx import write_idx


class Server:
    """A threaded HTTP server serving ``files`` (name -> bytes). ``drop``: names whose response
    is cut after half the bytes; ``requests``: (path, Range header) of each request."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if name in server.drop:
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty user cache, no VAEKIT_DATA_DIR and no system paths."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    monkeypatch.delenv("VAEKIT_MIRROR", raising=False)
    monkeypatch.setattr(sources_module, "SYSTEM_ROOTS", [tmp_path / "system"])
    return tmp_path / "cache" / "vaekit"


@pytest.fixture(scope="module")
def fake_idx_set():
    """A structurally valid MNIST-format set (60000/10000 images, labels 0..9), gzipped;
    its content is not MNIST's, so MNIST's hashes must reject it."""
    rng = np.random.default_rng(0)
    train = np.zeros((60000, 28, 28), np.uint8)
    train[:, 14, 14] = np.arange(60000) % 256  # a recognisable pixel
    files = {
        "train-images-idx3-ubyte.gz": write_idx(train),
        "train-labels-idx1-ubyte.gz": write_idx(rng.integers(0, 10, 60000).astype(np.uint8)),
        "t10k-images-idx3-ubyte.gz": write_idx(np.full((10000, 28, 28), 7, np.uint8)),
        "t10k-labels-idx1-ubyte.gz": write_idx(rng.integers(0, 10, 10000).astype(np.uint8)),
    }
    return {name: gzip.compress(blob, compresslevel=1) for name, blob in files.items()}


def test_download_success_fills_the_cache(server, isolated, fake_idx_set, monkeypatch):
    server.files.update(fake_idx_set)
    monkeypatch.setenv("VAEKIT_MIRROR", server.url)
    md5 = {
        key: hashlib.md5(fake_idx_set[f"{stem}.gz"]).hexdigest()
        for key, (stem, _, _) in builtin_module.IDX_FILES.items()
    }
    for _key, _value in md5.items():
        monkeypatch.setitem(
            builtin_module.KMNIST.file_md5, _key, _value
        )  # the fake set's "published" MD5s
    data = load_dataset("kmnist", val_fraction=0.0, progress=False)
    assert data.shape == (1, 28, 28) and len(data.train) == 60000 and len(data.test) == 10000
    assert data.train.x[:, 0, 14, 14].tolist() == [i % 256 for i in range(60000)]
    assert bool((data.test.x == 7).all())
    cached = sorted(p.name for p in (isolated / "kmnist").iterdir())
    assert cached == sorted(fake_idx_set)  # complete files only, no .part left
    monkeypatch.setitem(builtin_module.KMNIST.file_md5, "test_y", "0" * 32)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: checksum mismatch"):
        load_dataset("kmnist", progress=False)  # a cached file is verified again before use
    monkeypatch.setitem(builtin_module.KMNIST.file_md5, "test_y", md5["test_y"])
    served = len(server.requests)
    load_dataset("kmnist", progress=False)  # found in the cache: nothing downloaded again
    assert len(server.requests) == served


def test_checksum_mismatch_leaves_nothing_in_the_cache(server, isolated, fake_idx_set):
    server.files.update(fake_idx_set)
    with pytest.raises(DataError, match=r"checksum mismatch.*download discarded") as info:
        load_dataset("mnist", mirrors=[server.url], progress=False)
    assert server.url + "train-images-idx3-ubyte.gz" in str(info.value)
    assert not (isolated / "mnist").exists() or not any((isolated / "mnist").iterdir())


def test_cifar_download_checked_against_the_published_md5(server, isolated):
    server.files["cifar-10-binary.tar.gz"] = b"not the CIFAR-10 archive"
    with pytest.raises(DataError, match=r"MD5 [0-9a-f]{32}, expected c32a1d4ab5d03f1284b678"):
        load_dataset("cifar10", mirrors=[server.url], progress=False)
    assert server.requests == [("cifar-10-binary.tar.gz", None)]
    assert not any((isolated / "cifar10").iterdir())  # no archive, no .part


def test_dropped_connection_keeps_only_a_part_file_then_resumes(server, tmp_path):
    body = bytes(range(256)) * 400
    server.files["blob.bin"] = body
    server.drop.add("blob.bin")
    dest = tmp_path / "cache" / "blob.bin"
    with pytest.raises(DataError, match=r"connection dropped after 51200 of 102400 bytes"):
        download(server.url + "blob.bin", dest, progress=False)
    assert not dest.exists()
    part = dest.with_name("blob.bin.part")
    assert part.read_bytes() == body[:51200]
    server.drop.clear()
    seen = []
    download(server.url + "blob.bin", dest, check=lambda p: seen.append(p.stat().st_size))
    assert dest.read_bytes() == body and not part.exists()
    assert server.requests[-1] == ("blob.bin", "bytes=51200-")  # asked only for the rest
    assert seen == [len(body)]  # the check saw the complete file before the rename


def test_failed_check_discards_the_download(server, tmp_path):
    server.files["f.bin"] = b"abc"
    dest = tmp_path / "f.bin"

    def reject(path):
        raise DataError("checksum mismatch: nope")

    with pytest.raises(DataError, match="checksum mismatch"):
        download(server.url + "f.bin", dest, check=reject, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_offline_error_lists_every_place_looked(isolated, tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("VAEKIT_MIRROR", f"http://127.0.0.1:{port}/")
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", data_dir=str(tmp_path / "mine"), progress=False)
    message = str(info.value)
    assert "\n" not in message
    for place in (
        f"{tmp_path / 'mine'} (data_dir)",
        f"{tmp_path / 'mine' / 'fashion-mnist'} (data_dir)",
        f"{tmp_path / 'env'} (VAEKIT_DATA_DIR)",
        f"{isolated / 'fashion-mnist'} (user cache)",
        f"{tmp_path / 'system' / 'fashion-mnist'} (system path)",
        f"http://127.0.0.1:{port}/train-images-idx3-ubyte.gz: cannot connect",
    ):
        assert place in message
