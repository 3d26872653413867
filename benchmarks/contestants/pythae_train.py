"""pythae's TrainingPipeline on the same model (runs in the peers' venv, see bench_train_speed).

Timed from the start of the training epoch to its end with pythae's own callbacks, so its
set-up, evaluation and model saving are not counted against it.
"""

from __future__ import annotations

import tempfile
import time

import torch
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainerConfig
from pythae.trainers.training_callbacks import TrainingCallback
from torch import nn

from contestants.common import BATCH, HIDDEN, LATENT, LR, load, parse_args, report


class Encoder(BaseEncoder):
    def __init__(self) -> None:
        super().__init__()
        h1, h2 = HIDDEN
        self.body = nn.Sequential(nn.Linear(784, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU())
        self.mu = nn.Linear(h2, LATENT)
        self.log_var = nn.Linear(h2, LATENT)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.body(x.reshape(x.shape[0], -1))
        return ModelOutput(embedding=self.mu(h), log_covariance=self.log_var(h))


class Decoder(BaseDecoder):
    def __init__(self) -> None:
        super().__init__()
        h1, h2 = HIDDEN
        self.body = nn.Sequential(
            nn.Linear(LATENT, h2),
            nn.ReLU(),
            nn.Linear(h2, h1),
            nn.ReLU(),
            nn.Linear(h1, 784),
            nn.Sigmoid(),  # pythae's "bce" loss takes probabilities
        )

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=self.body(z).reshape(z.shape[0], 1, 28, 28))


class EpochTimer(TrainingCallback):
    def __init__(self) -> None:
        self.start = self.stop = None

    def on_train_step_begin(self, training_config, **kwargs):
        self.start = time.perf_counter()

    def on_epoch_end(self, training_config, **kwargs):
        self.stop = time.perf_counter()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    x = torch.from_numpy(load(args.data)).reshape(-1, 1, 28, 28)
    model = VAE(
        VAEConfig(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce"),
        encoder=Encoder(),
        decoder=Decoder(),
    )
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(
            output_dir=out,
            num_epochs=1,
            learning_rate=LR,
            per_device_train_batch_size=BATCH,
            optimizer_cls="Adam",
            seed=args.seed,
            no_cuda=True,
        )
        timer = EpochTimer()
        TrainingPipeline(training_config=config, model=model)(train_data=x, callbacks=[timer])
    report("pythae 0.1.2 TrainingPipeline", x.shape[0], timer.stop - timer.start)


if __name__ == "__main__":
    main()
