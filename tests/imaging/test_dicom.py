"""DICOM: exact pixel round trip on pydicom's bundled files; identifying tags removed by default."""

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from veil.cli.main import main
from veil.imaging.dicom import is_dicom, recover_dicom, share_dicom, write_dicom
from veil.imaging.shamir import ShareError

FILES = ["CT_small.dcm", "MR_small.dcm", "SC_rgb_small_odd.dcm"]


@pytest.mark.parametrize("name", FILES)
def test_round_trip_removes_identifying_tags(tmp_path, name):
    path = get_testdata_file(name, download=False)
    original = pydicom.dcmread(path)
    shares, removed = share_dicom(path, 2, 3)
    assert "PatientName" in removed
    ds, meta = recover_dicom([shares[2], shares[0]])
    back = pydicom.dcmread(write_dicom(tmp_path / "back.dcm", ds))
    assert back.pixel_array.dtype == original.pixel_array.dtype
    assert np.array_equal(back.pixel_array, original.pixel_array)
    assert "PatientName" not in back and "PatientID" not in back
    assert back.Modality == original.Modality and meta["removed"] == removed
    # the header travels inside the secret: no share holder sees a patient's name
    assert str(original.PatientName).encode() not in shares[0].to_bytes()


def test_keep_identifying_keeps_them(tmp_path):
    path = get_testdata_file("CT_small.dcm", download=False)
    shares, removed = share_dicom(path, 2, 2, keep_identifying=True)
    ds, _ = recover_dicom(shares)
    assert removed == [] and ds.PatientName == pydicom.dcmread(path).PatientName


def test_not_dicom(tmp_path):
    junk = tmp_path / "x.dcm"
    junk.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 10)
    assert is_dicom(junk) and not is_dicom(tmp_path / "none.dcm")
    with pytest.raises(ShareError, match="cannot read DICOM"):
        share_dicom(junk, 2, 3)


def test_cli_dicom(tmp_path, capsys):
    path = get_testdata_file("MR_small.dcm", download=False)
    assert main(["image", "share", path, "--k", "2", "--n", "3", "-o", str(tmp_path / "s")]) == 0
    assert "PatientName" in capsys.readouterr().out
    out = tmp_path / "back.dcm"
    assert (
        main(
            [
                "image",
                "recover",
                str(tmp_path / "s" / "share-1.vshare"),
                str(tmp_path / "s" / "share-3.vshare"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert np.array_equal(pydicom.dcmread(out).pixel_array, pydicom.dcmread(path).pixel_array)
