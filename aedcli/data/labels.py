"""Readers for the ground-truth formats that video-anomaly datasets ship with.

Frame labels are ``(N,) uint8`` arrays, 1 = abnormal. A frame is abnormal when any pixel of its mask is set
(method.md section 6). Intervals are ``(start, end)`` pairs, **1-based and inclusive**, as in MATLAB.

Formats (anchors.md section 3.3):

- UCSD ``UCSDped1.m`` / ``UCSDped2.m``: ``TestVideoFile{end+1}.gt_frame = [61:180];`` one line per test video,
  possibly several ranges (``[5:90, 140:200]``) -> :func:`read_ucsd_m`.
- Mask folders (UCSD ``TestNNN_gt/*.bmp``, PNG folders) -> :func:`labels_from_mask_folder`,
  :func:`iter_mask_folder`.
- Avenue ``testing_label_mask/<n>_label.mat``: ``volLabel``, a 1xN cell of HxW masks ->
  :func:`labels_from_volume_label_mat`, :func:`iter_volume_label_mat`.
- Interval ``.mat`` files (``ped2.mat``, ``avenue.mat``): ``gt``, a cell with one ``[start; end]`` column per
  abnormal event for each test video -> :func:`read_interval_mat`.
- ShanghaiTech ``test_frame_mask/<video>.npy`` (0/1 per frame) -> :func:`read_frame_label_file`;
  ``test_pixel_mask/<video>.npy`` ``(N, H, W)`` -> :func:`iter_pixel_mask_npy`.
- Per-video ``.txt`` / ``.csv`` / ``.npy`` -> :func:`read_frame_label_file`, see there for the text forms.

Every reader raises :class:`aedcli.errors.DatasetError` naming the file and the video when values are not
0/1 or the number of labels differs from the number of frames.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from aedcli.data.listing import image_files
from aedcli.errors import DatasetError

Interval = tuple[int, int]
"""An abnormal event: first and last frame, 1-based, inclusive."""

# MATLAB v7.3 files are HDF5 containers: the 512-byte MAT header is followed by the HDF5 signature.
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


# --- checks ---


def check_labels(labels: np.ndarray, frame_count: int | None, *, source: Path, video: str) -> np.ndarray:
    """Validate per-frame labels read from ``source`` and return them as ``(N,) uint8``.

    Values must be 0 or 1 (booleans and integral floats are accepted); with ``frame_count`` the length must
    match it.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        arr = arr.squeeze()
        if arr.ndim != 1:
            raise DatasetError(
                f"{source} (video '{video}') holds an array of shape {np.asarray(labels).shape}; "
                "frame labels must be one 0/1 value per frame."
            )
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number):
            raise DatasetError(
                f"{source} (video '{video}') holds non-numeric labels; write 0 or 1 per frame."
            )
        bad = arr[(arr != 0) & (arr != 1)]
        if bad.size:
            raise DatasetError(
                f"{source} (video '{video}') holds the label value {_fmt(bad[0])}, which is neither 0 nor 1; "
                "write 1 for abnormal and 0 for normal frames."
            )
    if frame_count is not None and len(arr) != frame_count:
        raise DatasetError(
            f"{source} has {len(arr)} labels but video '{video}' has {frame_count} frames; "
            "give exactly one label per frame."
        )
    return arr.astype(np.uint8)


def labels_from_intervals(
    intervals: Sequence[Interval], frame_count: int, *, source: Path, video: str
) -> np.ndarray:
    """Per-frame labels from 1-based inclusive intervals; one outside ``1..frame_count`` is an error."""
    labels = np.zeros(frame_count, dtype=np.uint8)
    for start, end in intervals:
        if start < 1 or end < start or end > frame_count:
            raise DatasetError(
                f"{source} marks frames {start}..{end} of video '{video}' abnormal but the video has frames "
                f"1..{frame_count}; intervals are 1-based and inclusive, so fix or remove that one."
            )
        labels[start - 1 : end] = 1
    return labels


