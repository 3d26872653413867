"""The flags of the commands that read data: ``datasets``, ``pack``, and those that take new
data to a trained run's model (``encode``, ``decode``, ``score``, ``impute``)."""

from __future__ import annotations

from pathlib import Path

from vaekit.cli.common import image_size, names, trust_scale_flag, unknown_categories_flag
from vaekit.cli.flags import nonnegative_int, positive_float, positive_int, real, seed_int


def add_datasets_parser(commands) -> None:
    """`vaekit datasets`: the registry and where the files are."""
    p = commands.add_parser(
        "datasets",
        help="list the registered datasets and where their files are",
        description="Registered datasets: shape (C x H x W), size in examples, support of the "
        "model inputs, the default likelihood, and where files that pass their published "
        "checksums were found (nothing is downloaded; a copy that fails is shown as not "
        "verified and is refused by train). `vaekit train --data` also takes a path to "
        "user data: an image folder, .npy, .npz, .csv or .parquet.",
    )
    p.add_argument("--data-dir", help="also look for the files here first (default: none)")


def add_encode_parser(commands) -> None:
    """`vaekit encode`: posterior means of new data."""
    p = commands.add_parser(
        "encode",
        help="encode new data: posterior means E_q[z|x] [N, m] to a .npy or .csv file",
        description="Encode new data on the training data's scale (the run's saved "
        "preprocessing is applied; data on another scale is refused) into posterior means "
        "[N, m]. Reads what train reads: an image folder, .npy/.npz (any shape whose rows "
        "reshape to the data shape), .csv/.parquet (columns matched by name).",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("input", type=Path, nargs="?", metavar="DATA", help="the same as --data")
    p.add_argument(
        "--data",
        type=Path,
        help="the data to encode: an image folder, .npy/.npz array or .csv/.parquet table "
        "(default: none; give it here or as DATA)",
    )
    p.set_defaults(data_alias="input")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help=".npy (or .csv: z1..zm) for the means"
    )
    p.add_argument(
        "--log-var",
        type=Path,
        help=".npy/.csv file for log Sigma_jj(x) [N, m] (default: none, not written)",
    )
    p.add_argument(
        "--sample",
        type=Path,
        help=".npy/.csv file for one draw z ~ q(z|x) [N, m] (default: none, not written)",
    )
    trust_scale_flag(p)
    unknown_categories_flag(p)
    p.add_argument(
        "--preprocessed",
        action="store_true",
        help="the input is already model input (skip the saved preprocessing)",
    )
    p.add_argument(
        "--seed", type=seed_int, default=0, help="seed of dequantisation noise and draws"
    )


def add_decode_parser(commands) -> None:
    """`vaekit decode`: codes back to the data's units."""
    p = commands.add_parser(
        "decode",
        help="decode codes [N, m] into decoder means E[x|z] in the data's units",
        description="Decode codes [N, m] into E[x|z] in the data's own units: a table "
        "un-standardised with its column names (.csv/.parquet), arrays on the input's scale "
        "(.npy; e.g. grey levels 0..255), or 8-bit PNGs (a new folder name as -o).",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument("input", type=Path, help="codes [N, m]: .npy, or a .csv/.parquet of m columns")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help=".csv, .parquet, .npy or a new folder"
    )
    p.add_argument(
        "--label",
        type=nonnegative_int,
        help="the class to decode for a conditional model (--model cvae), which needs one: "
        "E[x|z,y] for every code (default: none; a model without classes takes none)",
    )


