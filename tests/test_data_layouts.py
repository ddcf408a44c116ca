"""Dataset layouts on tiny fake trees: clips, frame counts, labels, masks, forgiving roots, clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from aedcli.data import DATASETS, Clip, load_dataset
from aedcli.data.clips import magnify, sped_up, time_slice, zoomed
from aedcli.data.ucsd import LabelMismatchWarning
from aedcli.errors import DatasetError, UsageError

H, W = 8, 12


def _frames(folder: Path, n: int, suffix: str = ".tif", digits: int = 3, start: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i + start:0{digits}d}{suffix}"), np.full((H, W), 10 * i, np.uint8))
    return folder


def _masks(folder: Path, abnormal: list[int], suffix: str = ".bmp") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(abnormal, start=1):
        m = np.zeros((H, W), np.uint8)
        m[1:3, 2:5] = 255 * a
        cv2.imwrite(str(folder / f"{i:03d}{suffix}"), m)
    return folder


def _video(path: Path, n: int, fps: float = 25.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (16, 16))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((16, 16, 3), (20 * i, 100, 200), np.uint8))  # colour, so not taken for gray
    writer.release()
    return path


def _cell(items: list[np.ndarray]) -> np.ndarray:
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


# --- UCSD Ped1 / Ped2 ---


def _ucsd_tree(parent: Path, number: int = 2) -> Path:
    base = parent / f"UCSDped{number}"
    _frames(base / "Train" / "Train001", 3)
    _frames(base / "Train" / "Train002", 4)
    (base / "Train" / "Train001" / "Thumbs.db").write_bytes(b"not a frame")
    _frames(base / "Test" / "Test001", 5)
    _masks(base / "Test" / "Test001_gt", [0, 0, 1, 1, 0])
    _frames(base / "Test" / "Test002", 4)  # no masks: labels come from the .m file
    (base / "Test" / f"UCSDped{number}.m").write_text(
        "TestVideoFile = {};\n"
        "TestVideoFile{end+1}.gt_frame = [3:4];\n"
        "TestVideoFile{end+1}.gt_frame = [2:4];\n"
    )
    # An editor backup with other numbers, as in the real archive: it must be ignored.
    (base / "Test" / f"UCSDped{number}.m~").write_text("TestVideoFile{end+1}.gt_frame = [1:1];\n")
    return base


def test_ped2_reads_clips_counts_and_labels_from_masks_and_m_file(tmp_path: Path) -> None:
    _ucsd_tree(tmp_path)
    ds = load_dataset("ped2", tmp_path)
    assert ds.name == "ped2" and ds.gray and ds.fps == 10.0
    assert [(c.name, c.split, c.frame_count) for c in ds.train] == [
        ("Train001", "train", 3),
        ("Train002", "train", 4),
    ]
    assert [c.name for c in ds.test] == ["Test001", "Test002"]
    t1, t2 = ds.test
    assert t1.labels is not None and t1.labels.tolist() == [0, 0, 1, 1, 0]
    assert t2.labels is not None and t2.labels.tolist() == [0, 1, 1, 1]
    assert t1.has_masks and not t2.has_masks and t2.masks() is None
    assert ds.has_labels and not ds.has_masks
    assert all(c.labels is None for c in ds.train)
    assert len(list(ds.train[0].frames())) == ds.train[0].frame_count  # counting skips non-frame files


def test_ped2_root_may_be_the_ucsdped2_folder_itself(tmp_path: Path) -> None:
    base = _ucsd_tree(tmp_path)
    assert load_dataset("ped2", base).root == base
    assert load_dataset("ped2", tmp_path).root == base


def test_ped2_clip_streams_gray_frames_and_bool_masks(tmp_path: Path) -> None:
    _ucsd_tree(tmp_path)
    clip = load_dataset("ped2", tmp_path).test[0]
    frames = list(clip.frames())
    assert len(frames) == clip.frame_count and frames[0].shape == (H, W) and frames[0].dtype == np.uint8
    assert frames[2][0, 0] == 20  # natural order: 003.tif is the third frame
    masks = clip.masks()
    assert masks is not None
    masks = list(masks)
    assert [bool(m.any()) for m in masks] == [False, False, True, True, False]
    assert masks[2].dtype == bool and masks[2].shape == (H, W)


def test_ucsd_masks_and_m_file_that_disagree_warn_and_masks_win(tmp_path: Path) -> None:
    base = _ucsd_tree(tmp_path)
    (base / "Test" / "UCSDped2.m").write_text(
        "TestVideoFile{end+1}.gt_frame = [2:4];\nTestVideoFile{end+1}.gt_frame = [2:4];\n"
    )
    with pytest.warns(
        LabelMismatchWarning, match=r"disagree on 1 of 5 frames of 'Test001' \(first: frame 2\)"
    ):
        ds = load_dataset("ped2", tmp_path)
    assert ds.test[0].labels is not None and ds.test[0].labels.tolist() == [0, 0, 1, 1, 0]


def test_ucsd_masks_and_m_file_that_agree_raise_no_warning(tmp_path: Path) -> None:
    _ucsd_tree(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("ped2", tmp_path)


def test_ucsd_m_file_with_another_number_of_videos_is_an_error(tmp_path: Path) -> None:
    base = _ucsd_tree(tmp_path)
    (base / "Test" / "UCSDped2.m").write_text("TestVideoFile{end+1}.gt_frame = [1:2];\n")
    with pytest.raises(DatasetError, match=r"UCSDped2\.m lists 1 test clips but .*Test holds 2"):
        load_dataset("ped2", tmp_path)


def test_ucsd_mask_folder_shorter_than_its_clip_names_video_and_counts(tmp_path: Path) -> None:
    base = _ucsd_tree(tmp_path)
    (base / "Test" / "Test001_gt" / "005.bmp").unlink()
    with pytest.raises(DatasetError, match=r"holds 4 masks but video 'Test001' has 5 frames"):
        load_dataset("ped2", tmp_path)


def test_ped1_uses_ucsdped1_folder_and_m_file(tmp_path: Path) -> None:
    _ucsd_tree(tmp_path, number=1)
    ds = load_dataset("ped1", tmp_path)
    assert ds.name == "ped1" and len(ds.train) == 2 and len(ds.test) == 2


def test_ped2_root_without_ucsd_layout_names_path_and_layout(tmp_path: Path) -> None:
    (tmp_path / "something").mkdir()
    with pytest.raises(DatasetError, match=r"does not hold UCSD Ped2.*UCSDped2/Train/TrainNNN/\*\.tif"):
        load_dataset("ped2", tmp_path)


# --- Avenue ---


def _avenue_tree(root: Path) -> Path:
    _video(root / "training_videos" / "01.avi", 4)
    _video(root / "training_videos" / "02.avi", 3)
    _video(root / "testing_videos" / "01.avi", 4)
    _video(root / "testing_videos" / "02.avi", 3)
    gt = root / "ground_truth_demo" / "testing_label_mask"
    gt.mkdir(parents=True)
    empty, full = np.zeros((16, 16), np.uint8), np.ones((16, 16), np.uint8)
    scipy.io.savemat(gt / "1_label.mat", {"volLabel": _cell([empty, full, full, empty])})
    scipy.io.savemat(gt / "2_label.mat", {"volLabel": _cell([empty, empty, full])})
    return root


def test_avenue_counts_video_frames_and_reads_vollabel_masks(tmp_path: Path) -> None:
    _avenue_tree(tmp_path)
    ds = load_dataset("avenue", tmp_path)
    assert ds.name == "avenue" and not ds.gray and ds.fps == 25.0
    assert [(c.name, c.frame_count) for c in ds.train] == [("01", 4), ("02", 3)]
    assert [c.labels.tolist() for c in ds.test if c.labels is not None] == [[0, 1, 1, 0], [0, 0, 1]]
    masks = ds.test[1].masks()
    assert masks is not None and [bool(m.any()) for m in masks] == [False, False, True]
    assert ds.test[0].masks_path == tmp_path / "ground_truth_demo" / "testing_label_mask" / "1_label.mat"


def test_avenue_accepts_an_interval_mat_instead_of_masks(tmp_path: Path) -> None:
    _avenue_tree(tmp_path / "Avenue Dataset")
    for f in (tmp_path / "Avenue Dataset" / "ground_truth_demo" / "testing_label_mask").iterdir():
        f.unlink()
    (tmp_path / "Avenue Dataset" / "ground_truth_demo" / "testing_label_mask").rmdir()
    scipy.io.savemat(
        tmp_path / "Avenue Dataset" / "avenue.mat",
        {"gt": _cell([np.array([[2], [3]]), np.array([[1], [1]])])},
    )
    ds = load_dataset("avenue", tmp_path)  # the folder holding "Avenue Dataset/"
    assert [c.labels.tolist() for c in ds.test if c.labels is not None] == [[0, 1, 1, 0], [1, 0, 0]]
    assert not ds.has_masks


def test_avenue_missing_mask_file_names_it_and_the_video(tmp_path: Path) -> None:
    _avenue_tree(tmp_path)
    (tmp_path / "ground_truth_demo" / "testing_label_mask" / "2_label.mat").unlink()
    with pytest.raises(DatasetError, match=r"2_label\.mat for test video '02' does not exist"):
        load_dataset("avenue", tmp_path)


def test_avenue_mask_count_mismatch_names_video_and_counts(tmp_path: Path) -> None:
    _avenue_tree(tmp_path)
    _video(tmp_path / "testing_videos" / "02.avi", 6)
    with pytest.raises(DatasetError, match=r"holds 3 masks but video '02' has 6 frames"):
        load_dataset("avenue", tmp_path)


# --- ShanghaiTech ---


def _shanghaitech_tree(root: Path) -> Path:
    _video(root / "training" / "videos" / "01_001.avi", 5)
    _video(root / "training" / "videos" / "02_001.avi", 4)
    _frames(root / "testing" / "frames" / "01_0014", 4, suffix=".jpg", start=0)
    _frames(root / "testing" / "frames" / "01_0015", 3, suffix=".jpg", start=0)
    (root / "testing" / "test_frame_mask").mkdir(parents=True)
    np.save(root / "testing" / "test_frame_mask" / "01_0014.npy", np.array([0, 1, 1, 0]))
    np.save(root / "testing" / "test_frame_mask" / "01_0015.npy", np.array([0, 0, 1]))
    (root / "testing" / "test_pixel_mask").mkdir(parents=True)
    pixels = np.zeros((4, H, W), np.uint8)
    pixels[1:3, 2, 2] = 1
    np.save(root / "testing" / "test_pixel_mask" / "01_0014.npy", pixels)
    return root


def test_shanghaitech_reads_train_videos_test_frames_and_npy_ground_truth(tmp_path: Path) -> None:
    _shanghaitech_tree(tmp_path)
    ds = load_dataset("shanghaitech", tmp_path)
    assert [(c.name, c.frame_count) for c in ds.train] == [("01_001", 5), ("02_001", 4)]
    assert [(c.name, c.frame_count) for c in ds.test] == [("01_0014", 4), ("01_0015", 3)]
    assert [c.labels.tolist() for c in ds.test if c.labels is not None] == [[0, 1, 1, 0], [0, 0, 1]]
    masks = ds.test[0].masks()
    assert masks is not None and [bool(m.any()) for m in masks] == [False, True, True, False]
    assert ds.test[1].masks() is None


def test_shanghaitech_prefers_training_frame_folders_over_videos(tmp_path: Path) -> None:
    _shanghaitech_tree(tmp_path / "shanghaitech")
    _frames(tmp_path / "shanghaitech" / "training" / "frames" / "01_001", 2, suffix=".jpg")
    ds = load_dataset("shanghaitech", tmp_path)  # the folder holding shanghaitech/
    assert [(c.name, c.frame_count, c.path.is_dir()) for c in ds.train] == [("01_001", 2, True)]


def test_shanghaitech_frame_mask_length_mismatch_names_video_and_counts(tmp_path: Path) -> None:
    _shanghaitech_tree(tmp_path)
    np.save(tmp_path / "testing" / "test_frame_mask" / "01_0015.npy", np.array([0, 1]))
    with pytest.raises(DatasetError, match=r"01_0015\.npy has 2 labels but video '01_0015' has 3 frames"):
        load_dataset("shanghaitech", tmp_path)


# --- a user's own folder ---


def _folder_tree(root: Path) -> Path:
    _video(root / "train" / "lobby_morning.avi", 6)
    _frames(root / "train" / "lobby_noon", 5, suffix=".png")
    _frames(root / "test" / "incident", 6, suffix=".png")
    _frames(root / "test" / "quiet", 4, suffix=".png")
    (root / "labels").mkdir()
    (root / "labels" / "incident.txt").write_text("3 4\n")
    return root


def test_folder_reads_videos_and_frame_folders_and_label_files(tmp_path: Path) -> None:
    _folder_tree(tmp_path)
    (tmp_path / "train" / "notes.md").write_text("not a video")  # stray files are skipped
    ds = load_dataset("folder", tmp_path)
    assert [(c.name, c.frame_count) for c in ds.train] == [("lobby_morning", 6), ("lobby_noon", 5)]
    incident, quiet = ds.test
    assert incident.labels is not None and incident.labels.tolist() == [0, 0, 1, 1, 0, 0]
    assert quiet.labels is None
    assert not ds.gray  # the first training clip is a colour video


def test_folder_with_unlabelled_test_videos_loads_but_reports_them(tmp_path: Path) -> None:
    _folder_tree(tmp_path)
    ds = load_dataset("folder", tmp_path)
    assert not ds.has_labels
    with pytest.raises(DatasetError, match=r"test videos 'quiet' of dataset 'folder'.* have no frame labels"):
        ds.require_labels()


def test_folder_takes_labels_from_masks_when_there_is_no_label_file(tmp_path: Path) -> None:
    _folder_tree(tmp_path)
    _masks(tmp_path / "masks" / "quiet", [0, 1, 0, 0], suffix=".png")
    ds = load_dataset("folder", tmp_path)
    quiet = ds.clip("quiet")
    assert quiet.labels is not None and quiet.labels.tolist() == [0, 1, 0, 0]
    assert quiet.mask_kind == "folder" and ds.has_labels
    ds.require_labels()


def test_folder_label_file_for_no_test_video_is_an_error(tmp_path: Path) -> None:
    _folder_tree(tmp_path)
    (tmp_path / "labels" / "incdent.csv").write_text("0\n")
    with pytest.raises(DatasetError, match=r"incdent\.csv matches no test video \(have: incident, quiet\)"):
        load_dataset("folder", tmp_path)


def test_folder_bad_label_values_name_file_and_video(tmp_path: Path) -> None:
    _folder_tree(tmp_path)
    (tmp_path / "labels" / "quiet.txt").write_text("0\n1\n5\n0\n")
    with pytest.raises(DatasetError, match=r"quiet\.txt \(video 'quiet'\) holds the label value 5"):
        load_dataset("folder", tmp_path)


def test_folder_label_length_mismatch_names_video_and_counts(tmp_path: Path) -> None:
    _folder_tree(tmp_path)
    (tmp_path / "labels" / "quiet.npy").parent.mkdir(exist_ok=True)
    np.save(tmp_path / "labels" / "quiet.npy", np.zeros(7, np.uint8))
    with pytest.raises(DatasetError, match=r"quiet\.npy has 7 labels but video 'quiet' has 4 frames"):
        load_dataset("folder", tmp_path)


def test_folder_video_and_frame_folder_with_the_same_name_is_an_error(tmp_path: Path) -> None:
    _folder_tree(tmp_path)
    _video(tmp_path / "train" / "lobby_noon.avi", 2)
    with pytest.raises(DatasetError, match=r"would both be video 'lobby_noon'"):
        load_dataset("folder", tmp_path)


def test_folder_without_train_or_test_names_root_and_layout(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"has neither a train/ nor a test/ folder; expected train/ and test/"
    ):
        load_dataset("folder", tmp_path)


def test_gray_frame_folders_make_a_gray_dataset(tmp_path: Path) -> None:
    _frames(tmp_path / "train" / "a", 3, suffix=".png")
    ds = load_dataset("folder", tmp_path)
    assert ds.gray and ds.fps == 25.0 and ds.test == []


# --- registry and roots ---


def test_every_registered_dataset_has_a_one_line_description() -> None:
    assert set(DATASETS) == {"ped2", "ped1", "avenue", "shanghaitech", "folder", "synthetic", "devset:NAME"}
    assert all(d and "\n" not in d for d in DATASETS.values())


def test_unknown_dataset_name_is_a_usage_error_listing_the_names() -> None:
    with pytest.raises(UsageError, match=r"unknown dataset 'ped3'; choose one of ped2, ped1"):
        load_dataset("ped3", "/nowhere")


def test_missing_root_names_the_path_and_the_expected_layout(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    with pytest.raises(
        DatasetError, match=rf"{missing} for 'avenue' does not exist; expected training_videos/"
    ):
        load_dataset("avenue", missing)


def test_root_defaults_to_aed_data_slash_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _ucsd_tree(tmp_path / "ped2")
    monkeypatch.setenv("AED_DATA", str(tmp_path))
    assert load_dataset("ped2").root == tmp_path / "ped2" / "UCSDped2"


def test_no_root_and_no_aed_data_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AED_DATA", raising=False)
    with pytest.raises(DatasetError, match=r"no folder given for dataset 'ped2'.*AED_DATA"):
        load_dataset("ped2")


def test_clip_rejects_labels_of_another_length() -> None:
    with pytest.raises(DatasetError, match=r"video 'x' .* cover 2 frames but the video has 3"):
        Clip(name="x", split="test", path=Path("x"), frame_count=3, labels=np.zeros(2, np.uint8))


def test_clip_labels_are_read_only_uint8_copies() -> None:
    given = np.array([0, 1, 1], dtype=np.int64)
    clip = Clip(name="x", split="test", path=Path("x"), frame_count=3, labels=given)
    assert clip.labels is not None and clip.labels.dtype == np.uint8
    with pytest.raises(ValueError, match="read-only"):
        clip.labels[0] = 1
    given[0] = 1
    assert clip.labels.tolist() == [0, 1, 1]


# --- views of a clip: time slices, speed-ups, zooms ---


def _numbered_clip(tmp_path: Path, n: int = 10) -> Clip:
    folder = _frames(tmp_path / "v", n, suffix=".png")  # frame i is filled with 10 * i
    return Clip(name="v", split="test", path=folder, frame_count=n, labels=np.arange(n) % 2)


def _values(clip: Clip) -> list[int]:
    return [int(f[0, 0]) for f in clip.frames()]


def test_time_slice_reads_its_frames_and_labels_and_names_its_recording(tmp_path: Path) -> None:
    part = time_slice(_numbered_clip(tmp_path), 3, 7)
    assert (part.name, part.frame_count, part.recording) == ("v_f3-7", 4, "v")
    assert _values(part) == [30, 40, 50, 60]
    assert part.labels is not None and part.labels.tolist() == [1, 0, 1, 0]
    with pytest.raises(ValueError, match="already a view"):
        time_slice(part, 0, 2)
    with pytest.raises(ValueError, match="not inside"):
        time_slice(_numbered_clip(tmp_path), 5, 11)


def test_sped_up_takes_every_step_th_frame_of_the_clip_or_of_a_slice(tmp_path: Path) -> None:
    clip = _numbered_clip(tmp_path)
    fast = sped_up(clip, 3)
    assert (fast.name, fast.frame_count, fast.labels, fast.recording) == ("v_x3", 4, None, "v")
    assert _values(fast) == [0, 30, 60, 90]
    assert _values(sped_up(time_slice(clip, 2, 9), 2)) == [20, 40, 60, 80]
    with pytest.raises(ValueError, match="already sped up"):
        sped_up(fast, 2)


def test_zoomed_magnifies_about_the_centre_and_keeps_the_frame_size(tmp_path: Path) -> None:
    clip = _numbered_clip(tmp_path, 3)
    big = zoomed(clip, 2.0, centre=(0.25, 0.75))
    assert (big.name, big.recording, big.labels) == ("v_z2", "v", None)
    assert [f.shape for f in big.frames()] == [(H, W)] * 3
    assert big.stamp() != clip.stamp()  # caches of the view and of the clip differ
    frame = np.zeros((H, W), np.uint8)
    frame[: H // 2, W // 2 :] = 200  # the top-right quarter: what a zoom of 2 about (0.25, 0.75) shows
    assert (magnify(frame, 2.0, (0.25, 0.75)) == 200).all()
    with pytest.raises(ValueError, match="above 1"):
        zoomed(clip, 1.0)
