"""What the engines on a trained run share: decoder calls sized to a memory budget
(``chunking``), the importance-sampled log p(x) with its chunks compiled where a long
evaluation pays for it (``importance``), statistics of the latent space
(``latent_statistics``), the space, unit and standard error of a likelihood figure
(``likelihood_space``) and the references a headline nll is read against (``references``).
``vaekit.evaluate`` is the engine that uses them all."""
