"""Centre crops: fastMRI's window and the DC-keeping one, on torch tensors and numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gleam_mri.crop import center_crop, center_slices


def test_windows_differ_only_for_even_full_and_odd_size() -> None:
    for n in range(1, 12):
        for s in range(1, n + 1):
            (fastmri,) = center_slices((n,), (s,))
            (dc,) = center_slices((n,), (s,), keep_dc=True)
            assert fastmri.start == (n - s) // 2 and dc.start == n // 2 - s // 2
            assert (fastmri != dc) == (n % 2 == 0 and s % 2 == 1)


def test_keep_dc_puts_the_centre_sample_at_the_window_centre() -> None:
    x = np.arange(10)
    assert center_crop(x, (3,), keep_dc=True).tolist() == [4, 5, 6]  # DC 5 at index 3 // 2
    assert center_crop(x, (3,)).tolist() == [3, 4, 5]


def test_torch_and_numpy_give_the_same_view_on_chosen_axes() -> None:
    x = torch.arange(2 * 7 * 6 * 5).reshape(2, 7, 6, 5)
    got = center_crop(x, (4, 3), axes=(1, -1), keep_dc=True)
    assert got.shape == (2, 4, 6, 3) and got.data_ptr() >= x.data_ptr()  # a view
    np.testing.assert_array_equal(got.numpy(), center_crop(x.numpy(), (4, 3), (1, -1), True))
    assert torch.equal(center_crop(x, (6, 5)), x)


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"cannot crop an image of shape \(3, 4\) to \(4, 4\)"):
        center_crop(torch.zeros(3, 4), (4, 4))
    with pytest.raises(ValueError, match="differ in length"):
        center_crop(torch.zeros(3, 4), (2, 2), axes=(0,))
