"""The conditional VAE against an exact answer: with a linear-Gaussian decoder and the exact
posterior, every importance weight equals log p(x|y) (no Monte-Carlo error at all)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal

import vaekit
import vaekit.cli
from vaekit.config import apply_overrides
from vaekit.models import ConditionalVAE, CVAEConfig

pytestmark = pytest.mark.usefixtures("float64")
D, M, C = 5, 2, 3


class Flat(nn.Module):
    """Encoder body: features = x, ``[B, D]``."""

    out_features = D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def linear_cvae(prior: str):
    """x = W z + V_y + b + N(0, s^2 I), z|y ~ p(z|y) (N(0, I) or N(mu_y, diag(v_y))), with
    the exact Gaussian posterior set in the full-covariance head. Returns the model and the
    exact p(x|y) for each class as (mean [C, D], covariance [C, D, D])."""
    torch.manual_seed(0)
    config = CVAEConfig(
        latent_dim=M, hidden_dims=[D], network="mlp", posterior="full", prior=prior,
        num_classes=C, likelihood="gaussian", data_shape=[D],
    )  # fmt: skip
    model = ConditionalVAE(config, encoder=Flat(), decoder=nn.Linear(M + C, D)).double()
    W = model.decoder.weight[:, :M].detach()
    V = model.decoder.weight[:, M:].detach()  # [D, C]: the label's offset V_y
    b = model.decoder.bias.detach()
    if prior == "conditional":
        with torch.no_grad():  # a mean per class; one variance for all, so that the
            # exact posterior's mean stays linear in [x, one_hot(y)], as the head is
            model.conditional_prior.table.weight.normal_(0.0, 0.5)
            model.conditional_prior.table.weight[:, M:] = torch.tensor([0.4, -0.3])
        mu, log_var = model.conditional_prior.table.weight.detach().chunk(2, dim=-1)
    else:
        mu, log_var = torch.zeros(C, M), torch.zeros(C, M)
    head = model.posterior.head
    rows, cols = torch.tril_indices(M, M, offset=-1)
    means, covs = [], []
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        for c in range(C):
            prior_cov = torch.diag(log_var[c].exp())
            offset = V[:, c] + b + W @ mu[c]  # E[x|y=c]
            means.append(offset)
            covs.append(W @ prior_cov @ W.T + torch.eye(D))
            # p(z|x,y=c) = N(mu_c + S W^T (x - offset), S), S = (W^T W + prior_cov^-1)^-1
            S = torch.linalg.inv(W.T @ W + torch.linalg.inv(prior_cov))
            A = S @ W.T
            L = torch.linalg.cholesky(S)
            head.weight[:M, :D] = A
            head.weight[:M, D + c] = mu[c] - A @ offset
            head.weight[M : 2 * M, D + c] = L.diagonal().log()
            head.weight[2 * M :, D + c] = L[rows, cols]
    return model.eval(), torch.stack(means), torch.stack(covs)


@pytest.mark.parametrize("prior", ["standard-normal", "conditional"])
def test_every_importance_weight_is_the_exact_log_px_given_y(prior):
    model, means, covs = linear_cvae(prior)
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    x = MultivariateNormal(means[y], covs[y]).sample()
    exact = MultivariateNormal(means[y], covs[y]).log_prob(x)  # log p(x|y), [6]
    log_w = model.log_weights(x, 50, y=y)  # [50, 6]
    assert torch.allclose(log_w, exact.expand_as(log_w), atol=1e-9)
    assert torch.allclose(model.log_likelihood(x, 7, y=y), exact, atol=1e-9)
    # With the exact posterior the ELBO is tight too: KL(q || p(z|x,y)) = 0.
    elbo = torch.stack([model.elbo(x, y=y).elbo.detach() for _ in range(200)]).mean(0)
    assert torch.allclose(elbo, exact, atol=0.1)
    # The label is used: the same x under another label has another density.
    other = model.log_likelihood(x, 7, y=(y + 1) % C)
    assert not torch.allclose(other, exact, atol=1e-3)


def test_scores_are_the_exact_class_marginal_or_the_given_label_density():
    from vaekit.score import importance_scores

    model, means, covs = linear_cvae("conditional")
    y = torch.tensor([0, 1, 2, 2, 1])
    x = MultivariateNormal(means[y], covs[y]).sample()
    per_class = MultivariateNormal(means, covs).log_prob(x[:, None, :])  # log p(x|y), [5, C]
    marginal = importance_scores(model, x, num_samples=4, batch_size=2, chunk_size=3)
    # Every weight is exact, so p(x) = (1/C) sum_y p(x|y) is too, with no Monte-Carlo error.
    exact = torch.logsumexp(per_class, dim=1) - torch.log(torch.tensor(float(C)))
    assert torch.allclose(marginal.log_px, exact, atol=1e-9)
    assert torch.allclose(marginal.stderr, torch.zeros(5), atol=1e-6)
    assert torch.allclose(marginal.elbo, per_class.mean(dim=1), atol=1e-9)  # a bound below
    assert torch.equal(marginal.most_likely_class, per_class.argmax(dim=1))
    given = importance_scores(model, x, num_samples=4, batch_size=2, chunk_size=3, y=y)
    assert torch.allclose(given.log_px, per_class[torch.arange(5), y], atol=1e-9)


def test_labels_are_required_and_checked():
    model, _, _ = linear_cvae("standard-normal")
    x = torch.randn(2, D)
    with pytest.raises(ValueError, match="needs the labels"):
        model.elbo(x)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        model.elbo(x, y=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="labels"):
        model.sample(4)
    a = model.sample(4, torch.Generator().manual_seed(0), y=0)
    b = model.sample(4, torch.Generator().manual_seed(0), y=2)
    assert not torch.allclose(a, b)  # the same z, another class


def test_num_classes_comes_from_the_training_labels():
    config = apply_overrides(vaekit.Config(), ['model.kind="cvae"']).model
    config.fill_from_data(torch.tensor([0, 4, 2]))
    assert config.num_classes == 5
    with pytest.raises(ValueError, match="no integer labels"):
        CVAEConfig().fill_from_data(None)
    with pytest.raises(ValueError, match="label 7"):
        CVAEConfig(num_classes=3).fill_from_data(torch.tensor([7]))


def test_train_evaluate_and_sample_a_class_from_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    assert vaekit.cli.main([
        "train", "--model", "cvae", "--data", "digits", "--max-steps", "3", "--latent-dim",
        "2", "--hidden-dims", "16", "--network", "mlp", "--device", "cpu", "--progress",
        "plain", "--set", "train.tensorboard=false", "--set", 'model.prior="conditional"',
        "--out", str(run),
    ]) == 0  # fmt: skip
    model = vaekit.load(run)
    assert model.num_classes == 10 and model.config.prior == "conditional"
    assert vaekit.cli.main(["sample", str(run), "--label", "3", "-o", str(tmp_path / "3.png")]) == 0
    assert (tmp_path / "3.png").exists()
    assert (
        vaekit.cli.main(["sample", str(run), "--label", "10", "-o", str(tmp_path / "x.png")]) == 2
    )
    assert "classes 0..9" in capsys.readouterr().err
    assert vaekit.cli.main(
        ["evaluate", str(run), "--num-samples", "5", "--max-examples", "20", "--no-fcd"]
    ) == 0  # fmt: skip
    assert "-log p(x|y)" in capsys.readouterr().out
    # Decoding codes needs the class: E[x|z,y] differs between classes for the same z.
    np.save(tmp_path / "z.npy", np.zeros((4, 2)))
    decode = ["decode", str(run), str(tmp_path / "z.npy"), "-o"]
    assert vaekit.cli.main([*decode, str(tmp_path / "d.npy")]) == 2
    assert "decodes a class: give --label Y (0..9)" in capsys.readouterr().err
    assert vaekit.cli.main([*decode, str(tmp_path / "d.npy"), "--label", "10"]) == 2
    assert "--label 10: the model has classes 0..9" in capsys.readouterr().err
    assert not (tmp_path / "d.npy").exists()
    for label in ("3", "5"):
        assert vaekit.cli.main([*decode, str(tmp_path / f"d{label}.npy"), "--label", label]) == 0
    three, five = np.load(tmp_path / "d3.npy"), np.load(tmp_path / "d5.npy")
    assert three.shape == (4, 1, 8, 8) and not np.allclose(three, five)
    capsys.readouterr()
    # Scores of new data: the class-marginal density without labels, p(x|y) with them.
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.save(tmp_path / "x.npy", digits.images[:12])
    np.savez(tmp_path / "xy.npz", x=digits.images[:12], labels=digits.target[:12])
    out = tmp_path / "scores.csv"
    argv = ["score", str(run), "--num-samples", "4", "-o", str(out)]
    assert vaekit.cli.main([*argv, "--data", str(tmp_path / "x.npy")]) == 0
    printed = capsys.readouterr().out
    assert "log p(x) = log (1/C) sum_y p(x|y)" in printed and "C = 10" in printed
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 12 and all(0 <= int(r["most_likely_class"]) < 10 for r in rows)
    marginal = np.array([float(r["nll_nats"]) for r in rows])
    assert vaekit.cli.main([*argv, "--data", str(tmp_path / "xy.npz")]) == 0
    assert "log p(x|y) with the data's labels" in capsys.readouterr().out
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert "most_likely_class" not in rows[0]
    assert np.isfinite([float(r["nll_nats"]) for r in rows]).all() and np.isfinite(marginal).all()
    # Labels that are no classes of the model: one line naming the file, nothing written.
    out.unlink()
    for labels, message in [
        ([0.5] * 12, "class labels must be integers"),
        ([np.nan] * 12, "class labels must be integers"),
        ([0] * 11 + [12], "row 12 has class label 12; the model has classes 0..9"),
    ]:
        np.savez(tmp_path / "bad.npz", x=digits.images[:12], labels=np.array(labels))
        assert vaekit.cli.main([*argv, "--data", str(tmp_path / "bad.npz")]) == 2
        err = capsys.readouterr().err
        assert "bad.npz" in err and message in err and not out.exists()
