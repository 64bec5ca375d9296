"""DICOM files to shares and back: pixel data and the (de-identified) header, exactly.

The secret is the pixel array's bytes followed by the DICOM header as DICOM JSON (without
PixelData), so the header is protected by the same threshold as the pixels. By default the
identifying attributes listed in :data:`IDENTIFYING` (a subset of DICOM PS3.15's Basic
Profile: names, IDs, dates, times, institution, device) and all private tags are removed
before sharing; the names of what was removed (never the values) are reported and kept in
the shares' metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from veil.imaging.shamir import Share, ShareError, combine, split

DICOM_DTYPES = {"uint8", "uint16", "int16"}
IDENTIFYING = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex",
    "PatientAge", "PatientAddress", "PatientTelephoneNumbers", "OtherPatientIDs",
    "OtherPatientNames", "PatientMotherBirthName", "EthnicGroup", "ReferringPhysicianName",
    "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord", "RequestingPhysician",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "DeviceSerialNumber", "AccessionNumber", "StudyID", "StudyDate", "SeriesDate",
    "AcquisitionDate", "ContentDate", "StudyTime", "SeriesTime", "AcquisitionTime",
    "ContentTime",
)  # fmt: skip


def is_dicom(path: str | Path) -> bool:
    """Whether ``path`` starts like a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def read_dicom(path: str | Path):
    """A DICOM dataset whose pixels can be decoded here (uncompressed or a supported codec)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except (InvalidDicomError, OSError, AttributeError, ValueError, RuntimeError) as e:
        raise ShareError(f"cannot read DICOM pixels from {path}: {e}") from e
    if str(pixels.dtype) not in DICOM_DTYPES:
        raise ShareError(f"{path}: {pixels.dtype} pixels are not supported ({DICOM_DTYPES})")
    return ds, pixels


def share_dicom(
    path: str | Path, k: int, n: int, keep_identifying: bool = False
) -> tuple[list[Share], list[str]]:
    """Share a DICOM file; returns the shares and the names of the attributes removed."""
    ds, pixels = read_dicom(path)
    removed = []
    if not keep_identifying:
        removed = [name for name in IDENTIFYING if name in ds]
        for name in removed:
            delattr(ds, name)
        if any(elem.tag.is_private for elem in ds):
            ds.remove_private_tags()
            removed.append("(private tags)")
    header = ds.copy()
    del header.PixelData
    header_json = json.dumps(header.to_json_dict()).encode()
    meta = {"kind": "dicom", "shape": list(pixels.shape), "dtype": str(pixels.dtype),
            "header_bytes": len(header_json), "removed": removed}  # fmt: skip
    secret = np.ascontiguousarray(pixels).tobytes() + header_json
    return split(secret, k, n, meta), removed


def recover_dicom(shares: list[Share]):
    """The DICOM dataset (pixels and header) from at least k shares, and the metadata."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    rec = combine(shares)
    meta = rec.meta
    if meta.get("kind") != "dicom":
        raise ShareError("these shares do not hold a DICOM file")
    cut = len(rec.secret) - int(meta["header_bytes"])
    pixels = np.frombuffer(rec.secret[:cut], dtype=np.dtype(meta["dtype"])).reshape(meta["shape"])
    ds = pydicom.Dataset.from_json(rec.secret[cut:].decode())
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.7")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", pydicom.uid.generate_uid())
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    return ds, {**meta, "used": rec.used, "rejected": rec.rejected}


def write_dicom(path: str | Path, ds) -> Path:
    """Write a dataset as a DICOM Part 10 file (atomically)."""
    import io

    from veil.core.io import atomic_write

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return atomic_write(path, buf.getvalue())
