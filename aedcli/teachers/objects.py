"""Object tubes: the crops of one box in frames t-3 .. t+3, cut while the clip streams by.

A clip is read once, frame by frame, keeping at most ``2 * TUBE_RADIUS + 1`` (7) frames in memory. When
frame ``t + 3`` arrives, every box of frame ``t`` is cut out of the seven buffered frames at the same
square window (the box centred, its longer side plus ``margin`` on each side, so the object keeps its aspect
ratio and its motion stays inside the window; moved back inside the frame near its edges) and resized to
``TUBE_SIZE x TUBE_SIZE``. Only a window larger than the frame repeats border pixels. Neighbours outside
the clip repeat frame ``t``, as the
student's (t, t-3, t+3) stack does.

>>> for batch in iter_object_batches(clip.frames(gray=True), boxes_per_frame, batch_size=256):
...     scores = teacher.score(batch)        # batch.tubes: (N, 7, 64, 64) uint8
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator

import cv2
import numpy as np

from aedcli.teachers.base import TUBE_RADIUS, TUBE_SIZE, ObjectBatch


def square_window(box: np.ndarray, margin: float) -> tuple[int, int, int]:
    """Square crop window (x0, y0, side) of a box [x0, y0, x1, y1]: centred, longer side * (1 + 2 margin)."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    side = max(x1 - x0, y1 - y0, 2.0) * (1.0 + 2.0 * margin)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    s = round(side)
    return round(cx - s / 2.0), round(cy - s / 2.0), max(s, 2)


def cut_tube(stack: np.ndarray, box: np.ndarray, size: int = TUBE_SIZE, margin: float = 0.1) -> np.ndarray:
    """Crop one box from a (T, H, W) uint8 frame stack -> (T, size, size) uint8."""
    _, h, w = stack.shape
    x0, y0, s = square_window(box, margin)
    # Slide the window back inside the frame when it fits (a replicated border would smear into streaks
    # that change from frame to frame and look like motion); pad only what is left over.
    if s <= w:
        x0 = min(max(x0, 0), w - s)
    if s <= h:
        y0 = min(max(y0, 0), h - s)
    px0, py0 = max(0, -x0), max(0, -y0)
    px1, py1 = max(0, x0 + s - w), max(0, y0 + s - h)
    cx0, cy0 = max(0, x0), max(0, y0)
    crop = stack[:, cy0 : min(h, y0 + s), cx0 : min(w, x0 + s)]
    crop = np.ascontiguousarray(crop.transpose(1, 2, 0))  # (h', w', T)
    if px0 or py0 or px1 or py1:
        crop = cv2.copyMakeBorder(crop, py0, py1, px0, px1, cv2.BORDER_REPLICATE)
        if crop.ndim == 2:  # copyMakeBorder drops a single channel axis
            crop = crop[:, :, None]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    # one resize per frame: OpenCV's area resampling handles at most 4 channels at once
    return np.stack(
        [cv2.resize(crop[:, :, i], (size, size), interpolation=interp) for i in range(crop.shape[2])]
    )


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame


def iter_frame_windows(
    frames: Iterable[np.ndarray], radius: int = TUBE_RADIUS
) -> Iterator[tuple[int, np.ndarray]]:
    """For every frame t, ``(t, window)`` with window (2*radius+1, H, W) = frames t-radius .. t+radius.

    Neighbours outside the clip repeat frame t. At most 2*radius+1 frames are buffered.
    """
    for t, window, _ in iter_frame_windows_with_reach(frames, radius):
        yield t, window


