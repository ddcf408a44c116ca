"""Ground-truth readers: every format becomes 0/1 per frame; bad files fail naming the file and the video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from aedcli.data.labels import (
    check_labels,
    intervals_from_labels,
    iter_mask_folder,
    iter_pixel_mask_npy,
    iter_volume_label_mat,
    labels_from_intervals,
    labels_from_mask_folder,
    labels_from_volume_label_mat,
    read_frame_label_file,
    read_interval_mat,
    read_ucsd_m,
)
from aedcli.errors import DatasetError


def _cell(items: list[np.ndarray]) -> np.ndarray:
    """A 1xN MATLAB cell array (scipy would stack equal-shaped arrays into one numeric array)."""
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


def _mask(abnormal: bool, shape: tuple[int, int] = (6, 8)) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    if abnormal:
        m[2, 3] = 1
    return m


# --- UCSD .m ---


def test_ucsd_m_reads_one_entry_per_video_with_single_and_multiple_ranges(tmp_path: Path) -> None:
    m = tmp_path / "UCSDped1.m"
    m.write_text(
        "TestVideoFile = {};\n"
        "% frame-level ground truth\n"
        "TestVideoFile{end+1}.gt_frame = [61:180];\n"
        "TestVideoFile{end+1}.gt_frame = [5:90, 140:200];  % two events\n"
        "TestVideoFile{end+1}.gt_frame = [1:10 20:30];\n"
        "TestVideoFile{end+1}.gt_frame = [7];\n"
        "TestVideoFile{end+1}.gt_frame = [];\n"
    )
    assert read_ucsd_m(m) == [[(61, 180)], [(5, 90), (140, 200)], [(1, 10), (20, 30)], [(7, 7)], []]


def test_ucsd_m_honours_explicit_cell_indices(tmp_path: Path) -> None:
    m = tmp_path / "UCSDped2.m"
    m.write_text("TestVideoFile{2}.gt_frame = [3:4];\nTestVideoFile{1}.gt_frame = [1:2];\n")
    assert read_ucsd_m(m) == [[(1, 2)], [(3, 4)]]


def test_ucsd_m_without_entries_is_an_error_naming_the_file(tmp_path: Path) -> None:
    m = tmp_path / "UCSDped2.m"
    m.write_text("x = 1;\n")
    with pytest.raises(DatasetError, match=r"UCSDped2\.m contains no"):
        read_ucsd_m(m)


def test_ucsd_m_with_a_malformed_range_names_the_file(tmp_path: Path) -> None:
    m = tmp_path / "UCSDped2.m"
    m.write_text("TestVideoFile{end+1}.gt_frame = [a:b];\n")
    with pytest.raises(DatasetError, match=r"UCSDped2\.m has an entry"):
        read_ucsd_m(m)


# --- intervals ---


def test_intervals_are_one_based_and_inclusive() -> None:
    labels = labels_from_intervals([(2, 3), (5, 5)], 6, source=Path("gt.txt"), video="v")
    assert labels.tolist() == [0, 1, 1, 0, 1, 0]
    assert labels.dtype == np.uint8


def test_interval_past_the_last_frame_names_video_and_range() -> None:
    with pytest.raises(DatasetError, match=r"frames 4\.\.7 of video 'v' .* frames 1\.\.6"):
        labels_from_intervals([(4, 7)], 6, source=Path("gt.txt"), video="v")


def test_interval_starting_at_zero_is_rejected_as_not_one_based() -> None:
    with pytest.raises(DatasetError, match="1-based"):
        labels_from_intervals([(0, 2)], 6, source=Path("gt.txt"), video="v")


def test_intervals_from_labels_inverts_labels_from_intervals() -> None:
    intervals = [(1, 2), (5, 7), (10, 10)]
    labels = labels_from_intervals(intervals, 10, source=Path("x"), video="v")
    assert intervals_from_labels(labels) == intervals
    assert intervals_from_labels(np.zeros(4, np.uint8)) == []


# --- mask images ---


def test_mask_folder_marks_a_frame_abnormal_when_any_pixel_is_set(tmp_path: Path) -> None:
    folder = tmp_path / "Test001_gt"
    folder.mkdir()
    for i, abnormal in enumerate([False, True, False, True], start=1):
        cv2.imwrite(str(folder / f"{i:03d}.bmp"), _mask(abnormal) * 255)
    (folder / "Thumbs.db").write_bytes(b"not a frame")  # archives carry such files; they are not masks
    (folder / "._001.bmp").write_bytes(b"macOS resource fork")
    assert labels_from_mask_folder(folder, 4, video="Test001").tolist() == [0, 1, 0, 1]
    masks = list(iter_mask_folder(folder))
    assert len(masks) == 4 and masks[1].dtype == bool and masks[1].shape == (6, 8)
    assert masks[1].sum() == 1 and not masks[0].any()


def test_mask_folder_in_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "gt"
    folder.mkdir()
    for i in range(1, 12):  # 1.png ... 11.png: lexical order would put 10 and 11 before 2
        cv2.imwrite(str(folder / f"{i}.png"), _mask(i == 2) * 255)
    assert labels_from_mask_folder(folder, 11, video="v").tolist() == [0, 1] + [0] * 9


def test_mask_folder_count_mismatch_names_video_and_both_counts(tmp_path: Path) -> None:
    folder = tmp_path / "Test003_gt"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.bmp"), _mask(False))
    with pytest.raises(DatasetError, match=r"Test003_gt holds 3 masks but video 'Test003' has 5 frames"):
        labels_from_mask_folder(folder, 5, video="Test003")


# --- .mat ---


def test_avenue_vollabel_gives_one_mask_per_frame_and_any_pixel_labels(tmp_path: Path) -> None:
    path = tmp_path / "1_label.mat"
    scipy.io.savemat(path, {"volLabel": _cell([_mask(False), _mask(True), _mask(True), _mask(False)])})
    assert labels_from_volume_label_mat(path, 4, video="01").tolist() == [0, 1, 1, 0]
    masks = list(iter_volume_label_mat(path, video="01"))
    assert [m.dtype for m in masks] == [np.dtype(bool)] * 4
    assert [int(m.sum()) for m in masks] == [0, 1, 1, 0]


def test_avenue_vollabel_with_wrong_frame_count_names_video_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "5_label.mat"
    scipy.io.savemat(path, {"volLabel": _cell([_mask(False), _mask(True)])})
    with pytest.raises(DatasetError, match=r"5_label\.mat holds 2 masks but video '05' has 3 frames"):
        labels_from_volume_label_mat(path, 3, video="05")


def test_matlab_v73_file_gets_an_error_saying_how_to_convert_it(tmp_path: Path) -> None:
    # A v7.3 MAT file: 128-byte MATLAB header (version 0x0200), then an HDF5 superblock at byte 512.
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    )
    blob = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    path = tmp_path / "1_label.mat"
    path.write_bytes(blob.ljust(512, b"\x00") + b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(DatasetError, match=r"1_label\.mat is a MATLAB v7\.3 \(HDF5\) file.*-v7"):
        labels_from_volume_label_mat(path, 1, video="01")


def test_mat_file_without_the_expected_variable_names_it(tmp_path: Path) -> None:
    path = tmp_path / "1_label.mat"
    scipy.io.savemat(path, {"other": np.zeros(3)})
    with pytest.raises(DatasetError, match=r"1_label\.mat has no variable 'volLabel'"):
        labels_from_volume_label_mat(path, 3, video="01")


def test_interval_mat_reads_start_end_columns_per_video(tmp_path: Path) -> None:
    path = tmp_path / "ped2.mat"
    gt = _cell([np.array([[61], [180]]), np.array([[1, 20], [10, 30]]), np.zeros((2, 0))])
    scipy.io.savemat(path, {"gt": gt})
    assert read_interval_mat(path) == [[(61, 180)], [(1, 10), (20, 30)], []]


def test_interval_mat_saved_as_one_numeric_array_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "avenue.mat"
    scipy.io.savemat(path, {"gt": np.array([[[2], [4]], [[1], [3]]])})  # (V, 2, K), as numpy stacks it
    assert read_interval_mat(path) == [[(2, 4)], [(1, 3)]]


# --- .npy ---


def test_shanghaitech_frame_mask_npy_is_read_per_frame(tmp_path: Path) -> None:
    path = tmp_path / "01_0014.npy"
    np.save(path, np.array([0, 0, 1, 1, 0], dtype=np.int64))
    labels = read_frame_label_file(path, 5, video="01_0014")
    assert labels.tolist() == [0, 0, 1, 1, 0] and labels.dtype == np.uint8


def test_pixel_mask_npy_streams_bool_masks_and_labels_follow_any_pixel(tmp_path: Path) -> None:
    path = tmp_path / "01_0014.npy"
    volume = np.stack([_mask(False), _mask(True), _mask(False)])
    np.save(path, volume)
    masks = list(iter_pixel_mask_npy(path, video="01_0014"))
    assert [m.shape for m in masks] == [(6, 8)] * 3 and masks[1].dtype == bool
    assert [bool(m.any()) for m in masks] == [False, True, False]
    assert read_frame_label_file(path, 3, video="01_0014").tolist() == [0, 1, 0]


# --- per-video text files ---


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("one_per_line.txt", "0\n0\n1\n1\n0\n0\n"),
        ("single_line.txt", "0 0 1 1 0 0\n"),
        ("single_line.csv", "0,0,1,1,0,0\n"),
        ("float_values.txt", "0.0\n0.0\n1.0\n1.0\n0.0\n0.0\n"),
        ("intervals_space.txt", "3 4\n"),
        ("intervals_comma.csv", "# abnormal events\n3,4\n"),
        ("intervals_header.csv", "start,end\n3,4\n"),
        ("label_column.csv", "frame,score,label\n0,0.1,0\n1,0.2,0\n2,0.9,1\n3,0.8,1\n4,0.1,0\n5,0.0,0\n"),
        ("frame_label_pairs.csv", "0,0\n1,0\n2,1\n3,1\n4,0\n5,0\n"),
        ("frame_label_pairs_1based.txt", "1 0\n2 0\n3 1\n4 1\n5 0\n6 0\n"),
    ],
)
def test_text_label_file_forms_all_give_the_same_labels(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert read_frame_label_file(path, 6, video="cam1").tolist() == [0, 0, 1, 1, 0, 0]


def test_empty_label_file_means_no_abnormal_frames(tmp_path: Path) -> None:
    path = tmp_path / "quiet.txt"
    path.write_text("# nothing happened\n")
    assert read_frame_label_file(path, 4, video="quiet").tolist() == [0, 0, 0, 0]


def test_label_values_other_than_0_and_1_name_file_and_video(tmp_path: Path) -> None:
    path = tmp_path / "cam1.txt"
    path.write_text("0\n2\n0\n")
    with pytest.raises(DatasetError, match=r"cam1\.txt \(video 'cam1'\) holds the label value 2"):
        read_frame_label_file(path, 3, video="cam1")


def test_label_count_mismatch_names_video_and_both_counts(tmp_path: Path) -> None:
    path = tmp_path / "cam1.npy"
    np.save(path, np.zeros(7, np.uint8))
    with pytest.raises(DatasetError, match=r"cam1\.npy has 7 labels but video 'cam1' has 9 frames"):
        read_frame_label_file(path, 9, video="cam1")


def test_non_numeric_label_line_names_file_and_video(tmp_path: Path) -> None:
    path = tmp_path / "cam1.txt"
    path.write_text("0\nyes\n")
    with pytest.raises(DatasetError, match=r"cam1\.txt \(video 'cam1'\) has the non-numeric line 'yes'"):
        read_frame_label_file(path, 2, video="cam1")


def test_csv_header_without_label_column_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cam1.csv"
    path.write_text("frame,score\n0,0.5\n")
    with pytest.raises(DatasetError, match="without a label column"):
        read_frame_label_file(path, 1, video="cam1")


def test_check_labels_accepts_booleans_and_rejects_fractions() -> None:
    assert check_labels(np.array([True, False]), 2, source=Path("x"), video="v").tolist() == [1, 0]
    with pytest.raises(DatasetError, match=r"label value 0\.5"):
        check_labels(np.array([0.0, 0.5]), 2, source=Path("x"), video="v")
