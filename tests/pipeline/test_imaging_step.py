"""The ``share-images`` step: a bundled CT slice shared 3-of-5 in covers, checked."""

import numpy as np
import pytest
from PIL import Image

from veil import pipeline
from veil.core.errors import ScenarioError
from veil.imaging.dicom import read_dicom, recover_dicom
from veil.imaging.images import read_share
from veil.imaging.stego import StegoError
from veil.pipeline.imaging_step import image_path

SCENARIO = """\
[scenario]
name = "images"

[[steps]]
id = "ct"
kind = "share-images"
{extra}
"""


def _run(tmp_path, extra="", out="out"):
    return pipeline.run(pipeline.parse(SCENARIO.format(extra=extra)), tmp_path / out)


def test_ct_slice_shared_in_sample_covers(tmp_path):
    (entry,) = _run(tmp_path).entries
    assert entry.guarantee == "input" and entry.numbers == {
        "k": 3,
        "n": 5,
        "min_psnr_db": pytest.approx(entry.numbers["min_psnr_db"]),
    }
    assert entry.numbers["min_psnr_db"] >= 45
    assert entry.evidence["checks"] == {
        "rebuilt_exactly_from_k": True,
        "k_minus_1_refused": True,
        "changed_share_named": True,
    }
    assert "PatientName" in entry.parameters["dicom_removed"]
    folder = tmp_path / "out/shares/ct"
    key = bytes.fromhex((tmp_path / "out/keys/ct.stego").read_text())
    shares = [read_share(folder / f"share-{i}.png", key) for i in (2, 4, 5)]
    ds, _ = recover_dicom(shares)
    _, pixels = read_dicom(image_path("pydicom:CT_small.dcm"))
    assert np.array_equal(ds.pixel_array, pixels) and "PatientName" not in ds
    assert not list(folder.glob("*.stego"))  # the key is not beside the shares
    assert "Shares hidden in covers (ct): PSNR" in (tmp_path / "out/report.html").read_text()


def test_a_png_image_and_a_folder_of_covers(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "covers").mkdir()
    for i in range(3):
        cover = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(cover).save(tmp_path / "covers" / f"c{i}.png")
    extra = f'image = "{tmp_path / "x.png"}"\nk = 2\nn = 3\ncovers = "{tmp_path / "covers"}"'
    (entry,) = _run(tmp_path, extra).entries
    assert entry.evidence["checks"]["rebuilt_exactly_from_k"]
    with pytest.raises(StegoError, match="holds 3 cover files; 4 are needed"):
        _run(tmp_path, extra.replace("n = 3", "n = 4"), "out4")


def test_bad_images_are_refused(tmp_path):
    with pytest.raises(ScenarioError, match="no such test file"):
        image_path("pydicom:nothing.dcm")
    with pytest.raises(ScenarioError, match="not found"):
        image_path(str(tmp_path / "none.png"))
    with pytest.raises(ScenarioError, match="k .4. cannot exceed n .3."):
        _run(tmp_path, "k = 4\nn = 3")
