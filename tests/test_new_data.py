"""The new-data reader: shapes that reshape to the model's, tables matched by column name,
labels, and the scale check that refuses data on another scale (one line naming the file)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaekit.data import DataError
from vaekit.data.new_data import read_new_data
from vaekit.data.transforms import Dequantize, Standardize, Transform

DIGITS = {
    "shape": [1, 8, 8],
    "support": "unit-interval",
    "num_levels": 17,
    "transform": Dequantize(17).to_dict(),
}
RGB = {
    "shape": [3, 4, 4],
    "support": "unit-interval",
    "num_levels": 256,
    "transform": Dequantize(256).to_dict(),
}
BINARY = {"shape": [5], "support": "binary", "num_levels": 2, "transform": Transform().to_dict()}
TABLE = {
    "shape": [3],
    "support": "real",
    "columns": ["a", "b", "c"],
    "transform": Standardize([100.0, 0.0, -5.0], [10.0, 1.0, 2.0]).to_dict(),
}


@pytest.mark.parametrize("shape", [(6, 1, 8, 8), (6, 8, 8), (6, 64)])
def test_any_shape_that_reshapes_to_the_data_shape(tmp_path, shape):
    x = np.random.default_rng(0).integers(0, 17, shape)
    np.save(tmp_path / "x.npy", x)
    new = read_new_data(tmp_path / "x.npy", DIGITS)
    assert new.x.shape == (6, 1, 8, 8) and new.row_shape == shape[1:]
    assert torch.equal(new.x.reshape(6, -1), torch.from_numpy(x.reshape(6, -1)).double())


def test_a_single_example_and_wrong_shapes(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros((8, 8), np.uint8))
    assert read_new_data(tmp_path / "one.npy", DIGITS).x.shape == (1, 1, 8, 8)
    np.save(tmp_path / "bad.npy", np.zeros((4, 63), np.uint8))
    with pytest.raises(DataError, match=r"bad\.npy: expected rows of shape \[1, 8, 8\]"):
        read_new_data(tmp_path / "bad.npy", DIGITS)
    np.save(tmp_path / "last.npy", np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"last\.npy: array is channels-last \[2, 4, 4, 3\]"):
        read_new_data(tmp_path / "last.npy", RGB)


@pytest.mark.parametrize(
    ("info", "values", "message"),
    [
        (DIGITS, np.full((3, 64), 0.5), r"expected integer levels 0\.\.16 .*scaled to \[0, 1\]"),
        (
            DIGITS,
            np.full((3, 64), 255),
            r"expected integer levels 0\.\.16 .*values in \[255, 255\]",
        ),
        (DIGITS, np.eye(3, 64), r"every value is 0 or 1 .*--trust-scale"),
        (BINARY, np.full((3, 5), 0.3), r"expected binary values 0 or 1"),
        (TABLE, np.tile([1.0, 0.0, -5.0], (3, 1)), r"feature 1: typical value 1 lies 9\.9"),
        (TABLE, np.tile([500.0, 0.0, -5.0], (3, 1)), r"feature 1: typical value 500 lies 40\.0"),
    ],
)
def test_data_on_another_scale_is_refused(tmp_path, info, values, message):
    np.save(tmp_path / "v.npy", values)
    if "9\\.9" in message:  # 9.9 SDs away is still within FAR_SD = 10: accepted
        assert read_new_data(tmp_path / "v.npy", info).x.shape == (3, 3)
        return
    with pytest.raises(DataError, match=message) as info_:
        read_new_data(tmp_path / "v.npy", info)
    assert str(tmp_path / "v.npy") in str(info_.value)
    if "trust-scale" in message or "lies 40" in message:
        assert len(read_new_data(tmp_path / "v.npy", info, trust_scale=True)) == 3


def test_spread_in_other_units_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    rows = np.array([100.0, 0.0, -5.0]) + rng.normal(size=(50, 3)) * [10.0, 1.0, 2.0]
    np.save(tmp_path / "ok.npy", rows)
    assert len(read_new_data(tmp_path / "ok.npy", TABLE)) == 50
    outlier = rows.copy()
    outlier[0] = [1e4, 1e3, 1e3]  # one anomalous row: accepted (scoring it is the point)
    np.save(tmp_path / "one.npy", outlier)
    assert len(read_new_data(tmp_path / "one.npy", TABLE)) == 50
    np.save(tmp_path / "tiny.npy", rows * 0.001 + [100.0, 0.0, -5.0])  # spread 1000x smaller
    with pytest.raises(DataError, match=r"tiny\.npy: the features spread 0\.001 times"):
        read_new_data(tmp_path / "tiny.npy", TABLE)


def test_table_columns_by_name_and_ood_labels(tmp_path):
    (tmp_path / "t.csv").write_text("id,c,ood,a,b\n1,-5,0,100,0\n2,-4,1,110,1\n")
    new = read_new_data(tmp_path / "t.csv", TABLE)
    assert new.x.tolist() == [[100.0, 0.0, -5.0], [110.0, 1.0, -4.0]]
    assert new.ood.tolist() == [0, 1] and new.ignored_columns == ["id"]
    (tmp_path / "h.csv").write_text("100,0,-5\n")
    with pytest.raises(DataError, match=r"h\.csv: missing column\(s\) 'a', 'b', 'c' \(it has no "):
        read_new_data(tmp_path / "h.csv", TABLE)
    (tmp_path / "o.csv").write_text("a,b,c,ood\n100,0,-5,2\n")
    with pytest.raises(DataError, match=r"o\.csv: column 'ood' must hold 0 .* or 1"):
        read_new_data(tmp_path / "o.csv", TABLE)
    np.savez(tmp_path / "l.npz", x=np.zeros((2, 64), np.uint8), ood=np.array([1, 0]))
    assert read_new_data(tmp_path / "l.npz", DIGITS).ood.tolist() == [1, 0]


def test_transforms_map_back_to_the_data_and_state_their_change_of_variables():
    v = torch.tensor([[1.0, 20.0, -3.0]], dtype=torch.float64)
    standardize = Standardize([0.0, 10.0, -1.0], [2.0, 5.0, 0.5])
    torch.testing.assert_close(standardize.to_data(standardize(v).double()), v)
    assert standardize.log_data_scale((3,)) == pytest.approx(math.log(2.0 * 5.0 * 0.5))
    dequantize = Dequantize(17)
    levels = torch.arange(17, dtype=torch.float64)
    # E_u[x] = (v + 1/2) / L: mapped back, the levels themselves
    torch.testing.assert_close(dequantize.to_data((levels + 0.5) / 17), levels)
    assert dequantize.log_data_scale((1, 8, 8)) == pytest.approx(64 * math.log(17))
    assert Transform().log_data_scale((5,)) == 0.0
    assert "own units" in standardize.data_space() and "0..16" in dequantize.data_space()