def iter_frame_windows_with_reach(
    frames: Iterable[np.ndarray], radius: int = TUBE_RADIUS
) -> Iterator[tuple[int, np.ndarray, tuple[int, int]]]:
    """As :func:`iter_frame_windows`, plus ``(before, after)``: how many of the neighbours are real frames."""
    buf: deque[np.ndarray] = deque(maxlen=2 * radius + 1)
    first = 0  # clip index of buf[0]
    n = 0

    def window(t: int) -> tuple[int, np.ndarray, tuple[int, int]]:
        centre = buf[t - first]
        out = []
        for k in range(t - radius, t + radius + 1):
            j = k - first
            out.append(buf[j] if 0 <= j < len(buf) and 0 <= k < n else centre)
        return t, np.stack(out), (min(t, radius), min(n - 1 - t, radius))

    next_t = 0
    for frame in frames:
        if len(buf) == buf.maxlen:
            first += 1
        buf.append(_gray(frame))
        n += 1
        while next_t + radius < n:  # frame next_t has all its future neighbours
            yield window(next_t)
            next_t += 1
    while next_t < n:  # the last frames: future neighbours do not exist
        yield window(next_t)
        next_t += 1


def iter_object_batches(
    frames: Iterable[np.ndarray],
    boxes_per_frame: list[np.ndarray],
    *,
    batch_size: int = 256,
    margin: float = 0.1,
    size: int = TUBE_SIZE,
    keep_frame: Callable[[int], bool] | None = None,
    on_frame: Callable[[], None] | None = None,
    video: int = -1,
) -> Iterator[ObjectBatch]:
    """Stream a clip and yield :class:`ObjectBatch` es of about ``batch_size`` tubes, in frame order.

    ``boxes_per_frame[t]`` is the (K, 4) box array of frame t (frames past its end have none);
    ``keep_frame(t)`` can skip frames (training subsamples them); ``on_frame`` ticks a progress bar;
    ``video`` is stamped on every batch (see :class:`ObjectBatch`).
    Frames without boxes produce no tubes, so a clip with nothing moving yields nothing.
    """
    tubes: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    frame_ids: list[int] = []
    reach: list[tuple[int, int]] = []
    frame_size: tuple[int, int] = (0, 0)

    def flush() -> ObjectBatch:
        batch = ObjectBatch(
            tubes=np.stack(tubes).astype(np.uint8),
            boxes=np.stack(boxes).astype(np.float32),
            frame_size=frame_size,
            frames=np.asarray(frame_ids, dtype=np.int64),
            video=video,
            reach=np.asarray(reach, dtype=np.int64).reshape(-1, 2),
        )
        tubes.clear()
        boxes.clear()
        frame_ids.clear()
        reach.clear()
        return batch

    for t, window, real in iter_frame_windows_with_reach(frames):
        frame_size = (int(window.shape[1]), int(window.shape[2]))
        fb = boxes_per_frame[t] if t < len(boxes_per_frame) else np.zeros((0, 4), np.float32)
        if len(fb) and (keep_frame is None or keep_frame(t)):
            for box in fb:
                tubes.append(cut_tube(window, box, size=size, margin=margin))
                boxes.append(np.asarray(box[:4], np.float32))
                frame_ids.append(t)
                reach.append(real)
            if len(tubes) >= batch_size:
                yield flush()
        if on_frame:
            on_frame()
    if tubes:
        yield flush()


def concat_batches(batches: list[ObjectBatch]) -> ObjectBatch:
    """One batch from many (same frame size assumed for geometry; frames keep their own indices).

    The result keeps the batches' ``video`` when they share one, else -1.
    """
    if not batches:
        return ObjectBatch(
            np.zeros((0, 2 * TUBE_RADIUS + 1, TUBE_SIZE, TUBE_SIZE), np.uint8),
            np.zeros((0, 4), np.float32),
            (0, 0),
            np.zeros(0, np.int64),
        )
    return ObjectBatch(
        tubes=np.concatenate([b.tubes for b in batches]),
        boxes=np.concatenate([b.boxes for b in batches]),
        frame_size=batches[0].frame_size,
        frames=np.concatenate([b.frames for b in batches]),
        video=batches[0].video if len({b.video for b in batches}) == 1 else -1,
        reach=(
            None
            if all(b.reach is None for b in batches)
            else np.concatenate([b.real_reach() for b in batches])
        ),
    )
