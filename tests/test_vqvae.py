"""The VQ-VAE's codebook against a hand computation, its dead-code restart, its statistics,
and its honesty: no likelihood, no ELBO in anything it reports."""

from __future__ import annotations

import math

import pytest
import torch

import vaekit
import vaekit.cli
from vaekit.models import VQVAE, VQVAEConfig
from vaekit.models.vqvae import EMACodebook, code_statistics

pytestmark = pytest.mark.usefixtures("float64")


def codebook() -> EMACodebook:
    book = EMACodebook(codebook_size=3, code_dim=2, decay=0.5, threshold=0.3)
    with torch.no_grad():
        book.vectors.copy_(torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]))
        book.sums.copy_(book.vectors)
        book.usage.fill_(1.0)
    return book


def test_ema_update_equals_the_hand_computation():
    book = codebook()
    z_e = torch.tensor([[1.0, 0.0], [3.0, 1.0], [5.0, 1.0], [0.0, 1.0]])
    codes = book.assign(z_e)
    assert codes.tolist() == [0, 1, 1, 0]  # nearest: (1,0)->0, (3,1)->1, (5,1)->1, (0,1)->0
    book.update(z_e, codes)
    # By hand, g = 0.5: N = 0.5 * [1, 1, 1] + 0.5 * [2, 2, 0] = [1.5, 1.5, 0.5];
    # m_0 = 0.5 * (0, 0) + 0.5 * ((1, 0) + (0, 1)) = (0.5, 0.5)
    # m_1 = 0.5 * (4, 0) + 0.5 * ((3, 1) + (5, 1)) = (6, 1)
    # m_2 = 0.5 * (0, 4) + 0 = (0, 2); e_k = m_k / N_k.
    assert book.usage.tolist() == [1.5, 1.5, 0.5]
    assert book.sums.tolist() == [[0.5, 0.5], [6.0, 1.0], [0.0, 2.0]]
    expected = torch.tensor([[1 / 3, 1 / 3], [4.0, 2 / 3], [0.0, 4.0]])
    assert torch.allclose(book.vectors, expected, atol=1e-15)


def test_a_dead_code_restarts_at_an_encoder_output():
    book = codebook()
    z_e = torch.tensor([[1.0, 0.0], [3.0, 1.0]])
    for _ in range(2):  # code 2 is never used: N_2 = 1 -> 0.5 -> 0.25 < 0.3
        book.update(z_e, book.assign(z_e))
    assert book.usage[2] == 1.0  # restarted, with
    assert any(torch.equal(book.vectors[2], row) for row in z_e)  # a batch row as its vector
    assert torch.equal(book.sums[2], book.vectors[2])
    assert book.usage[0] > 0.3 and book.usage[1] > 0.3  # live codes are left alone


def test_code_statistics():
    stats = code_statistics(torch.tensor([0, 0, 1, 1]), codebook_size=4)
    assert stats["codebook_usage"] == 0.5
    assert stats["codebook_perplexity"] == pytest.approx(2.0, abs=1e-12)  # exp(log 2)
    uniform = code_statistics(torch.arange(8), codebook_size=8)
    assert uniform["codebook_perplexity"] == pytest.approx(8.0, abs=1e-12)


def test_straight_through_gradient_and_only_training_moves_the_codebook():
    torch.manual_seed(0)
    config = VQVAEConfig(
        num_latents=2, code_dim=3, codebook_size=4, hidden_dims=[8], likelihood="gaussian",
        data_shape=[5],
    )  # fmt: skip
    model = VQVAE(config).double()
    x = torch.randn(6, 5)
    before = model.codebook.vectors.clone()
    model.eval()
    model.training_loss(x)
    assert torch.equal(model.codebook.vectors, before)  # evaluation leaves it alone
    model.train()
    loss, metrics = model.training_loss(x)
    assert not torch.equal(model.codebook.vectors, before)
    loss.mean().backward()
    assert next(model.encoder.parameters()).grad.abs().sum() > 0  # through the quantiser
    assert all(not p.requires_grad for p in model.codebook.buffers())
    assert 1.0 <= float(metrics["codebook_perplexity"]) <= 4.0


def test_cli_train_and_evaluate_report_no_likelihood(tmp_path, capsys):
    run = tmp_path / "run"
    assert vaekit.cli.main([
        "train", "--model", "vqvae", "--data", "digits", "--max-steps", "5", "--device", "cpu",
        "--progress", "plain", "--set", "train.tensorboard=false",
        "--set", "model.hidden_dims=[32]", "--set", "model.codebook_size=16",
        "--out", str(run),
    ]) == 0  # fmt: skip
    capsys.readouterr()
    assert vaekit.cli.main(["evaluate", str(run), "--max-examples", "50", "--no-fcd"]) == 0
    out = capsys.readouterr().out
    assert "defines no likelihood" in out and "codebook" in out
    printed = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    assert not {"nll", "ELBO", "bits/dim", "KL"} & set(printed)  # no number it lacks
    result = vaekit.evaluate.evaluate(vaekit.load(run), vaekit.load_dataset("digits"), fcd=False)
    assert "nll" not in result and "elbo" not in result
    assert 1.0 <= result["codebook_perplexity"] <= 16 and math.isfinite(result["log_px_z"])
    page = (run / "report.html").read_text()
    assert "defines no likelihood p(x)" in page
