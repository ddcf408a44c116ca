"""Object proposals: a box around every moving object of every frame.

For fixed cameras (the common case for anomaly detection) no trained detector is needed. A background model
is learnt from the clip itself and every frame is compared with it:

* ``median`` (default): the per-pixel median of up to ``background_samples`` frames spread over the clip is
  the background; a pixel is foreground where the (lightly blurred) frame differs from it by more than
  ``diff_threshold`` gray levels, or, with ``frame_diff``, where it changed by that much against both frames
  ``t - frame_diff_gap`` and ``t + frame_diff_gap`` (catches objects that stand still for most of the clip and
  so sit in the median, without the ghost a two-frame difference leaves behind fast objects).
* ``mog2`` / ``knn``: OpenCV's adaptive mixture / k-nearest-neighbour subtractors, warmed up on the sampled
  frames before the real pass; shadows are detected and dropped. Better for long videos whose light changes.

The foreground mask is cleaned with a small opening (speckle), closed with a kernel scaled to the frame
height (joins the limbs and the bike of one object), and split into connected components; components whose
pixel area is below ``min_area`` or above ``max_area`` (fractions of the frame area) are discarded, and so
are blobs touching the frame border smaller than ``border_min_area`` (a head or a foot entering the view).
Bikes,
carts and vehicles are found exactly like pedestrians: anything that moves gets a box.

Optionally a detector from a LOCAL weights file (never downloaded) replaces the background model, see
:class:`LocalDetector` for the two formats it accepts.

>>> cfg = ProposalConfig()
>>> per_frame = propose_clip(lambda: clip.frames(gray=True), cfg)   # list of (K, 4) float32 [x0, y0, x1, y1]

Boxes of a clip are cached by :func:`load_or_propose` as ``<targets>/boxes/<split>/<clip>.npz`` (arrays
``boxes (K, 5) float32 [frame, x0, y0, x1, y1]``, ``frame_count``, ``frame_size``, ``config``, the JSON of
the :class:`ProposalConfig` used, and ``stamp``, :meth:`aedcli.data.clips.Clip.stamp` of the video they
were found in); a cache that cannot be read, was made with another config or from another version of the
video is reported and rebuilt. Caches written before stamps existed have none and are trusted.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aedcli.errors import UsageError, WeightsError
from aedcli.files import save_npz_atomic

log = logging.getLogger("aedcli")

METHODS = ("median", "mog2", "knn", "detector")
CACHE_VERSION = 3


@dataclass(frozen=True)
class ProposalConfig:
    """How boxes are found. Areas are fractions of the frame area, sizes fractions of the frame height."""

    method: str = "median"
    background_samples: int = 60
    diff_threshold: float = 18.0
    frame_diff: bool = True
    frame_diff_gap: int = 2
    blur: int = 5
    open_size: int = 3
    close_size: float = 0.04
    close_aspect: float = 0.35
    learning_rate: float = 0.001
    min_area: float = 0.0006
    border_min_area: float = 0.002
    max_area: float = 0.5
    min_side: int = 4
    detector: str | None = None
    detector_threshold: float = 0.5
    detector_classes: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"proposal method '{self.method}' is unknown; use one of {', '.join(METHODS)}.")
        if self.method == "detector" and not self.detector:
            raise UsageError(
                "proposal method 'detector' needs a local weights file; pass its path as detector."
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["detector_classes"] = list(self.detector_classes)
        return d


# ----------------------------------------------------------------------------------------------- background


def _reservoir(frames: Iterable[np.ndarray], keep: int) -> tuple[list[np.ndarray], int]:
    """Every ``stride``-th frame, the stride doubling whenever more than ``2 * keep`` are held.

    Bounded memory for streams of unknown length; returns the kept frames (evenly spread) and the count.
    """
    kept: list[np.ndarray] = []
    stride, n = 1, 0
    for i, frame in enumerate(frames):
        n = i + 1
        if i % stride == 0:
            kept.append(frame)
            if len(kept) > 2 * keep:
                kept = kept[::2]
                stride *= 2
    if len(kept) > keep:
        idx = np.linspace(0, len(kept) - 1, keep).round().astype(int)
        kept = [kept[i] for i in idx]
    return kept, n


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame


def _smooth(frame: np.ndarray, k: int) -> np.ndarray:
    return cv2.GaussianBlur(frame, (k, k), 0) if k > 1 else frame


def _clean_mask(mask: np.ndarray, cfg: ProposalConfig) -> np.ndarray:
    """Open (speckle), then close with a tall kernel scaled to the frame height.

    The closing kernel is ``close_aspect`` times narrower than high: it joins the head, torso and legs of one
    upright person (or a rider and the bike) without gluing people walking side by side into one blob.
    """
    if cfg.open_size > 1:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cfg.open_size, cfg.open_size))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, k)
    kh = max(3, round(cfg.close_size * mask.shape[0]) | 1)
    kw = max(3, round(cfg.close_size * cfg.close_aspect * mask.shape[0]) | 1)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kw, kh))
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, k)


def boxes_from_mask(mask: np.ndarray, cfg: ProposalConfig) -> np.ndarray:
    """Connected components of a cleaned (H, W) uint8 foreground mask -> (K, 4) float32 boxes."""
    h, w = mask.shape
    _n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    area_lo, area_hi = cfg.min_area * h * w, cfg.max_area * h * w
    out = []
    border_lo = cfg.border_min_area * h * w
    for x, y, bw, bh, area in stats[1:]:  # row 0 is the background
        if not (area_lo <= area <= area_hi and bw >= cfg.min_side and bh >= cfg.min_side):
            continue
        # a small blob cut by the frame border (a head entering the view) shows too little to be judged
        if (x == 0 or y == 0 or x + bw == w or y + bh == h) and area < border_lo:
            continue
        out.append((x, y, x + bw, y + bh))
    return np.asarray(out, dtype=np.float32).reshape(-1, 4)


def _median_masks(
    open_frames: Callable[[], Iterable[np.ndarray]], cfg: ProposalConfig
) -> Iterator[np.ndarray]:
    sample, _ = _reservoir((_gray(f) for f in open_frames()), cfg.background_samples)
    if not sample:
        return
    background = _smooth(np.median(np.stack(sample), axis=0).astype(np.uint8), cfg.blur)
    thr = cfg.diff_threshold
    gap = max(1, cfg.frame_diff_gap)
    window: list[np.ndarray] = []  # smoothed frames t-gap .. t+gap

    def mask_of(centre: int) -> np.ndarray:
        cur = window[centre]
        mask = cv2.absdiff(cur, background) > thr
        if cfg.frame_diff:
            # Three-frame difference: changed against both t-gap and t+gap marks where the object is at t,
            # not where it was (a plain difference leaves a ghost box behind fast objects).
            before, after = centre - gap, centre + gap
            if before >= 0 and after < len(window):  # near the clip's ends one difference would leave a ghost
                mask |= (cv2.absdiff(cur, window[before]) > thr) & (cv2.absdiff(cur, window[after]) > thr)
        return mask.astype(np.uint8) * 255

    emitted = 0  # frames already turned into masks
    first = 0  # clip index of window[0]
    for frame in open_frames():
        window.append(_smooth(_gray(frame), cfg.blur))
        if len(window) > 2 * gap + 1:
            window.pop(0)
            first += 1
        while emitted + gap < first + len(window):  # frame `emitted` has its t+gap neighbour
            yield mask_of(emitted - first)
            emitted += 1
    while emitted < first + len(window):
        yield mask_of(emitted - first)
        emitted += 1


def _subtractor_masks(
    open_frames: Callable[[], Iterable[np.ndarray]], cfg: ProposalConfig
) -> Iterator[np.ndarray]:
    if cfg.method == "mog2":
        sub = cv2.createBackgroundSubtractorMOG2(
            history=500, varThreshold=cfg.diff_threshold, detectShadows=True
        )
    else:
        sub = cv2.createBackgroundSubtractorKNN(history=500, detectShadows=True)
    sample, _ = _reservoir((_gray(f) for f in open_frames()), cfg.background_samples)
    # Warm-up: learn the background from frames spread over the clip, so the first frames are not all
    # foreground; several passes because the learning rate is 1/history at most.
    for _ in range(3):
        for f in sample:
            sub.apply(_smooth(f, cfg.blur))
    for frame in open_frames():
        # a slow rate while detecting: an object that stops for a few seconds must stay foreground
        fg = sub.apply(_smooth(_gray(frame), cfg.blur), learningRate=cfg.learning_rate)
        yield np.where(fg == 255, 255, 0).astype(np.uint8)  # 127 = shadow: dropped


def propose_clip(
    open_frames: Callable[[], Iterable[np.ndarray]],
    cfg: ProposalConfig,
    *,
    on_frame: Callable[[], None] | None = None,
) -> list[np.ndarray]:
    """Boxes of every frame of one clip: a list (one per frame) of (K, 4) float32 [x0, y0, x1, y1].

    ``open_frames`` returns a fresh iterator over the clip's frames each time it is called (the background
    methods read the clip twice: once to learn the background, once to find objects).
    """
    if cfg.method == "detector":
        detector = LocalDetector(Path(cfg.detector or ""), cfg.detector_threshold, cfg.detector_classes)
        out = []
        for frame in open_frames():
            out.append(detector(frame))
            if on_frame:
                on_frame()
        return out
    masks = _median_masks(open_frames, cfg) if cfg.method == "median" else _subtractor_masks(open_frames, cfg)
    out = []
    for mask in masks:
        out.append(boxes_from_mask(_clean_mask(mask, cfg), cfg))
        if on_frame:
            on_frame()
    return out


# ---------------------------------------------------------------------------------------------------- cache


def boxes_to_rows(per_frame: list[np.ndarray]) -> np.ndarray:
    """List of (K_t, 4) boxes -> (K, 5) float32 rows [frame, x0, y0, x1, y1]."""
    rows = [np.hstack([np.full((len(b), 1), t, np.float32), b]) for t, b in enumerate(per_frame) if len(b)]
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 5), np.float32)


def rows_to_boxes(rows: np.ndarray, frame_count: int) -> list[np.ndarray]:
    """Inverse of :func:`boxes_to_rows`."""
    frames = rows[:, 0].astype(np.int64)
    order = np.argsort(frames, kind="stable")
    rows, frames = rows[order], frames[order]
    cuts = np.searchsorted(frames, np.arange(frame_count + 1))
    return [rows[cuts[t] : cuts[t + 1], 1:5].astype(np.float32) for t in range(frame_count)]


@dataclass
class ClipBoxes:
    """The cached proposals of one clip."""

    boxes: list[np.ndarray]
    frame_size: tuple[int, int]

    @property
    def frame_count(self) -> int:
        return len(self.boxes)


def save_boxes(path: Path, clip_boxes: ClipBoxes, cfg: ProposalConfig, stamp: str = "") -> None:
    save_npz_atomic(
        path,
        boxes=boxes_to_rows(clip_boxes.boxes),
        frame_count=np.int64(clip_boxes.frame_count),
        frame_size=np.asarray(clip_boxes.frame_size, np.int64),
        config=np.asarray(json.dumps(cfg.to_dict(), sort_keys=True)),
        stamp=np.asarray(stamp),
        version=np.int64(CACHE_VERSION),
    )


def load_boxes(path: Path, cfg: ProposalConfig | None = None, stamp: str | None = None) -> ClipBoxes | None:
    """Read a box cache; ``None`` when it is absent, unreadable, of another version or another config.

    With ``stamp`` (the clip's :meth:`~aedcli.data.clips.Clip.stamp`), also ``None`` when the boxes were
    found in another version of the video.
    """
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION:
                log.warning("box cache %s is of another format version; rebuilding it.", path)
                return None
            if cfg is not None and json.loads(str(z["config"])) != cfg.to_dict():
                log.info("box cache %s was made with other proposal settings; rebuilding it.", path)
                return None
            made_from = str(z["stamp"]) if "stamp" in z.files else ""
            if stamp and made_from and made_from != stamp:
                log.info("box cache %s was made from another version of its video; rebuilding it.", path)
                return None
            n = int(z["frame_count"])
            rows = np.asarray(z["boxes"], np.float32).reshape(-1, 5)
            size = tuple(int(v) for v in z["frame_size"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("box cache %s is corrupt (%s); rebuilding it.", path, type(exc).__name__)
        return None
    if rows.size and (rows[:, 0].min() < 0 or rows[:, 0].max() >= n):
        log.warning("box cache %s has boxes outside its %d frames; rebuilding it.", path, n)
        return None
    return ClipBoxes(rows_to_boxes(rows, n), (size[0], size[1]))


def load_or_propose(
    path: Path,
    open_frames: Callable[[], Iterable[np.ndarray]],
    cfg: ProposalConfig,
    *,
    stamp: str = "",
    on_frame: Callable[[], None] | None = None,
) -> tuple[ClipBoxes, bool]:
    """Cached boxes of a clip, computing and caching them when needed; also says whether they were cached.

    ``stamp`` identifies the version of the video (:meth:`aedcli.data.clips.Clip.stamp`): a cache made from
    another one is rebuilt.
    """
    cached = load_boxes(path, cfg, stamp)
    if cached is not None:
        return cached, True
    size: list[int] = []

    def frames_recording_size() -> Iterator[np.ndarray]:
        for f in open_frames():
            if not size:
                size.extend(f.shape[:2])
            yield f

    boxes = propose_clip(frames_recording_size, cfg, on_frame=on_frame)
    result = ClipBoxes(boxes, (size[0], size[1]) if size else (0, 0))
    save_boxes(path, result, cfg, stamp)
    return result, False


# ------------------------------------------------------------------------------------------ local detector


class LocalDetector:
    """A user-supplied object detector read from a local file (nothing is ever downloaded).

    Accepted files:

    * ``*.pt`` / ``*.pth`` / ``*.torchscript``: a TorchScript module (``torch.jit.save``);
    * ``*.onnx``: an ONNX graph, run with onnxruntime (``pip install 'aedcli[onnx]'``).

    Contract of the model: input float32 ``(1, 3, H, W)``, RGB, values in [0, 1], at the frame's own size;
    output either one array ``(K, >=5)`` with rows ``[x0, y0, x1, y1, score, (class)]`` in input pixels, or
    a pair/tuple ``(boxes (K, 4), scores (K,)[, classes (K,)])``. Boxes scoring below ``threshold`` are
    dropped; when ``classes`` is not empty only those class ids are kept (needs a class column/output).
    Exported torchvision/YOLO detectors usually need a small wrapper to match this contract.
    """

    def __init__(self, path: Path, threshold: float = 0.5, classes: tuple[int, ...] = ()) -> None:
        if not path.is_file():
            raise WeightsError(
                f"detector file {path} does not exist; pass the path of a local .pt or .onnx file."
            )
        self.path, self.threshold, self.classes = path, threshold, tuple(classes)
        self._run: Callable[[np.ndarray], Any]
        if path.suffix.lower() == ".onnx":
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise WeightsError(
                    f"detector {path} is ONNX but onnxruntime is not installed; "
                    "run pip install 'aedcli[onnx]'."
                ) from exc
            try:
                session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise WeightsError(f"detector {path} is not a readable ONNX model; re-export it.") from exc
            name = session.get_inputs()[0].name
            self._run = lambda x: session.run(None, {name: x})
        else:
            import torch

            try:
                module = torch.jit.load(str(path), map_location="cpu").eval()
            except Exception as exc:
                raise WeightsError(
                    f"detector {path} is not a TorchScript file; save it with torch.jit.save or use ONNX."
                ) from exc

            def run(x: np.ndarray) -> Any:
                with torch.inference_mode():
                    return module(torch.from_numpy(x))

            self._run = run

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Boxes (K, 4) float32 of one frame (gray or BGR uint8)."""
        rgb = (
            cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
            if frame.ndim == 2
            else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        )
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        out = self._run(x)
        return self._parse(out, frame.shape[:2])

    def _parse(self, out: Any, size: tuple[int, int]) -> np.ndarray:
        def arr(v: Any) -> np.ndarray:
            return np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float32)

        if isinstance(out, dict):
            out = [out[k] for k in ("boxes", "scores", "labels") if k in out]
        if isinstance(out, (list, tuple)) and len(out) == 1:
            out = out[0]
        if isinstance(out, (list, tuple)):
            boxes = arr(out[0]).reshape(-1, 4)
            scores = arr(out[1]).reshape(-1)
            classes = arr(out[2]).reshape(-1) if len(out) > 2 else None
        else:
            rows = arr(out)
            rows = rows.reshape(-1, rows.shape[-1])
            if rows.shape[1] < 5:
                raise WeightsError(
                    f"detector {self.path} returned rows of {rows.shape[1]} values; expected "
                    "[x0, y0, x1, y1, score(, class)]."
                )
            boxes, scores = rows[:, :4], rows[:, 4]
            classes = rows[:, 5] if rows.shape[1] > 5 else None
        keep = scores >= self.threshold
        if self.classes:
            if classes is None:
                raise WeightsError(f"detector {self.path} returns no classes; drop the class filter.")
            keep &= np.isin(classes.astype(np.int64), np.asarray(self.classes))
        h, w = size
        boxes = boxes[keep]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        ok = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
        return boxes[ok].astype(np.float32)
