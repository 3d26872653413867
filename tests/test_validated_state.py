"""Validated state: saved files are checked before anything is built from them; results are
strict JSON; a run directory that cannot be written still shows its result; downloads end."""

from __future__ import annotations

import hashlib
import http.server
import json
import math
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import vaekit
from helpers import tiny
from vaekit import checkpoint
from vaekit.cli import main
from vaekit.data import DataError
from vaekit.data.download import download
from vaekit.data.registry import load_path
from vaekit.models import VAEConfig, build_model
from vaekit.training import train

torch.set_num_threads(1)
QUIET = {"log": lambda s: None}


@pytest.fixture
def saved(tmp_path) -> Path:
    config = VAEConfig(
        latent_dim=2, hidden_dims=[8], network="mlp", data_shape=[6], likelihood="gaussian"
    )
    return checkpoint.save_model(build_model(config), tmp_path / "m")


def rewrite_weights(path: Path, change) -> None:
    """Apply ``change`` to the weights dict, save it, and record the new hash (as a careful
    tamperer would), so only the check under test can catch it."""
    weights = path / "model.safetensors"
    tensors = load_file(weights)
    change(tensors)
    save_file(tensors, weights)
    descriptor = json.loads((path / "config.json").read_text())
    descriptor["weights"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps(descriptor))


def strict_json(text: str):
    def refuse(name):
        raise AssertionError(f"bare {name} in JSON")

    return json.loads(text, parse_constant=refuse)


# --- 5. a crafted config.json cannot make load allocate ---------------------------------------


def test_a_crafted_architecture_is_refused_before_anything_is_built(saved, monkeypatch):
    descriptor = json.loads((saved / "config.json").read_text())
    descriptor["model"]["hidden_dims"] = [10**9]  # 256 GB of weights, were it built
    (saved / "config.json").write_text(json.dumps(descriptor))
    devices = []
    real = checkpoint.build_model

    def building(*args, **kwargs):
        devices.append(torch.get_default_device().type)
        if devices[-1] != "meta":  # the real build would try to allocate: stop here
            raise AssertionError("the model was built before its shapes were checked")
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "build_model", building)
    with pytest.raises(vaekit.CheckpointError) as info:
        vaekit.load(saved)
    assert devices == ["meta"]
    message = str(info.value)
    assert str(saved / "model.safetensors") in message and "\n" not in message
    pattern = r"has shape \[8\], the model in .*config\.json needs \[1000000000\]"
    assert re.search(pattern, message), message


def test_a_header_claiming_more_bytes_than_the_file_has_is_refused(saved):
    weights = saved / "model.safetensors"
    blob = weights.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [10**6, 10**6]
    text = json.dumps(header).encode()
    weights.write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + n :])
    expected = f"tensor {name!r}: shape [1000000, 1000000] needs 4000000000000 bytes"
    with pytest.raises(vaekit.CheckpointError, match=re.escape(expected)):
        vaekit.load(saved)


# --- 6. weights of the wrong dtype --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.int32])
def test_a_tensor_of_the_wrong_dtype_is_refused_by_name(saved, dtype):
    def change(tensors):
        tensors["posterior.head.bias"] = tensors["posterior.head.bias"].to(dtype)

    rewrite_weights(saved, change)
    with pytest.raises(vaekit.CheckpointError) as info:
        vaekit.load(saved)
    message = str(info.value)
    assert message.startswith(f"{saved / 'model.safetensors'}: posterior.head.bias has dtype")
    assert str(dtype).removeprefix("torch.") in message and "\n" not in message


def test_float64_weights_are_converted_on_purpose_and_it_is_said(saved):
    before = vaekit.load(saved)

    def change(tensors):
        for key in tensors:
            tensors[key] = tensors[key].double()

    rewrite_weights(saved, change)
    with pytest.warns(
        UserWarning, match=r"model\.safetensors: float64 weights converted to float32"
    ):
        model = vaekit.load(saved)
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, before.state_dict()[key])


# --- 7. trainer.json: hashed and validated --------------------------------------------------------


