"""A small synthetic surveillance dataset with known anomalies, generated on first use.

A fixed camera looks at a textured walkway where pedestrians (small upright figures of varied size and grey
level) walk left and right at ordinary speeds; every frame gets mild sensor noise. Training videos hold only
that. Each test video holds one anomalous event, chosen in turn from:

- ``fast_mover``: a figure crossing 3-5x faster than anyone walks;
- ``wrong_direction``: a figure walking vertically where everyone else walks horizontally;
- ``large_object``: a wide, flat, car-sized object driving along the walkway;
- ``sudden_appearance``: an object that pops into view in mid-frame and stands still.

The event starts after some normal frames and is gone before the last ones, so every test video has both
normal and abnormal frames. Its pixel footprint is the mask, and a frame is abnormal exactly when its mask
is non-empty.

The dataset is written in the folder layout (:mod:`aedcli.data.folder`: ``train/``, ``test/`` as PNG frame
folders, ``labels/<video>.txt``, ``masks/<video>/``) into ``$AED_CACHE/synthetic-<hash>/`` (``AED_CACHE``
defaults to ``~/.cache/aed``), where the hash covers every :class:`SyntheticConfig` field, so the same
config always maps to the same bytes on disk. It is built in a temporary folder and renamed into place, so
an interrupted run leaves nothing half-written.

>>> ds = load_synthetic()                       # 4 train + 4 test videos, 64 frames of 120x160, < 2 s
>>> ds.test[0].name, int(ds.test[0].labels.sum())
('test01_fast_mover', ...)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from aedcli.data.clips import Dataset
from aedcli.data.folder import load_folder

# Part of the cache key: bump it whenever the generator's output changes for an unchanged config.
GENERATOR_VERSION = 1

ANOMALY_KINDS = ("fast_mover", "wrong_direction", "large_object", "sudden_appearance")


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that determines the generated dataset; sizes are in pixels at ``height`` = 120 and scale
    with the frame height."""

    seed: int = 0
    height: int = 120
    width: int = 160
    train_videos: int = 4
    test_videos: int = 4
    frames: int = 64
    pedestrians: int = 4  # figures in view at a time
    walk_speed: tuple[float, float] = (0.8, 1.6)  # px/frame, horizontal
    fast_factor: tuple[float, float] = (3.0, 5.0)  # fast movers: this many times a walking speed
    noise_sigma: float = 2.0  # grey levels of per-frame sensor noise
    anomalies: tuple[str, ...] = field(default=ANOMALY_KINDS)

    def __post_init__(self) -> None:
        if self.height < 32 or self.width < 32:
            raise ValueError(f"frames must be at least 32x32, got {self.height}x{self.width}")
        if self.frames < 16:
            raise ValueError(
                f"videos need at least 16 frames to hold normal and abnormal parts, got {self.frames}"
            )
        if self.train_videos < 0 or self.test_videos < 0:
            raise ValueError("video counts must not be negative")
        if not self.anomalies or set(self.anomalies) - set(ANOMALY_KINDS):
            raise ValueError(
                f"anomalies must be a non-empty selection of {ANOMALY_KINDS}, got {self.anomalies}"
            )

    def cache_key(self) -> str:
        """Short hash of the config and generator version: the name of its cache folder."""
        payload = json.dumps({"generator": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def cache_root() -> Path:
    """``$AED_CACHE``, or ``~/.cache/aed`` when it is not set."""
    return Path(os.environ.get("AED_CACHE") or Path.home() / ".cache" / "aed").expanduser()


def load_synthetic(config: SyntheticConfig | None = None, cache_dir: Path | None = None) -> Dataset:
    """Generate the dataset for ``config`` if it is not cached yet, then read it like a folder dataset."""
    return load_folder(generate_synthetic(config, cache_dir), name="synthetic")


def generate_synthetic(config: SyntheticConfig | None = None, cache_dir: Path | None = None) -> Path:
    """The folder holding the dataset for ``config`` under ``cache_dir`` (default :func:`cache_root`),
    generated now when it does not exist yet."""
    config = config or SyntheticConfig()
    parent = Path(cache_dir) if cache_dir is not None else cache_root()
    return cached_folder(parent / f"synthetic-{config.cache_key()}", lambda out: _write_dataset(config, out))


def cached_folder(final: Path, write: Callable[[Path], None]) -> Path:
    """``final``, first written by ``write`` into a temporary folder beside it and renamed into place when it
    does not exist yet, so that an interrupted run leaves nothing half-written."""
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        write(tmp)
        os.replace(tmp, final)
    except OSError:
        # Another process may have finished the same folder first; its copy is identical, keep it.
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.is_dir():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# --- writing ---


def _write_dataset(config: SyntheticConfig, out: Path) -> None:
    background = _background(config)
    for i in range(config.train_videos):
        frames, _ = _render_video(
            config, background, np.random.default_rng([config.seed, 0, i]), anomaly=None
        )
        write_frames(out / "train" / f"train{i + 1:02d}", frames)
    for i in range(config.test_videos):
        kind = config.anomalies[i % len(config.anomalies)]
        rng = np.random.default_rng([config.seed, 1, i])
        frames, masks = _render_video(config, background, rng, anomaly=kind)
        name = f"test{i + 1:02d}_{kind}"
        write_frames(out / "test" / name, frames)
        write_frames(out / "masks" / name, [m.astype(np.uint8) * 255 for m in masks])
        labels = "".join(f"{int(m.any())}\n" for m in masks)
        (out / "labels").mkdir(exist_ok=True)
        (out / "labels" / f"{name}.txt").write_text(labels, encoding="utf-8")
    (out / "config.json").write_text(
        json.dumps({"generator": GENERATOR_VERSION, **asdict(config)}, indent=2) + "\n", encoding="utf-8"
    )


def write_frames(folder: Path, frames: list[np.ndarray]) -> None:
    folder.mkdir(parents=True)
    digits = max(3, len(str(len(frames))))
    for t, frame in enumerate(frames, start=1):
        if not cv2.imwrite(str(folder / f"{t:0{digits}d}.png"), frame):
            raise OSError(f"cannot write {folder / f'{t:0{digits}d}.png'}")


# --- rendering ---


@dataclass
class _Figure:
    """Something moving through the scene: a boolean sprite at a float position with a constant velocity."""

    sprite: np.ndarray  # (h, w) bool
    shade: np.ndarray  # (h, w) uint8 grey levels
    x: float  # left edge
    y: float  # top edge
    vx: float
    vy: float
    bob: float = 0.0  # amplitude (px) of the vertical bounce of a walking gait
    phase: float = 0.0

    def top_left(self, t: int) -> tuple[int, int]:
        bounce = self.bob * np.sin(self.phase + 0.9 * t)
        return round(self.y + self.vy * t + bounce), round(self.x + self.vx * t)

    def gone(self, t: int, width: int) -> bool:
        """True once the figure has walked out of the frame for good."""
        left = self.x + self.vx * t
        return (self.vx > 0 and left >= width) or (self.vx < 0 and left + self.sprite.shape[1] <= 0)


def _background(config: SyntheticConfig) -> np.ndarray:
    """A smooth noise texture (two octaves, bicubic upsampling) with a lighter walkway band; float32."""
    rng = np.random.default_rng([config.seed, 2])
    h, w = config.height, config.width
    texture = np.zeros((h, w), np.float32)
    for cells, amplitude in ((8, 18.0), (24, 8.0)):
        coarse = rng.normal(0.0, 1.0, (max(2, h // cells), max(2, w // cells))).astype(np.float32)
        texture += amplitude * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    rows = np.arange(h, dtype=np.float32)[:, None]
    walkway = 14.0 * np.exp(-(((rows - 0.6 * h) / (0.25 * h)) ** 2))
    return 120.0 + texture + walkway


def _render_video(
    config: SyntheticConfig, background: np.ndarray, rng: np.random.Generator, anomaly: str | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames ``(H, W) uint8`` and anomaly masks ``(H, W) bool`` of one video."""
    h, w, n = config.height, config.width, config.frames
    scale = h / 120.0
    lighting = rng.uniform(-6.0, 6.0)  # videos were recorded at slightly different times of day
    walkers = [_walker(config, rng, scale, t0=0, anywhere=True) for _ in range(config.pedestrians)]
    respawn_at = [-1] * len(walkers)  # frame at which a replacement enters; -1 while the walker is in view

    event = None
    if anomaly is not None:
        start = int(rng.integers(n // 5, n // 3 + 1))
        end = min(start + int(rng.integers(n // 4, n // 2 + 1)), n - max(2, n // 8))
        event = (start, end, _anomalous_figure(anomaly, config, rng, scale, start))

    frames, masks = [], []
    for t in range(n):
        frame = background + lighting
        for i, walker in enumerate(walkers):
            if walker.gone(t, w):
                # A new pedestrian enters from an edge a few frames after this one left.
                if respawn_at[i] < 0:
                    respawn_at[i] = t + int(rng.integers(0, 10))
                if t >= respawn_at[i]:
                    walkers[i] = _walker(config, rng, scale, t0=t, anywhere=False)
                    respawn_at[i] = -1
            _draw(frame, walkers[i], t)
        mask = np.zeros((h, w), bool)
        if event is not None and event[0] <= t < event[1]:
            _draw(frame, event[2], t, mask)
        frame += rng.normal(0.0, config.noise_sigma, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        masks.append(mask)
    return frames, masks


def _person_sprite(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """An upright figure: an elliptic body with a darker head, of random size and grey level."""
    ph = max(6, round(rng.uniform(14, 22) * scale))
    pw = max(3, round(rng.uniform(5, 9) * scale))
    yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32) + 0.5
    head = max(2.0, ph * 0.22)
    body = ((xx - pw / 2) / (pw / 2)) ** 2 + ((yy - head - (ph - head) / 2) / ((ph - head) / 2)) ** 2 <= 1.0
    head_mask = (xx - pw / 2) ** 2 + (yy - head / 2) ** 2 <= (min(head, pw) / 2) ** 2
    # Dark or light clothing, always set apart from the mid-grey ground.
    grey = rng.uniform(25, 80) if rng.random() < 0.5 else rng.uniform(180, 235)
    shade = np.where(head_mask, grey * 0.8, grey).astype(np.uint8)
    return body | head_mask, shade


def _walker(
    config: SyntheticConfig, rng: np.random.Generator, scale: float, t0: int, anywhere: bool
) -> _Figure:
    """A pedestrian walking horizontally along the walkway, placed anywhere (first frame) or at an edge."""
    sprite, shade = _person_sprite(rng, scale)
    ph, pw = sprite.shape
    speed = rng.uniform(*config.walk_speed) * scale * (1 if rng.random() < 0.5 else -1)
    entry_x = -pw + 1.0 if speed > 0 else config.width - 1.0
    x_now = rng.uniform(0, config.width - pw) if anywhere else entry_x
    y = rng.uniform(0.3 * config.height, 0.9 * config.height - ph)
    drift = rng.uniform(-0.05, 0.05) * scale  # people do not walk perfectly level
    phase = rng.uniform(0, 2 * np.pi)
    return _Figure(sprite, shade, x=x_now - speed * t0, y=y, vx=speed, vy=drift, bob=0.6 * scale, phase=phase)


def _anomalous_figure(
    kind: str, config: SyntheticConfig, rng: np.random.Generator, scale: float, t0: int
) -> _Figure:
    """The object of an anomalous event, positioned so that it is in view at frame ``t0``."""
    h, w = config.height, config.width
    if kind == "fast_mover":
        sprite, shade = _person_sprite(rng, scale)
        speed = rng.uniform(*config.walk_speed) * rng.uniform(*config.fast_factor) * scale
        speed *= 1 if rng.random() < 0.5 else -1
        x_now = -sprite.shape[1] + 2.0 if speed > 0 else w - 2.0
        y = rng.uniform(0.3 * h, 0.9 * h - sprite.shape[0])
        return _Figure(sprite, shade, x=x_now - speed * t0, y=y, vx=speed, vy=0.0, bob=0.6 * scale)
    if kind == "wrong_direction":
        sprite, shade = _person_sprite(rng, scale)
        speed = rng.uniform(*config.walk_speed) * 1.2 * scale
        down = rng.random() < 0.5
        y_now = 0.1 * h if down else 0.9 * h - sprite.shape[0]
        x = rng.uniform(0.2 * w, 0.8 * w - sprite.shape[1])
        vy = speed if down else -speed
        return _Figure(sprite, shade, x=x, y=y_now - vy * t0, vx=0.0, vy=vy, bob=0.6 * scale)
    if kind == "large_object":
        ch, cw = round(rng.uniform(0.10, 0.14) * h), round(rng.uniform(0.25, 0.32) * w)
        sprite = np.ones((ch, cw), bool)
        grey = rng.uniform(30, 70) if rng.random() < 0.5 else rng.uniform(190, 230)
        shade = np.full((ch, cw), grey, np.float32)
        shade[ch // 5 : ch // 2, cw // 6 : -cw // 6] = 0.6 * grey + 40  # a window band
        speed = rng.uniform(*config.walk_speed) * 1.5 * scale * (1 if rng.random() < 0.5 else -1)
        x_now = -cw + 2.0 if speed > 0 else w - 2.0
        y = rng.uniform(0.35 * h, 0.9 * h - ch)
        return _Figure(sprite, shade.astype(np.uint8), x=x_now - speed * t0, y=y, vx=speed, vy=0.0)
    if kind == "sudden_appearance":
        side = max(4, round(rng.uniform(0.12, 0.16) * h))
        sprite = np.ones((side, side), bool)
        grey = rng.uniform(20, 60) if rng.random() < 0.5 else rng.uniform(200, 240)
        shade = np.full((side, side), grey, np.uint8)
        x = rng.uniform(0.25 * w, 0.75 * w - side)
        y = rng.uniform(0.35 * h, 0.85 * h - side)
        return _Figure(sprite, shade, x=x, y=y, vx=0.0, vy=0.0)
    raise ValueError(f"unknown anomaly kind {kind!r}")


def _draw(frame: np.ndarray, figure: _Figure, t: int, mask: np.ndarray | None = None) -> None:
    """Paint ``figure`` at time ``t`` into ``frame`` (clipped at the borders), marking ``mask`` if given."""
    top, left = figure.top_left(t)
    sh, sw = figure.sprite.shape
    fh, fw = frame.shape
    y0, y1, x0, x1 = max(top, 0), min(top + sh, fh), max(left, 0), min(left + sw, fw)
    if y0 >= y1 or x0 >= x1:
        return
    sprite = figure.sprite[y0 - top : y1 - top, x0 - left : x1 - left]
    region = frame[y0:y1, x0:x1]
    region[sprite] = figure.shade[y0 - top : y1 - top, x0 - left : x1 - left][sprite]
    if mask is not None:
        mask[y0:y1, x0:x1] |= sprite