def intervals_from_labels(labels: np.ndarray) -> list[Interval]:
    """1-based inclusive abnormal intervals of 0/1 labels, the inverse of :func:`labels_from_intervals`."""
    padded = np.concatenate([[0], np.asarray(labels, dtype=np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s) + 1, int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def check_mask_count(found: int, frame_count: int, *, source: Path, video: str) -> None:
    """Raise when a mask source holds a different number of masks than the video has frames."""
    if found != frame_count:
        raise DatasetError(
            f"{source} holds {found} masks but video '{video}' has {frame_count} frames; "
            "give exactly one mask per frame."
        )


# --- UCSD .m ---


# ``TestVideoFile{end+1}.gt_frame = [ ... ];`` (or an explicit index ``TestVideoFile{3}``).
_UCSD_GT = re.compile(r"TestVideoFile\s*\{\s*(end\s*\+\s*1|\d+)\s*\}\s*\.\s*gt_frame\s*=\s*\[([^\]]*)\]")


def read_ucsd_m(path: Path) -> list[list[Interval]]:
    """Abnormal intervals per test video (in file order) from a UCSD ``UCSDpedN.m`` ground-truth list."""
    text = "\n".join(line.split("%", 1)[0] for line in _read_text(path).splitlines())
    videos: list[list[Interval]] = []
    for match in _UCSD_GT.finditer(text):
        index = match.group(1)
        intervals = _parse_matlab_ranges(match.group(2), path=path, entry=match.group(0))
        if index.startswith("end"):
            videos.append(intervals)
        else:
            i = int(index) - 1
            while len(videos) <= i:
                videos.append([])
            videos[i] = intervals
    if not videos:
        raise DatasetError(
            f"{path} contains no 'TestVideoFile{{end+1}}.gt_frame = [...]' lines; "
            "replace it with the UCSD ground-truth list from the dataset archive."
        )
    return videos


def _parse_matlab_ranges(body: str, *, path: Path, entry: str) -> list[Interval]:
    """``61:180``, ``5:90, 140:200``, ``7`` or ``1:2:9`` -> 1-based inclusive intervals."""
    intervals: list[Interval] = []
    for token in re.split(r"[,;\s]+", body.strip()):
        if not token:
            continue
        parts = token.split(":")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise DatasetError(
                f"{path} has an entry '{entry}' that is not a list of frame ranges like [61:180]; "
                "fix that line."
            ) from None
        if len(numbers) == 1:
            intervals.append((numbers[0], numbers[0]))
        elif len(numbers) == 2:
            intervals.append((numbers[0], numbers[1]))
        elif len(numbers) == 3 and numbers[1] == 1:
            intervals.append((numbers[0], numbers[2]))
        elif len(numbers) == 3 and numbers[1] > 0:
            intervals.extend((f, f) for f in range(numbers[0], numbers[2] + 1, numbers[1]))
        else:
            raise DatasetError(
                f"{path} has an entry '{entry}' with the range '{token}', which is not start:end; "
                "fix that line."
            )
    return intervals


# --- .mat files ---


def _load_mat(path: Path, variable: str) -> np.ndarray:
    """One variable of a MATLAB v4-v7 file; v7.3 (HDF5) files get an error that says how to convert them."""
    from scipy.io import loadmat

    if not path.is_file():
        raise DatasetError(f"{path} does not exist; put the ground-truth file there.")
    if _is_hdf5_mat(path):
        raise _v73_error(path)
    try:
        contents = loadmat(str(path), variable_names=[variable])
    except NotImplementedError:  # scipy's answer to v7.3 files whose header we did not recognise
        raise _v73_error(path) from None
    except Exception as exc:
        raise DatasetError(
            f"{path} cannot be read as a MATLAB file ({exc}); replace it with an intact copy."
        ) from None
    if variable not in contents:
        raise DatasetError(
            f"{path} has no variable '{variable}'; use the ground-truth file that ships with the dataset."
        )
    return contents[variable]


def _is_hdf5_mat(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(520)
    return head[:19] == b"MATLAB 7.3 MAT-file" or head[512:520] == _HDF5_SIGNATURE


def _v73_error(path: Path) -> DatasetError:
    return DatasetError(
        f"{path} is a MATLAB v7.3 (HDF5) file, which cannot be read here; re-save it as v7 in MATLAB "
        "(save(file, '-struct', 's', '-v7')) or convert the masks to an (N, H, W) .npy file."
    )


def read_interval_mat(path: Path) -> list[list[Interval]]:
    """Abnormal intervals per test video from a ``.mat`` file whose ``gt`` holds ``[start; end]`` columns.

    This is the layout of the widely shared ``ped2.mat`` / ``avenue.mat``: a 1xV cell, one ``2xK`` array per
    test video (K events), 1-based inclusive.
    """
    gt = _load_mat(path, "gt")
    if gt.dtype == object:
        entries = list(gt.ravel())
    elif gt.ndim == 3:  # a cell of equal-sized arrays saved as one numeric (V, 2, K) array
        entries = list(gt)
    else:
        entries = [gt]
    videos: list[list[Interval]] = []
    for i, entry in enumerate(entries):
        arr = np.atleast_2d(np.asarray(entry, dtype=float))
        if arr.size == 0:
            videos.append([])
            continue
        if arr.shape[0] != 2 and arr.shape[1] == 2:
            arr = arr.T  # rows instead of columns
        if arr.shape[0] != 2 or not np.all(arr == np.round(arr)):
            raise DatasetError(
                f"{path} entry {i + 1} of 'gt' has shape {arr.shape}; each video needs integer "
                "[start; end] columns (1-based, inclusive)."
            )
        videos.append([(int(s), int(e)) for s, e in arr.T])
    return videos


def read_volume_label_mat(path: Path, *, video: str) -> list[np.ndarray]:
    """The per-frame masks of an Avenue ``<n>_label.mat`` (``volLabel``: a 1xN cell of HxW masks), as stored.

    Masks keep the file's dtype (nonzero = abnormal): converting a whole volume to ``bool`` up front would
    double the memory of files that hold a thousand 360x640 masks.
    """
    vol = _load_mat(path, "volLabel")
    if vol.dtype != object:
        raise DatasetError(
            f"{path} (video '{video}') stores 'volLabel' as a {vol.dtype} array of shape {vol.shape}; "
            "it must be a cell with one HxW mask per frame, as in the Avenue ground truth."
        )
    masks = [np.asarray(m) for m in vol.ravel()]
    for m in masks:
        if m.ndim != 2:
            raise DatasetError(
                f"{path} (video '{video}') holds a mask of shape {m.shape} in 'volLabel'; "
                "each cell must be one HxW mask."
            )
    return masks


def labels_from_volume_label_mat(path: Path, frame_count: int, *, video: str) -> np.ndarray:
    """Frame labels from an Avenue ``volLabel`` file: a frame is abnormal when its mask has any pixel set."""
    masks = read_volume_label_mat(path, video=video)
    check_mask_count(len(masks), frame_count, source=path, video=video)
    return np.fromiter((np.any(m != 0) for m in masks), dtype=np.uint8, count=len(masks))


def iter_volume_label_mat(path: Path, *, video: str) -> Iterator[np.ndarray]:
    """Stream the ``(H, W) bool`` masks of an Avenue ``volLabel`` file (the file is read when iterated)."""
    for m in read_volume_label_mat(path, video=video):
        yield m != 0


# --- mask images ---


def labels_from_mask_folder(folder: Path, frame_count: int, *, video: str) -> np.ndarray:
    """Frame labels from a folder of mask images (one per frame, natural order): abnormal when any pixel
    is set."""
    files = image_files(folder)
    check_mask_count(len(files), frame_count, source=folder, video=video)
    return np.fromiter((_read_mask(f).any() for f in files), dtype=np.uint8, count=len(files))


def iter_mask_folder(folder: Path) -> Iterator[np.ndarray]:
    """Stream the ``(H, W) bool`` masks of a folder of mask images in natural order."""
    for f in image_files(folder):
        yield _read_mask(f)


def _read_mask(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DatasetError(f"the mask image {path} cannot be read; replace it with an intact image.")
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return mask != 0


# --- .npy ---


def iter_pixel_mask_npy(path: Path, *, video: str) -> Iterator[np.ndarray]:
    """Stream the ``(H, W) bool`` masks of an ``(N, H, W)`` ``.npy`` file (memory-mapped, not read whole)."""
    volume = load_pixel_mask_npy(path, video=video)
    for m in volume:
        yield np.asarray(m) != 0


def load_pixel_mask_npy(path: Path, *, video: str) -> np.ndarray:
    """The ``(N, H, W)`` mask volume of a ``.npy`` file, memory-mapped so only its header is read now."""
    try:
        volume = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise DatasetError(
            f"{path} (video '{video}') cannot be read as a .npy file ({exc}); replace it."
        ) from None
    if volume.ndim != 3:
        raise DatasetError(
            f"{path} (video '{video}') has shape {volume.shape}; pixel masks must be an (N, H, W) array."
        )
    return volume


# --- per-video files ---

_LABEL_COLUMNS = ("label", "labels", "gt", "anomaly", "abnormal", "is_anomaly", "is_abnormal", "target", "y")


def read_frame_label_file(path: Path, frame_count: int, *, video: str) -> np.ndarray:
    """Per-frame labels for one video from a ``.npy``, ``.txt`` or ``.csv`` file.

    ``.npy``: a 1-D array with one 0/1 per frame (ShanghaiTech ``test_frame_mask``), or an ``(N, H, W)``
    mask volume (a frame is abnormal when any pixel is set).

    ``.txt`` / ``.csv`` (commas, semicolons, spaces or tabs separate values; ``#`` starts a comment):

    - one 0/1 per line, or all values on a single line -> one label per frame;
    - two numbers per line -> ``start end`` abnormal intervals, **1-based and inclusive**; an empty file means
      no abnormal frames. Exception: when there is one line per frame and the first column counts the frames
      (0, 1, 2, ... or 1, 2, 3, ...), the lines are read as ``frame label``;
    - a header line of names selects the form: ``start,end`` for intervals, or a column named ``label`` (also
      ``gt``, ``anomaly``, ``abnormal``, ``target``) for per-frame labels.
    """
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; put the labels of video '{video}' there.")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DatasetError(
                f"{path} (video '{video}') cannot be read as a .npy file ({exc}); replace it."
            ) from None
        if arr.ndim == 3:
            check_mask_count(arr.shape[0], frame_count, source=path, video=video)
            return (arr.reshape(arr.shape[0], -1) != 0).any(axis=1).astype(np.uint8)
        return check_labels(arr, frame_count, source=path, video=video)
    return _read_text_labels(path, frame_count, video=video)


def _read_text_labels(path: Path, frame_count: int, *, video: str) -> np.ndarray:
    rows: list[list[str]] = []
    for line in _read_text(path).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            rows.append([t for t in re.split(r"[,;\s]+", line) if t])
    if not rows:
        return np.zeros(frame_count, dtype=np.uint8)

    header: list[str] | None = None
    if not all(_is_number(t) for t in rows[0]):
        header = [t.strip("\"'").lower() for t in rows[0]]
        rows = rows[1:]
    values = _numeric_rows(rows, path=path, video=video)

    if header is not None:
        if "start" in header and "end" in header:
            return _intervals_from_rows(
                values, header.index("start"), header.index("end"), path, frame_count, video
            )
        column = next((header.index(c) for c in _LABEL_COLUMNS if c in header), None)
        if column is None and len(header) == 1:
            column = 0
        if column is None:
            raise DatasetError(
                f"{path} (video '{video}') has the header '{','.join(header)}' without a label column; "
                "name the 0/1 column 'label', or use 'start,end' for intervals."
            )
        labels = np.array([r[column] if column < len(r) else np.nan for r in values], dtype=float)
        return check_labels(labels, frame_count, source=path, video=video)

    widths = {len(r) for r in values}
    if widths == {1}:
        return check_labels(np.array([r[0] for r in values]), frame_count, source=path, video=video)
    if len(values) == 1 and len(values[0]) > 2:
        return check_labels(np.array(values[0]), frame_count, source=path, video=video)
    if widths == {2}:
        first = np.array([r[0] for r in values])
        counts_frames = len(values) == frame_count and (
            np.array_equal(first, np.arange(frame_count))
            or np.array_equal(first, np.arange(1, frame_count + 1))
        )
        if counts_frames and frame_count > 1:
            return check_labels(np.array([r[1] for r in values]), frame_count, source=path, video=video)
        return _intervals_from_rows(values, 0, 1, path, frame_count, video)
    raise DatasetError(
        f"{path} (video '{video}') mixes lines of {sorted(widths)} values; write one 0/1 per line or "
        "'start end' (1-based, inclusive) per line."
    )


def _intervals_from_rows(
    values: list[list[float]], start: int, end: int, path: Path, frame_count: int, video: str
) -> np.ndarray:
    intervals: list[Interval] = []
    for r in values:
        if max(start, end) >= len(r) or r[start] != int(r[start]) or r[end] != int(r[end]):
            raise DatasetError(
                f"{path} (video '{video}') has an interval line {r} that is not two whole frame numbers; "
                "write 'start end' (1-based, inclusive) per line."
            )
        intervals.append((int(r[start]), int(r[end])))
    return labels_from_intervals(intervals, frame_count, source=path, video=video)


def _numeric_rows(rows: list[list[str]], *, path: Path, video: str) -> list[list[float]]:
    out = []
    for r in rows:
        try:
            out.append([float(t) for t in r])
        except ValueError:
            raise DatasetError(
                f"{path} (video '{video}') has the non-numeric line '{' '.join(r)}'; "
                "write 0/1 per frame or 'start end' intervals."
            ) from None
    return out


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DatasetError(
            f"{path} cannot be read ({exc.strerror}); check that it exists and is readable."
        ) from None


def _fmt(value: object) -> str:
    f = float(value)  # type: ignore[arg-type]
    return str(int(f)) if f.is_integer() else str(f)