def test_trainer_json_is_hashed_and_its_fields_are_checked(tiny_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    last = copy / "checkpoints" / "last"
    state = json.loads((last / "trainer.json").read_text())
    state["loop"]["step"] = -5
    blob = json.dumps(state).encode()
    (last / "trainer.json").write_bytes(blob)
    with pytest.raises(vaekit.CheckpointError, match=r"trainer\.json: SHA-256 does not match"):
        train(resume=copy, **QUIET)
    descriptor = json.loads((last / "config.json").read_text())
    descriptor["metadata"]["trainer_json_sha256"] = hashlib.sha256(blob).hexdigest()
    (last / "config.json").write_text(json.dumps(descriptor))
    with pytest.raises(vaekit.CheckpointError) as info:
        train(resume=copy, **QUIET)
    assert str(info.value) == f"{last / 'trainer.json'}: loop.step must be an integer >= 0, got -5"


@pytest.mark.parametrize(
    "field,value,message",
    [
        (("loop", "batch"), 1.5, "loop.batch must be an integer >= 0"),
        (("loop", "skipped_steps"), 10**6, "loop.skipped_steps must be <= loop.step"),
        (("loop", "best_epoch"), 7, "loop.best_epoch must be null or an epoch in 1..1"),
        (("world_size",), 0, "world_size must be an integer >= 1"),
        (("loop", "interval"), {"loss": "x"}, "loop.interval must be a table of numbers"),
    ],
)
def test_malformed_training_state_fields_are_named(field, value, message):
    from vaekit.training.state_files import check_training_state
    from vaekit.validate import StateError

    state = {
        "files": {},
        "loop": {"step": 11, "epoch": 1, "batch": 0, "epochs_without_improvement": 0,
                 "bad_steps": 0, "skipped_steps": 0, "metrics_bytes": 0, "best_val_elbo": -1.0,
                 "best_epoch": 1, "interval": {}, "epoch_sums": {}},
        "world_size": 1, "schedule": {}, "scaler": {}, "optimizer": {"param_groups": []},
    }  # fmt: skip
    check_training_state(state, "trainer.json")
    target = state
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    with pytest.raises(StateError, match=re.escape(f"trainer.json: {message}")):
        check_training_state(state, "trainer.json")


# --- 8. values near 1e200 --------------------------------------------------------------------


def test_huge_values_are_standardised_in_float64(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    table = np.stack([1e200 * (1 + 0.01 * rng.normal(size=n)), rng.normal(size=n)], axis=1)
    path = tmp_path / "big.csv"
    np.savetxt(path, table, delimiter=",", header="huge,small", comments="")
    data = load_path(path)
    x = data.transform(data.train.x)
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
    assert x.mean(0).abs().max() < 1e-3 and (x.std(0) - 1).abs().max() < 0.01
    config = tiny("train.max_steps=3", "model.hidden_dims=[8]", f"data.name='{path}'")
    result = train(config, out=tmp_path / "run", **QUIET)  # trains: nothing to blame on lr
    assert math.isfinite(result.history[-1]["val_elbo"])


def test_values_the_training_dtype_cannot_hold_are_a_data_error_naming_the_column(tmp_path):
    from vaekit.data.stored import TEST_SPLIT_SEED

    n = 200
    table = np.random.default_rng(1).normal(size=(n, 3))
    test_row = int(torch.randperm(n, generator=torch.Generator().manual_seed(TEST_SPLIT_SEED))[0])
    table[test_row, 2] = 1e200  # outside the training split: its standardised value is ~1e200
    path = tmp_path / "t.csv"
    np.savetxt(path, table, delimiter=",", header="a,b,price", comments="")
    with pytest.raises(DataError) as info:
        load_path(path)
    assert str(info.value).startswith(f"{path}: column 3 ('price'): values are not representable")


# --- 9 and 10. strict JSON; a read-only run directory ----------------------------------------


def test_eval_json_and_json_output_hold_null_with_a_reason(tiny_run_copy, capsys):
    argv = ["evaluate", str(tiny_run_copy), "--num-samples", "5", "--max-examples", "1", "--no-fcd"]
    assert main([*argv, "--json"]) == 0
    printed = strict_json(capsys.readouterr().out)
    saved = strict_json((tiny_run_copy / "eval.json").read_text())
    for result in (printed, saved):
        assert result["nll_stderr"] is None and math.isfinite(result["nll"])
        assert result["null_reasons"]["nll_stderr"] == "a standard error needs at least 2 examples"
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "note: nll_stderr is n/a: a standard error needs at least 2 examples" in out
    assert any("± n/a" in line and "nats per example" in line for line in out.splitlines())


def test_non_finite_numbers_become_null_with_the_reason():
    from vaekit.support.jsonsafe import dumps, finite_json

    result = finite_json({"a": float("nan"), "b": {"c": [1.0, float("inf")]}, "d": 2})
    assert result == {
        "a": None,
        "b": {"c": [1.0, None]},
        "d": 2,
        "null_reasons": {
            "a": "not a number (NaN): the computation was undefined or diverged",
            "b.c[1]": "+infinity: the computation overflowed",
        },
    }
    strict_json(dumps(result))


def read_only(monkeypatch):
    """Simulate a read-only run directory (the tests may run as root, who writes anyway)."""
    import errno

    def refuse(path, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    import vaekit.report.html as html
    from vaekit import rundir

    monkeypatch.setattr(rundir, "atomic_write_bytes", refuse)
    monkeypatch.setattr(checkpoint, "atomic_write_bytes", refuse)

    monkeypatch.setattr(html, "atomic_write_bytes", refuse)
    monkeypatch.setattr(html, "run_figures", lambda *a, **k: refuse(a[3] / "kl.png", b""))


def test_evaluate_in_a_read_only_run_prints_the_result_then_says_what_was_not_written(
    tiny_run_copy, monkeypatch, capsys
):
    read_only(monkeypatch)
    argv = ["evaluate", str(tiny_run_copy), "--num-samples", "5", "--max-examples", "20"]
    argv.append("--no-fcd")
    assert main(argv) == 0  # the evaluation succeeded; its record could not be kept
    captured = capsys.readouterr()
    assert "nats per example" in captured.out and "nll" in captured.out
    err = captured.err.strip().splitlines()[-1]  # after the progress lines
    assert err == (
        f"vaekit: warning: eval.json not written ([Errno 13] Permission denied: "
        f"'{tiny_run_copy / 'eval.json'}'); the result above is complete"
    )
    assert main([*argv, "--json"]) == 0
    assert strict_json(capsys.readouterr().out)["num_examples"] == 20


def test_report_in_a_read_only_run_prints_the_evaluation_then_fails_naming_the_file(
    tiny_run_copy, monkeypatch, capsys
):
    (tiny_run_copy / "eval.json").unlink(missing_ok=True)
    read_only(monkeypatch)
    assert main(["report", str(tiny_run_copy), "--num-samples", "5", "--max-examples", "20"]) == 2
    captured = capsys.readouterr()
    assert "evaluation (test split, 20 examples):" in captured.out
    assert "nll:" in captured.out and "nats per example" in captured.out
    assert f"report: {tiny_run_copy / 'eval.json'} not written" in captured.out
    err = captured.err.strip()
    assert err.startswith("vaekit: error: [Errno 13] report not written: Permission denied")
    assert str(tiny_run_copy / "figures" / "kl.png") in err and "\n" not in err


# --- 11. downloads: an overall deadline and a progress bar -----------------------------------


class Trickle:
    """A 127.0.0.1 HTTP server sending ``body`` one byte every ``pause`` seconds."""

    def __init__(self, body: bytes, pause: float) -> None:
        self.stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for i in range(len(body)):
                    if server.stop.wait(pause):
                        return
                    try:
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data.bin"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_trickling_server_fails_within_the_deadline(tmp_path):
    server = Trickle(b"x" * 1000, pause=0.2)
    outcome = {}

    def fetch():
        start = time.monotonic()
        try:
            download(server.url, tmp_path / "data.bin", progress=False, timeout=30, deadline=1.5)
        except DataError as exc:
            outcome["error"] = str(exc)
        outcome["seconds"] = time.monotonic() - start

    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(timeout=10)
    server.close()
    # Without the deadline the trickle takes 200 s: ending within the join's 10 s is the proof
    # (no tighter wall-clock bound, which a loaded machine could break).
    assert not worker.is_alive(), "the download ignored its deadline"
    assert outcome["seconds"] >= 1.5  # it did not give up before the deadline
    message = outcome["error"]
    assert message.startswith(f"{server.url}: not finished within the 1.5 s download deadline")
    assert "\n" not in message and "of 1000 bytes received" in message
    assert (tmp_path / "data.bin.part").exists() and not (tmp_path / "data.bin").exists()


def test_a_download_shows_a_progress_bar_on_stderr(tmp_path, capsys):
    server = Trickle(b"y" * 20, pause=0.0)
    try:
        download(server.url, tmp_path / "data.bin", progress=True)
    finally:
        server.close()
    err = capsys.readouterr().err
    assert "data.bin" in err and "100%" in err and "20.0/20.0" in err
    assert (tmp_path / "data.bin").read_bytes() == b"y" * 20


def test_a_checkpoint_whose_weights_do_not_fit_the_model_is_one_line(tiny_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)

    def change(tensors):
        tensors["posterior.head.bias"] = torch.zeros(7)

    rewrite_weights(copy / "checkpoints" / "last", change)
    assert main(["train", "--resume", str(copy), "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "posterior.head.bias has shape [7], the model in" in err and "\n" not in err
