"""Scoring reconstructions: matching finds the pairing, PSNR/SSIM per image, report pixels."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.audit.reconstruction.scoring import PSNR_CAP, match, pixels, save_images, score, tv


@settings(max_examples=25, deadline=None)
@given(st.permutations(range(5)))
def test_match_undoes_any_order(order):
    true = torch.rand((5, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    found = match(true, true[list(order)] + 0.01)
    assert [order[j] for j in found] == list(range(5))


def test_score_of_exact_and_shifted_images():
    true = torch.rand((2, 3, 8, 8), generator=torch.Generator().manual_seed(0)) * 0.8
    s = score(true, true.flip(0))
    assert s["order"] == [1, 0] and s["psnr"] == [PSNR_CAP, PSNR_CAP]
    assert s["recovered_fraction"] == 1.0 and np.allclose(s["ssim"], 1.0)
    off = score(true, true + torch.tensor([0.1, 0.2]).view(2, 1, 1, 1))  # MSE 0.01, 0.04
    assert np.allclose(off["psnr"], [20.0, 13.9794], atol=1e-4)
    assert off["recovered_fraction"] == 0.0 and score(true, true + 0.09)["recovered_fraction"] == 1


def test_tv_of_flat_and_striped_images():
    assert float(tv(torch.full((1, 4, 4), 0.5))) == 0.0
    stripes = torch.tensor([[0.0, 1.0, 0.0, 1.0]]).repeat(4, 1)[None]
    assert float(tv(stripes)) == 1.0


def test_pixels_and_png(tmp_path):
    grey = pixels(torch.full((1, 2, 3), 0.5))
    rgb = pixels(torch.ones((3, 2, 3)))
    assert np.asarray(grey).shape == (2, 3) and grey[0][0] == 128
    assert np.asarray(rgb).shape == (2, 3, 3) and rgb[1][2] == [255, 255, 255]
    from PIL import Image

    save_images(
        [{"title": "a", "pixels": grey}, {"title": "b", "pixels": grey}], tmp_path / "x.png"
    )
    assert Image.open(tmp_path / "x.png").size == (6, 2)
