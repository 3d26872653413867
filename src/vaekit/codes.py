"""Encode, decode and reconstruct new data with a saved model, in the user's units.

* ``encode_array``: data in any format ``train`` reads (image folder, ``.npy``/``.npz``,
  CSV/Parquet; see :mod:`vaekit.data.new_data`), on the training data's scale (e.g. the
  0..16 levels of ``digits``, a table in its own units) -> posterior means E_q[z|x]
  ``[N, m]``. The run's saved preprocessing (``config.json`` -> ``data.transform``) is
  applied first, with a fixed seed where it is stochastic (dequantisation noise); data on
  another scale is refused. ``preprocessed=True`` takes ``.npy`` model inputs as they are.
  Optionally also ``log Sigma_jj(x)`` ``[N, m]`` and one draw z ~ q(z|x) ``[N, m]``.
* ``decode_array``: codes ``[N, m]`` -> decoder means E[x|z] mapped back to the data's
  units (``Transform.to_data``): a table's own columns and units, images' levels.
* ``reconstruct_data``: new data -> E[x | z = mu(x)] in the data's units, written like the
  input (CSV in, CSV out; ``.npy`` in, ``.npy`` out, rows in the input's shape; an image
  folder in, 8-bit PNGs of the same names out), or as the output's suffix asks.

Codes are written as ``.npy`` (float32, rows in the input's order) or, for a
``.csv``/``.parquet`` output, as columns ``row`` (from 0), ``file`` (an image folder's file,
relative to the folder) and z1..zm; ``decode`` reads such a table's z columns back. Every file
is written atomically; nothing is pickled.

The run-level functions take their arguments in one order, as ``vaekit.evaluate.evaluate_run``
and ``vaekit.score.score_run`` do: ``(run, data, output, *, options)``.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from vaekit.checkpoint import load
from vaekit.data.errors import DataError
from vaekit.data.new_data import NewData, read_codes, read_new_data
from vaekit.data.splits import native_order
from vaekit.data.transforms import run_transform
from vaekit.data.writers import csv_bytes, printable, write_data, write_npy
from vaekit.impute import write_decoded_rows
from vaekit.outputs import check_outputs
from vaekit.rundir import atomic_write_bytes
from vaekit.support.spelling import arg, renamed_keywords, spell


def _write_codes(path: str | Path, codes: torch.Tensor, names: list[str] | None = None) -> Path:
    """Codes ``[N, m]`` as ``.npy``, or a table of ``row``, ``file`` (where ``names``, an
    image folder's files, are given) and z1..zm."""
    path = Path(path)
    array = codes.detach().cpu().double().numpy()
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return write_npy(path, array)
    if suffix not in (".csv", ".parquet"):
        raise DataError(f"-o {path}: codes are written as .npy, .csv or .parquet")
    z = [f"z{j + 1}" for j in range(array.shape[1])]
    ids: dict[str, list] = {"row": list(range(array.shape[0]))}
    if names is not None:
        ids["file"] = [printable(name) for name in names]
    if suffix == ".csv":
        rows = [[*ids, *z]]
        for i, values in enumerate(array):
            rows.append([str(column[i]) for column in ids.values()] + [f"{v:.9g}" for v in values])
        atomic_write_bytes(path, csv_bytes(rows))
        return path
    pa, pq = _pyarrow(path)
    columns = {name: pa.array(values) for name, values in ids.items()}
    columns |= {name: pa.array(array[:, j]) for j, name in enumerate(z)}
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _pyarrow(path: Path):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: Parquet needs pyarrow: pip install 'vaekit[parquet]'") from None
    return pa, pq


def _batched(
    fn, x: torch.Tensor, batch_size: int, y: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """``fn(x_batch, y_batch)`` over batches of rows (``y_batch`` None without labels),
    outputs concatenated."""
    outputs = [
        fn(x[i : i + batch_size], None if y is None else y[i : i + batch_size])
        for i in range(0, x.shape[0], batch_size)
    ]
    return [torch.cat(parts) for parts in zip(*outputs, strict=True)]


def labels_for(model, new: NewData) -> torch.Tensor | None:
    """The class labels a conditional model needs for new data (None for other models)."""
    if not model.takes_labels:
        return None
    if new.labels is None:
        column = (model.data_info or {}).get("label_column")
        where = f"the label column {column!r}" if column else "a .npz labels array"
        raise DataError(
            f"{new.path}: model {model.name!r} is conditioned on class labels, and this data "
            f"has none ({where})"
        )
    outside = ((new.labels < 0) | (new.labels >= model.num_classes)).nonzero()
    if len(outside):
        i = int(outside[0, 0])
        raise DataError(
            f"{new.path}: row {i + 1} has class label {int(new.labels[i])}; the model has "
            f"classes 0..{model.num_classes - 1}"
        )
    return new.labels


def model_inputs(model, new: NewData, seed: int = 0, preprocessed: bool = False) -> torch.Tensor:
    """The model's inputs for new data: the run's transform applied once with ``seed``."""
    dtype = next(model.parameters()).dtype
    if preprocessed:
        return new.x.to(dtype)
    transform = run_transform(model.data_info)
    return transform(new.x, torch.Generator().manual_seed(seed)).to(dtype)


def _read_preprocessed(path: Path, shape: tuple[int, ...]) -> NewData:
    """``--preprocessed``: a ``.npy`` of model inputs, reshaped as new data is, unchecked."""
    if path.suffix.lower() != ".npy":
        raise DataError(f"{path}: --preprocessed takes a .npy array of model inputs")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        array = native_order(np.load(path, allow_pickle=False))
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    d = math.prod(shape)
    if array.ndim < 2 or math.prod(array.shape[1:]) != d or array.shape[0] == 0:
        raise DataError(
            f"{path}: expected an array of shape [N, {', '.join(map(str, shape))}] "
            f"(or [N, {d}]), got {list(array.shape)}"
        )
    x = torch.from_numpy(np.ascontiguousarray(array).reshape(array.shape[0], *shape))
    return NewData(path, x, "array", ".npy", tuple(array.shape[1:]))


@renamed_keywords(
    input_path="data", output_path="output", log_var_path="log_var", sample_path="sample"
)
@torch.no_grad()
def encode_array(
    run: str | Path,
    data: str | Path,
    output: str | Path,
    *,
    log_var: str | Path | None = None,
    sample: str | Path | None = None,
    preprocessed: bool = False,
    seed: int = 0,
    batch_size: int = 1000,
    trust_scale: bool = False,
    unknown_categories: str = "error",
) -> list[Path]:
    """Write posterior means (and optionally log-variances and a draw) of ``data``'s rows to
    ``output`` (``log_var``, ``sample``); a table output names each row's source (see the
    module doc). ``unknown_categories``: :func:`vaekit.data.tables.encode`'s."""
    input_path, output_path, log_var_path, sample_path = data, output, log_var, sample
    outputs = {"output": output_path, "log_var": log_var_path, "sample": sample_path}
    check_outputs(outputs, inputs=[run, input_path])
    model = load(run)
    if not model.has_posterior:
        raise ValueError(
            f"{run}: encode needs a posterior q(z|x) over a continuous code; model "
            f"{model.name!r} has none"
        )
    if preprocessed:
        new = _read_preprocessed(Path(input_path), model.data_shape)
    else:
        new = read_new_data(
            input_path,
            model.data_info,
            trust_scale=trust_scale,
            columns=model.config.columns,
            unknown_categories=unknown_categories,
        )
    x = model_inputs(model, new, seed, preprocessed)
    dtype = x.dtype
    generator = torch.Generator().manual_seed(seed)

    def encode(xb: torch.Tensor, yb: torch.Tensor | None):
        q = model.encode(xb, y=yb)
        eps = torch.randn(q.mean.shape, generator=generator, dtype=dtype)
        draw = q.mean + (eps.unsqueeze(-2) @ q.scale_tril.transpose(-1, -2)).squeeze(-2)
        return q.mean, q.variance.log(), draw

    mean, log_variance, draw = _batched(encode, x, batch_size, labels_for(model, new))
    written = [_write_codes(output_path, mean, new.names)]
    if log_var_path is not None:
        written.append(_write_codes(log_var_path, log_variance, new.names))
    if sample_path is not None:
        written.append(_write_codes(sample_path, draw, new.names))
    return written


def check_label(model, label: int | None) -> None:
    """Refuse a class ``label`` (``--label``) that ``model`` has not: a model without
    classes takes none, a conditional one takes 0..C-1. None passes."""
    if label is None:
        return
    if not model.takes_labels:
        raise ValueError(f"{arg('label')}: model {model.name!r} is not conditioned on labels")
    if not 0 <= label < model.num_classes:
        raise ValueError(f"{arg('label', label)}: the model has classes 0..{model.num_classes - 1}")


@renamed_keywords(input_path="codes", output_path="output")
@torch.no_grad()
def decode_array(
    run: str | Path,
    codes: str | Path,
    output: str | Path,
    *,
    batch_size: int = 1000,
    label: int | None = None,
) -> Path:
    """Write E[x|z] in the data's units for codes ``[N, m]`` read from ``codes`` (``.npy``
    or a table: its z1..zm columns where it names them) to ``output``, whose suffix picks
    the format (see :func:`write_data`). A conditional model decodes E[x|z,y] for the class
    ``label``, which it needs."""
    input_path, output_path = codes, output
    check_outputs({"output": output_path}, inputs=[run, input_path])
    model = load(run)
    if not model.has_continuous_latent:
        raise ValueError(f"{run}: model {model.name!r} has no continuous code to decode")
    if model.takes_labels and label is None:
        raise ValueError(
            f"{run}: model {model.name!r} decodes a class: give {spell('--label Y', 'label=Y')} "
            f"(0..{model.num_classes - 1})"
        )
    check_label(model, label)
    codes = read_codes(input_path, model.latent_dim)
    z = torch.from_numpy(np.ascontiguousarray(codes)).to(next(model.parameters()).dtype)
    y = None if label is None else torch.full((z.shape[0],), label, dtype=torch.long)
    if model.config.columns:  # a mixed-type table: rows in its own types
        return write_decoded_rows(model, z, output_path, y=y)
    (mean,) = _batched(lambda zb, yb: (model.decode_mean(zb, y=yb),), z, batch_size, y)
    info = model.data_info or {"shape": list(model.data_shape)}
    return write_data(output_path, run_transform(info).to_data(mean), info)


@renamed_keywords(input_path="data", output_path="output")
@torch.no_grad()
def reconstruct_data(
    run: str | Path,
    data: str | Path,
    output: str | Path,
    *,
    seed: int = 0,
    batch_size: int = 1000,
    trust_scale: bool = False,
    unknown_categories: str = "error",
) -> Path:
    """Write E[x | z = mu(x)] of ``data`` in the data's units to ``output`` (see the module
    doc; ``unknown_categories``: :func:`vaekit.data.tables.encode`'s)."""
    input_path, output_path = data, output
    check_outputs({"output": output_path}, inputs=[run, input_path])
    model = load(run)
    columns = model.config.columns
    new = read_new_data(
        input_path,
        model.data_info,
        trust_scale=trust_scale,
        columns=columns,
        unknown_categories=unknown_categories,
    )
    x = model_inputs(model, new, seed)
    y = labels_for(model, new)
    if columns:  # a mixed-type table: E[v|z] at the posterior mean, in its own types
        (z,) = _batched(lambda xb, yb: (model.encode(xb, y=yb).mean,), x, batch_size, y)
        return write_decoded_rows(model, z, output_path, y=y)
    (mean,) = _batched(lambda xb, yb: (model.reconstruct(xb, y=yb),), x, batch_size, y)
    info = model.data_info or {"shape": list(model.data_shape)}
    return write_data(
        output_path, run_transform(info).to_data(mean), info, new.row_shape, new.names
    )
