"""Clinical outputs of a magnitude volume: NIfTI, a DICOM series (MR Image Storage), a PNG montage.

Volumes are real, finite and non-negative (magnitude), float, one of:

- ``(S, H, W)``: 2D slices (``kind="2d"``);
- ``(S, Z, H, W)``: ``S`` slabs of ``Z`` partitions (``kind="3d"``), stacked as ``S * Z`` slices;
- ``(S, T, H, W)``: ``S`` slices of ``T`` cine frames (``kind="cine"``).

Voxel sizes ``voxel_size_mm = (dx, dy, dz)`` follow NIfTI's axes: ``dx`` between columns (along
W, phase encoding), ``dy`` between rows (along H, readout), ``dz`` between slices.
:func:`voxel_size_from_header` derives them from an ISMRMRD header dict.

Geometry: no scanner position / orientation is known here, so both formats place the volume in
one voxel-aligned frame with the first voxel at the origin. DICOM (patient LPS): rows run along
+x, columns along +y, slice ``k`` at ``z = k * dz`` (``ImageOrientationPatient = [1,0,0,0,1,0]``,
an axial stack displayed as the PNG). NIfTI (RAS) stores the data as ``(x=W, y=H, z=slices[, t])``
with the diagonal affine ``diag(-dx, -dy, dz)``: the very same physical points as the DICOM
series, so viewers show both in the same orientation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gleam_mri.atomic import atomic_path

_KINDS = ("2d", "3d", "cine")
_UINT16_MAX = 65535
_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def _as_volume(volume: Any, kind: str | None) -> tuple[np.ndarray, str]:
    """Validate; returns ``(S, N, H, W)`` float32 (``N`` = 1, partitions or frames) and the kind."""
    data = np.asarray(volume)
    if np.iscomplexobj(data):
        raise TypeError("output volumes must be real magnitude images; pass np.abs(volume)")
    if not np.issubdtype(data.dtype, np.number):
        raise TypeError(f"output volumes must be numeric, got dtype {data.dtype}")
    if kind is None:
        if data.ndim == 4:
            raise ValueError(f"pass kind='3d' or 'cine' for a 4-axis volume, got {data.shape}")
        kind = "2d"
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    want = 3 if kind == "2d" else 4
    if data.ndim != want or min(data.shape) < 1:
        names = "(S, H, W)" if kind == "2d" else "(S, Z|T, H, W)"
        raise ValueError(f"a {kind} volume must be {names} with no empty axis, got {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError("output volume contains NaN or inf")
    if (data < 0).any():
        raise ValueError("output volume has negative values; expected a magnitude image")
    data = data.astype(np.float32)
    return (data[:, None] if kind == "2d" else data), kind


def _spacing(voxel_size_mm: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(v) for v in voxel_size_mm)
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"voxel_size_mm must be three positive sizes (dx, dy, dz), got {values}")
    return values  # type: ignore[return-value]


def voxel_size_from_header(header: dict[str, Any]) -> tuple[float, float, float]:
    """``(dx, dy, dz)`` in mm from an ISMRMRD header dict (``parse_ismrmrd_header``).

    ISMRMRD's ``x`` is the readout (H) and ``y`` the phase encoding (W), so
    ``dx = fov_y / n_y``, ``dy = fov_x / n_x``, ``dz = fov_z / n_z`` (the slice thickness in 2D,
    the partition thickness in 3D). Uses ``recon_fov_mm`` / ``recon_size``, else the encoding
    ones. Cropping does not change voxel size, so these hold for a cropped reconstruction too.
    """
    for fov_key, size_key in (("recon_fov_mm", "recon_size"), ("encoding_fov_mm", "encoding_size")):
        fov, size = header.get(fov_key), header.get(size_key)
        if fov and size and all(f > 0 for f in fov) and all(n > 0 for n in size):
            return (fov[1] / size[1], fov[0] / size[0], fov[2] / size[2])
    raise ValueError("header has no usable field of view and matrix size (recon or encoding)")


def write_nifti(
    path: str | Path,
    volume: np.ndarray,
    voxel_size_mm: Sequence[float] = (1.0, 1.0, 1.0),
    kind: str | None = None,
    frame_time_s: float = 1.0,
) -> Path:
    """NIfTI-1 (``.nii`` or ``.nii.gz``) of a magnitude volume, float32, written atomically.

    Data axes ``(x=W, y=H, z=slices)`` plus ``t`` = frames for cine (``frame_time_s`` apart);
    affine ``diag(-dx, -dy, dz)`` (see the module docstring). Returns the path.
    """
    import nibabel as nib

    data, kind = _as_volume(volume, kind)
    dx, dy, dz = _spacing(voxel_size_mm)
    s, n, h, w = data.shape
    if kind == "cine":
        array = np.transpose(data, (3, 2, 0, 1))  # (W, H, S, T)
    else:
        array = np.transpose(data.reshape(s * n, h, w), (2, 1, 0))  # (W, H, slices)
    affine = np.diag([-dx, -dy, dz, 1.0])
    image = nib.Nifti1Image(np.ascontiguousarray(array), affine)
    image.header.set_xyzt_units("mm", "sec")
    if kind == "cine":
        image.header.set_zooms((dx, dy, dz, float(frame_time_s)))
    image.set_qform(affine, code=2)
    image.set_sform(affine, code=2)
    target = Path(path)
    if not target.name.endswith((".nii", ".nii.gz")):
        raise ValueError(f"{target}: NIfTI file names end in .nii or .nii.gz")
    suffix = ".nii.gz" if target.name.endswith(".nii.gz") else ".nii"  # nibabel reads it
    with atomic_path(target, suffix=suffix) as tmp:
        nib.save(image, str(tmp))
    return target


def _dicom_dataset(
    meta: dict[str, Any], pixels: np.ndarray, position: Sequence[float], number: int
) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    sop_uid = generate_uid()
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = _MR_IMAGE_STORAGE
    file_meta.MediaStorageSOPInstanceUID = sop_uid
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = file_meta
    for key, value in meta.items():
        setattr(ds, key, value)
    ds.SOPClassUID = _MR_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [f"{v:.6g}" for v in position]
    ds.SliceLocation = f"{position[2]:.6g}"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return ds


def write_dicom_series(
    folder: str | Path,
    volume: np.ndarray,
    voxel_size_mm: Sequence[float],
    series_description: str,
    patient_name: str = "Anonymous",
    patient_id: str = "GLEAM",
    kind: str | None = None,
    frame_time_ms: float | None = None,
    series_number: int = 1,
    overwrite: bool = False,
) -> list[Path]:
    """One MR Image Storage file per slice (and frame), ``IM_00001.dcm``, ...; returns the paths.

    Pixels are 16-bit unsigned; one ``RescaleSlope`` for the whole series maps them back to the
    float magnitude (``value = stored * slope``, error at most ``slope / 2``). ``PixelSpacing``
    is ``[dy, dx]`` (row, column spacing); ``SliceThickness`` and ``SpacingBetweenSlices`` are
    ``dz``; positions advance by ``dz`` along the slice normal ``+z``. All files share the Study,
    Series and FrameOfReference UIDs. Cine frames of one slice share its position and carry
    ``TemporalPositionIdentifier`` (and ``TriggerTime`` if ``frame_time_ms`` is given). A
    folder already holding ``.dcm`` files raises ``FileExistsError`` unless ``overwrite``
    (which removes this writer's ``IM_*.dcm`` files first).
    """
    from pydicom.uid import generate_uid
    from pydicom.valuerep import format_number_as_ds

    data, kind = _as_volume(volume, kind)
    dx, dy, dz = _spacing(voxel_size_mm)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    old = sorted(out.glob("*.dcm"))
    if old and not overwrite:
        raise FileExistsError(f"{out}: already holds {len(old)} .dcm files (pass overwrite=True)")
    for stale in out.glob("IM_*.dcm"):
        stale.unlink()

    vmax = float(data.max())
    slope = float(format_number_as_ds(vmax / _UINT16_MAX)) if vmax > 0 else 1.0
    now = dt.datetime.now()
    s, n, _, _ = data.shape
    slices = data.reshape(s * n, *data.shape[2:]) if kind == "3d" else data
    meta: dict[str, Any] = {
        "PatientName": patient_name,
        "PatientID": patient_id,
        "PatientBirthDate": "",
        "PatientSex": "",
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "StudyDate": now.strftime("%Y%m%d"),
        "StudyTime": now.strftime("%H%M%S"),
        "StudyID": "1",
        "AccessionNumber": "",
        "ReferringPhysicianName": "",
        "Modality": "MR",
        "Manufacturer": "gleam-mri",
        "SeriesNumber": series_number,
        "SeriesDescription": series_description,
        "ImageType": ["DERIVED", "PRIMARY", "M"],
        "ScanningSequence": "RM",
        "SequenceVariant": "NONE",
        "ScanOptions": "",
        "MRAcquisitionType": "3D" if kind == "3d" else "2D",
        "RepetitionTime": "",
        "EchoTime": "",
        "EchoTrainLength": "",
        "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
        "PositionReferenceIndicator": "",
        "PixelSpacing": [format_number_as_ds(dy), format_number_as_ds(dx)],
        "SliceThickness": format_number_as_ds(dz),
        "SpacingBetweenSlices": format_number_as_ds(dz),
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "BitsAllocated": 16,
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": 0,
        "RescaleIntercept": "0",
        "RescaleSlope": format_number_as_ds(slope),
        "RescaleType": "US",
        "WindowCenter": format_number_as_ds(vmax / 2 or 0.5),
        "WindowWidth": format_number_as_ds(vmax or 1.0),
    }
    if kind == "cine":
        meta["NumberOfTemporalPositions"] = n
    paths = []
    frames = n if kind == "cine" else 1
    for index in range(slices.shape[0] * frames):
        k, t = divmod(index, frames)
        image = slices[k, t] if kind == "cine" else slices[k].reshape(slices.shape[-2:])
        stored = np.rint(image.astype(np.float64) / slope)
        stored = np.clip(stored, 0, _UINT16_MAX).astype(np.uint16)
        ds = _dicom_dataset(meta, stored, (0.0, 0.0, k * dz), index + 1)
        if kind == "cine":
            ds.TemporalPositionIdentifier = t + 1
            if frame_time_ms is not None:
                ds.TriggerTime = format_number_as_ds(t * float(frame_time_ms))
        target = out / f"IM_{index + 1:05d}.dcm"
        with atomic_path(target) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        paths.append(target)
    return paths


def write_png(path: str | Path, volume: np.ndarray, max_images: int = 8) -> Path:
    """PNG montage of up to ``max_images`` evenly spaced 2D images of a ``(..., H, W)`` volume."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    data = np.asarray(volume)
    if np.iscomplexobj(data) or data.ndim < 2 or min(data.shape) < 1:
        raise ValueError(f"write_png needs a real (..., H, W) volume, got {data.dtype}{data.shape}")
    if not np.isfinite(data).all():
        raise ValueError("output volume contains NaN or inf")
    images = data.reshape(-1, *data.shape[-2:])
    picks = np.linspace(0, len(images) - 1, min(max_images, len(images))).round().astype(int)
    fig = Figure(figsize=(2.5 * len(picks), 2.7))
    vmax = float(np.percentile(images, 99.5)) or 1.0
    for j, index in enumerate(picks):
        ax = fig.add_subplot(1, len(picks), j + 1)
        ax.imshow(images[index], cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(f"{index}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return target


OUTPUT_FORMATS = ("h5", "nii", "png", "dcm")


def write_outputs(
    volume: np.ndarray,
    stem: str,
    out_dir: str | Path,
    formats: tuple[str, ...],
    header: dict,
    kind: str = "2d",
) -> list[Path]:
    """Write a magnitude volume ``(S, H, W)`` or ``(S, Z|T, H, W)`` as HDF5 / NIfTI / PNG / DICOM.

    Voxel sizes come from the header's field of view and matrix (1 mm when it has none). DICOM
    goes to the folder ``OUT/<stem>_dicom/``, one file per slice (and frame). Returns the paths.
    """
    unknown = set(formats) - set(OUTPUT_FORMATS)
    if unknown:
        raise ValueError(f"unknown output formats {sorted(unknown)}; valid: {OUTPUT_FORMATS}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        voxel = voxel_size_from_header(header)
    except ValueError:
        voxel = (1.0, 1.0, 1.0)
    volume_kind = None if kind == "2d" else kind
    written = []
    if "h5" in formats:
        target = out / f"{stem}.h5"
        with atomic_path(target) as tmp, h5py.File(tmp, "w") as hf:
            hf.create_dataset("reconstruction", data=volume)
        written.append(target)
    if "nii" in formats:
        written.append(write_nifti(out / f"{stem}.nii.gz", volume, voxel, kind=volume_kind))
    if "png" in formats:
        written.append(write_png(out / f"{stem}.png", volume))
    if "dcm" in formats:
        files = write_dicom_series(
            out / f"{stem}_dicom",
            volume,
            voxel,
            series_description=f"gleam-mri reconstruction of {stem}",
            kind=volume_kind,
            overwrite=True,
        )
        written.append(files[0].parent)
    return written