def add_score_parser(commands) -> None:
    """`vaekit score`: per-example anomaly scores of new data."""
    p = commands.add_parser(
        "score",
        help="per-example anomaly scores of new data (-log p(x), -ELBO, reconstruction error)",
        description="Write one CSV row per example of new data: importance-sampled -log p(x) "
        "of the data as given (nats) with its Monte-Carlo standard error, -ELBO, the squared "
        "reconstruction error in the data's units, and the chosen remedy's score; higher = "
        "more out-of-distribution. With labels (an 'ood' column or .npz array of 0/1, or "
        "image sub-folders in/ and out/) it reports AUROC and AUPRC of every score. A "
        "conditional model (--model cvae) scores -log p(x|y) where the data bring class labels, "
        "else the class-marginal -log p(x) = -log (1/C) sum_y p(x|y) (C times the draws).",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument(
        "--data", type=Path, required=True, help="image folder, .npy/.npz, .csv/.parquet"
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help="CSV file to write, one row per example (default: none: print the summary only)",
    )
    p.add_argument(
        "--num-samples", type=positive_int, default=100, help="K per example (default 100)"
    )
    p.add_argument(
        "--remedy",
        default="none",
        choices=["none", "complexity", "typicality"],
        help="also a score that corrects the likelihood's known failure: complexity (Serrà et "
        "al. 2020: -log2 p(x) minus the PNG-compressed size in bits; images) or typicality "
        "(|nll - mean nll of in-distribution data|, Nalisnick et al. 2019)",
    )
    p.add_argument(
        "--reference",
        type=Path,
        help="typicality: in-distribution reference data (default: the run's validation split)",
    )
    p.add_argument("--ood-column", default="ood", help="label column / .npz array (default ood)")
    p.add_argument(
        "--ood-classes",
        type=names,
        help="image sub-folders that are out-of-distribution, comma-separated (default: none)",
    )
    p.add_argument(
        "--max-examples", type=positive_int, help="score only the first N rows (default: all)"
    )
    p.add_argument("--batch-size", type=positive_int, default=100, help="examples per batch")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    trust_scale_flag(p)
    unknown_categories_flag(p)


def add_impute_parser(commands) -> None:
    """``vaekit impute``: the missing cells of a mixed-type table, filled by the run's model."""
    p = commands.add_parser(
        "impute",
        help="fill the missing cells of a mixed-type table (importance-weighted, MIWAE)",
        description="Fill the missing cells of a table with a run trained on a mixed-type "
        "table: K draws z ~ q(z|observed cells), importance-weighted (Mattei & Frellsen 2019); "
        "a real, positive, zero-inflated or count cell gets its posterior-predictive mean (a "
        "count rounded, an ordinal the level nearest it; "
        "each draw's mean held to the column's training range), "
        "a binary or categorical cell its most probable category. Observed cells are copied "
        "as read; column names, order and category strings are kept.",
    )
    p.add_argument("run", type=Path, help="run or model directory")
    p.add_argument(
        "--data", type=Path, required=True, help="the table (.csv/.parquet) with missing cells"
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="the filled table (.csv)")
    p.add_argument(
        "--num-samples",
        type=positive_int,
        default=100,
        help="K importance samples per row (default 100)",
    )
    p.add_argument(
        "--draws",
        type=positive_int,
        help="write N multiple imputations instead, OUTPUT-1.csv ... OUTPUT-N.csv, each cell "
        "drawn from the importance-resampled posterior predictive (default: none, the means)",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the draws (default 0)")
    unknown_categories_flag(p)


def add_pack_parser(commands) -> None:
    """`vaekit pack`: decode a source once into streamed .npy or WebDataset tar shards."""
    p = commands.add_parser(
        "pack",
        help="decode data once into .npy shards that training streams (--data DIR)",
        description="Load SOURCE as `vaekit train --data SOURCE` would (a built-in set, an image "
        "folder, an array, a table), make its train/validation/test split once, and write each "
        "split as .npy (or WebDataset tar) shards with a pack.json (split, transform, per-shard "
        "SHA-256). Train and evaluate then stream the shards: memory stays bounded whatever the "
        "data's "
        "size. An interrupted pack is resumed by running the same command again. "
        "`vaekit pack --verify DIR` checks every shard's checksum.",
    )
    p.add_argument(
        "source", help="what to pack: a dataset name or a path (as train's --data) (required)"
    )
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        help="the pack folder to create, required unless --verify (default: none)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="SOURCE is a pack: check its shards' checksums (default: off)",
    )
    p.add_argument(
        "--shard-mb", type=positive_float, default=64.0, help="MiB per shard (default 64)"
    )
    p.add_argument(
        "--format",
        choices=["npy", "webdataset"],
        default="npy",
        help="npy: SPLIT-00000.npy shards of rows; webdataset: SPLIT/shard-000000.tar with "
        "KEY.npy + KEY.cls per example, which WebDataset tools read (default npy)",
    )
    p.add_argument(
        "--data-dir",
        help="where a built-in set's files are looked for first (default: the standard places)",
    )
    p.add_argument(
        "--val-fraction",
        type=real(0.0, maximum=0.99),
        default=0.1,
        help="validation share (default 0.1)",
    )
    p.add_argument("--split-seed", type=seed_int, default=0, help="seed of the split (default 0)")
    p.add_argument(
        "--image-size",
        type=image_size,
        help="H,W to resize an image folder to (default: as stored)",
    )
    p.add_argument(
        "--label-column", help="a table's column of integer class labels (default: none)"
    )
