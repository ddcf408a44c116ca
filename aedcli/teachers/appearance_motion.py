"""Teacher A, "appearance and motion": per-object auto-encoders and classifiers against pseudo-anomalies.

In the spirit of the background-agnostic framework (Georgescu, Ionescu, Khan, Popescu, Shah, "A
Background-Agnostic Framework with Adversarial Training for Abnormal Event Detection in Video", TPAMI 2021),
written from that description and trained on the user's normal footage only:

* per object, an **appearance** input (the crop at frame t) and a **motion** input of two temporal
  gradients, ``|t - (t-3)|`` and ``|(t+3) - t|`` (the tube's frames 3, 0 and 6), all resized to
  ``input_size`` pixels;
* one small convolutional **auto-encoder** per stream (appearance: 1 channel, motion: 2 channels), trained
  to reconstruct normal objects well and, adversarially, to reconstruct **pseudo-anomalies** badly: their
  error is pushed up by a hinge ``relu(margin * e_normal - e_pseudo)`` (a bounded, clipped form of gradient
  ascent, so the auto-encoder cannot be driven to diverge);
* pseudo-anomalies are made from the normal objects themselves, so nothing is downloaded: for appearance,
  synthetic textures (smooth noise, stripes, checkers), rotated / upside-down / patch-shuffled crops; for
  motion, tubes with skipped frames (faster motion), rigid shifts of frame t by several pixels (sudden fast
  motion) and gradients between two different objects (impossible motion);
* one small **classifier** per stream, normal vs pseudo-abnormal, looking at the input and its
  reconstruction;
* the object's **speed** (source pixels per frame, from dense optical flow inside the tube window): the
  temporal gradients show *that* something moved, not how far, once an object's two copies stop
  overlapping - and on footage of walkers, speed is what sets bikes and carts apart;
* the object score combines five weighted components - appearance and motion reconstruction errors,
  appearance and motion classifier logits, speed - each measured on the normal training objects.
  ``combine="tail-max"`` (the default) takes the largest of their rarities among normal objects, ``-ln q``
  with ``q`` the share of normal training objects scoring as high or higher
  (:class:`aedcli.teachers.calibration.TailModel`), so an object is as abnormal as its most unusual
  component and no component's long normal tail outweighs the others; ``"tail-sum"`` adds the rarities;
  ``"linear"`` (the default of files written before it existed) adds the components calibrated 0 at the
  normal median and 1 at the 99th percentile (``aed teach --a-combine``).

Default weights (``AppearanceMotionConfig.weights``): 1 for the appearance error, both classifiers and
speed; 0 for the motion reconstruction error. They were chosen on the synthetic development set
(``scripts/teacher_dev.py``, with the linear combination: micro AUC 0.903 without the motion error, 0.853
with all five, 0.705 speed alone), never on a benchmark's test set; so was the combination (0.941 for
``tail-max``, 0.920 ``tail-sum``, 0.903 ``linear``). The raw motion error mostly measures how cluttered a
crop is (a group of walkers is hard to reconstruct, a lone cyclist easy); the motion auto-encoder still
counts through the motion classifier, which judges its input together with its reconstruction. Raise the
appearance weights for footage where appearance matters more than speed.

>>> teacher = AppearanceMotionTeacher(AppearanceMotionConfig(epochs=8))
>>> teacher.fit(train_batches)                 # normal ObjectBatches
>>> teacher.score(batch)                        # (N,) float32, higher = more abnormal
>>> teacher.save(Path("teacher.pt")); AppearanceMotionTeacher.load(Path("teacher.pt"))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aedcli.errors import WeightsError
from aedcli.teachers.base import TUBE_RADIUS, ObjectBatch
from aedcli.teachers.calibration import TailModel

FORMAT = "aed-teacher-appearance-motion"
FORMAT_VERSION = 2
COMPONENTS = ("appearance_error", "motion_error", "appearance_class", "motion_class", "motion_speed")
# How the weighted components make one score: "linear" adds them after a linear calibration (0 at the
# normal training median, 1 at the 99th percentile); "tail-sum" adds, and "tail-max" takes the largest of,
# their rarity among normal training objects, -ln(share scoring as high or higher).
COMBINES = ("linear", "tail-sum", "tail-max")


@dataclass
class AppearanceMotionConfig:
    """Sizes and training settings of teacher A."""

    input_size: int = 32
    motion_gain: float = 3.0
    latent_channels: int = 16
    width: int = 32
    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    adversarial_weight: float = 0.5
    adversarial_margin: float = 4.0
    margin: float = 0.1
    speed_area: float = 0.5
    combine: str = "tail-max"
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "appearance_error": 1.0,
            "motion_error": 0.0,
            "appearance_class": 1.0,
            "motion_class": 1.0,
            "motion_speed": 1.0,
        }
    )

    def __post_init__(self) -> None:
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {', '.join(COMBINES)}, not '{self.combine}'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AppearanceMotionConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


# ------------------------------------------------------------------------------------------------ networks


class ConvAutoEncoder(nn.Module):
    """(B, C, S, S) in [0, 1] -> latent (B, L, S/8, S/8) -> reconstruction (B, C, S, S) in [0, 1]."""

    def __init__(self, channels: int, width: int = 32, latent: int = 16) -> None:
        super().__init__()
        act = nn.LeakyReLU(0.1)
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), act,  # (B, w, S/2, S/2)
            nn.Conv2d(width, 2 * width, 4, 2, 1), act,  # (B, 2w, S/4, S/4)
            nn.Conv2d(2 * width, latent, 4, 2, 1),  # (B, L, S/8, S/8): the bottleneck
        )  # fmt: skip
        self.decoder = nn.Sequential(
            act,
            nn.ConvTranspose2d(latent, 2 * width, 4, 2, 1), act,  # (B, 2w, S/4, S/4)
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), act,  # (B, w, S/2, S/2)
            nn.ConvTranspose2d(width, channels, 4, 2, 1),  # (B, C, S, S)
            nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class PseudoAnomalyClassifier(nn.Module):
    """Input and reconstruction (B, 2C, S, S) -> logit (B,): > 0 means pseudo-abnormal."""

    def __init__(self, channels: int, width: int = 16) -> None:
        super().__init__()
        act = nn.LeakyReLU(0.1)
        self.features = nn.Sequential(
            nn.Conv2d(2 * channels, width, 4, 2, 1), act,  # (B, w, S/2, S/2)
            nn.Conv2d(width, 2 * width, 4, 2, 1), act,  # (B, 2w, S/4, S/4)
            nn.Conv2d(2 * width, 2 * width, 4, 2, 1), act,  # (B, 2w, S/8, S/8)
            nn.AdaptiveMaxPool2d(2),  # (B, 2w, 2, 2)
            nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(8 * width, 1)

    def forward(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(torch.cat([x, recon], dim=1))).squeeze(1)


class Stream(nn.Module):
    """One input stream (appearance or motion): its auto-encoder and its classifier."""

    def __init__(self, channels: int, cfg: AppearanceMotionConfig) -> None:
        super().__init__()
        self.ae = ConvAutoEncoder(channels, cfg.width, cfg.latent_channels)
        self.classifier = PseudoAnomalyClassifier(channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> reconstruction (B, C, S, S), per-object error (B,), classifier logit (B,)."""
        recon = self.ae(x)
        err = (recon - x).pow(2).flatten(1).mean(1)
        logit = self.classifier(x, recon.detach())
        return recon, err, logit


# ------------------------------------------------------------------------------------------------ inputs


def shrink_tubes(tubes: np.ndarray, size: int) -> torch.Tensor:
    """(N, T, 64, 64) uint8 -> (N, T, size, size) uint8 tensor (area resampling)."""
    x = torch.from_numpy(np.ascontiguousarray(tubes))
    if x.shape[-1] == size:
        return x
    y = F.interpolate(x.float(), size=(size, size), mode="area")
    return y.round().clamp(0, 255).to(torch.uint8)


def appearance_input(tubes: torch.Tensor) -> torch.Tensor:
    """(N, T, S, S) uint8 -> (N, 1, S, S) float in [0, 1]: frame t."""
    return tubes[:, TUBE_RADIUS : TUBE_RADIUS + 1].float() / 255.0


def motion_input(tubes: torch.Tensor, gain: float, gaps: tuple[int, int] = (3, 3)) -> torch.Tensor:
    """(N, T, S, S) uint8 -> (N, 2, S, S): |t - (t-a)| and |(t+b) - t|, times ``gain``, clipped to [0, 1]."""
    f = tubes.float() / 255.0
    c = TUBE_RADIUS
    prev = (f[:, c] - f[:, c - gaps[0]]).abs()
    nxt = (f[:, c + gaps[1]] - f[:, c]).abs()
    return (torch.stack([prev, nxt], 1) * gain).clamp(0, 1)


def object_speeds(tubes: np.ndarray, boxes: np.ndarray, area: float, margin: float = 0.1) -> np.ndarray:
    """How fast the fastest ``area`` source pixels of each object move, in source pixels per frame; (N,).

    Dense optical flow (OpenCV DIS) inside the tube window, over one frame (mean of t-1 -> t and t -> t+1)
    and over three (mean of t-3 -> t and t -> t+3, divided by 3); crop pixels are converted to source
    pixels with the window side (the box's longer side plus ``margin`` on each side). The value is the flow
    magnitude reached by ``area`` source pixels of the window: a region of fixed size in the scene, so a
    swinging leg or a few noisy pixels of a small box cannot score like a whole bike or cart moving fast.
    Of the two gaps the larger value counts: three frames measure slow objects more finely, one frame still
    works for objects so fast that they leave the window within three. A small object whose whole window is
    smaller than ``area`` scores its slowest pixel, about 0.

    The temporal gradients used by the auto-encoders show *that* something moved, not how far once an
    object's two copies stop overlapping; this is the complementary, absolute measure.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    c = TUBE_RADIUS
    out = np.zeros(len(tubes), np.float32)

    def magnitude(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        flow = dis.calc(np.ascontiguousarray(a), np.ascontiguousarray(b), None)
        return np.hypot(flow[..., 0], flow[..., 1])

    for i, tube in enumerate(tubes):
        one = (magnitude(tube[c - 1], tube[c]) + magnitude(tube[c], tube[c + 1])) / 2.0  # (S, S) per frame
        three = (magnitude(tube[0], tube[c]) + magnitude(tube[c], tube[2 * c])) / (2.0 * c)
        side = float(max(boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1], 1.0)) * (1.0 + 2.0 * margin)
        scale = side / tube.shape[-1]  # source pixels per crop pixel
        k = int(min(max(1, round(area / scale**2)), one.size))
        # the k-th fastest crop pixel, in source pixels per frame, for each gap; the larger one counts
        out[i] = max(float(np.partition(m.ravel(), m.size - k)[m.size - k]) for m in (one, three)) * scale
    return out


# -------------------------------------------------------------------------------------- pseudo-anomalies


def pseudo_appearance(normal: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Out-of-domain appearance crops (B, 1, S, S) made from a batch of normal crops (B, 1, S, S)."""
    b, _, s, _ = normal.shape
    kind = torch.randint(0, 5, (b,), generator=gen)
    out = torch.empty_like(normal)
    # smooth random textures at several scales
    coarse = torch.rand(b, 1, 4, 4, generator=gen)
    noise = F.interpolate(coarse, size=(s, s), mode="bicubic", align_corners=False).clamp(0, 1)
    noise = 0.7 * noise + 0.3 * torch.rand(b, 1, s, s, generator=gen)
    # stripes or checkers of random frequency and direction
    yy, xx = torch.meshgrid(torch.arange(s).float(), torch.arange(s).float(), indexing="ij")
    freq = 0.2 + 0.8 * torch.rand(b, 1, 1, generator=gen)
    ang = torch.rand(b, 1, 1, generator=gen) * np.pi
    u = xx * torch.cos(ang) + yy * torch.sin(ang)
    v = -xx * torch.sin(ang) + yy * torch.cos(ang)
    stripes = 0.5 + 0.5 * torch.sin(freq * u)
    checker = ((torch.sin(freq * u) * torch.sin(freq * v)) > 0).float()
    pattern = torch.where(torch.rand(b, 1, 1, generator=gen) < 0.5, stripes, checker)[:, None]
    rot = torch.rot90(normal, k=1, dims=(2, 3))
    flip = torch.flip(normal, dims=(2,))  # upside down
    # patch shuffle: 4x4 grid of patches in random order
    g = 4
    p = s // g
    patches = normal[:, :, : g * p, : g * p].unfold(2, p, p).unfold(3, p, p)  # (B, 1, g, g, p, p)
    patches = patches.reshape(b, 1, g * g, p, p)
    perm = torch.argsort(torch.rand(b, g * g, generator=gen), dim=1)
    shuffled = torch.gather(patches, 2, perm[:, None, :, None, None].expand_as(patches))
    shuffled = shuffled.reshape(b, 1, g, g, p, p).permute(0, 1, 2, 4, 3, 5).reshape(b, 1, g * p, g * p)
    shuffled = F.pad(shuffled, (0, s - g * p, 0, s - g * p), mode="replicate")
    choices = [noise, pattern, rot, flip, shuffled]
    for k, img in enumerate(choices):
        sel = kind == k
        out[sel] = img[sel]
    return out


def _shift(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Translate each image of (B, 1, S, S) by (dx, dy) pixels (border pixels repeated)."""
    b, _, s, _ = x.shape
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -2.0 * dx / s
    theta[:, 1, 2] = -2.0 * dy / s
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def pseudo_motion(tubes: torch.Tensor, gain: float, gen: torch.Generator) -> torch.Tensor:
    """Abnormal-motion inputs (B, 2, S, S) made from normal tubes (B, T, S, S) uint8."""
    b, _, s, _ = tubes.shape
    kind = torch.randint(0, 3, (b,), generator=gen)
    f = tubes.float() / 255.0
    c = TUBE_RADIUS
    # 1. skipped frames: displacement over 6 (and 5) frames instead of 3 = about twice the speed
    faster = torch.stack([(f[:, c + 3] - f[:, c - 3]).abs(), (f[:, c + 2] - f[:, c - 3]).abs()], 1)
    # 2. rigid shift of frame t by 3..9 pixels (at S=32; scaled with S): a sudden fast motion
    mag = (3.0 + 6.0 * torch.rand(b, generator=gen)) * s / 32.0
    ang = torch.rand(b, generator=gen) * 2 * np.pi
    dx, dy = mag * torch.cos(ang), mag * torch.sin(ang)
    centre = f[:, c : c + 1]
    shifted = torch.cat(
        [(centre - _shift(centre, dx, dy)).abs(), (_shift(centre, -dx, -dy) - centre).abs()], 1
    )
    # 3. gradients between two different objects: motion no normal object makes
    other = f[torch.roll(torch.arange(b), 1)]
    mixed = torch.stack([(f[:, c] - other[:, c - 3]).abs(), (other[:, c + 3] - f[:, c]).abs()], 1)
    out = torch.where((kind == 0)[:, None, None, None], faster, shifted)
    out = torch.where((kind == 2)[:, None, None, None], mixed, out)
    return (out * gain).clamp(0, 1)


# ------------------------------------------------------------------------------------------------ teacher


class AppearanceMotionTeacher:
    """Teacher A: implements :class:`aedcli.teachers.base.ObjectTeacher`."""

    name = "a"

    def __init__(self, config: AppearanceMotionConfig | None = None) -> None:
        self.config = config or AppearanceMotionConfig()
        self.appearance = Stream(1, self.config)
        self.motion = Stream(2, self.config)
        # linear calibration of each component on normal training objects: {name: (median, p99 - median)}
        self.stats: dict[str, tuple[float, float]] = {}
        # each component's normal distribution, for the tail combinations: {name: TailModel}
        self.tails: dict[str, TailModel] = {}
        self.speed_area = 1.0  # source pixels; set by fit from the training objects
        self.fitted = False

    # ---- training

    def _stream_loss(
        self, stream: Stream, normal: torch.Tensor, pseudo: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        x = torch.cat([normal, pseudo])
        _, err, logit = stream(x)
        b = len(normal)
        e_n, e_p = err[:b], err[b:]
        # Bounded adversarial term: pseudo-anomalies should be reconstructed at least `margin` times worse
        # than normal objects; beyond that margin they exert no gradient (no unbounded ascent).
        target = cfg.adversarial_margin * e_n.detach().mean()
        adv = F.relu(target - e_p).mean()
        labels = torch.cat([torch.zeros(b), torch.ones(len(pseudo))])
        cls = F.binary_cross_entropy_with_logits(logit, labels)
        loss = e_n.mean() + cfg.adversarial_weight * adv + cls
        acc = ((logit > 0).float() == labels).float().mean()
        return loss, {
            "rec": float(e_n.detach().mean()),
            "rec_pseudo": float(e_p.detach().mean()),
            "acc": float(acc),
        }

    def fit(
        self,
        batches: list[ObjectBatch],
        *,
        epochs: int | None = None,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Train both streams on normal objects; ``progress(step, total)`` is called after every step."""
        cfg = self.config
        epochs = cfg.epochs if epochs is None else int(epochs)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        # Fresh networks drawn from the seed: their initial weights are part of what the seed repeats.
        self.appearance = Stream(1, cfg)
        self.motion = Stream(2, cfg)
        tubes = torch.cat([shrink_tubes(b.tubes, cfg.input_size) for b in batches if len(b)])
        boxes = np.concatenate([b.boxes for b in batches if len(b)])
        # the fast region measured by the speed component: a fraction of a typical normal object's area
        self.speed_area = cfg.speed_area * float(
            np.median((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        )
        speeds = np.concatenate(
            [object_speeds(b.tubes, b.boxes, self.speed_area, cfg.margin) for b in batches if len(b)]
        )
        n = len(tubes)
        if n == 0:
            raise ValueError("teacher A needs at least one normal training object to fit")
        params = list(self.appearance.parameters()) + list(self.motion.parameters())
        opt = torch.optim.Adam(params, lr=cfg.lr)
        bs = min(cfg.batch_size, n)
        steps_per_epoch = max(1, n // bs)
        total = epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))
        history: list[dict[str, float]] = []
        self.appearance.train()
        self.motion.train()
        step = 0
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            sums: dict[str, float] = {}
            for i in range(steps_per_epoch):
                idx = order[i * bs : (i + 1) * bs]
                tb = tubes[idx]
                app = appearance_input(tb)
                mot = motion_input(tb, cfg.motion_gain)
                loss_a, la = self._stream_loss(self.appearance, app, pseudo_appearance(app, gen))
                loss_m, lm = self._stream_loss(self.motion, mot, pseudo_motion(tb, cfg.motion_gain, gen))
                opt.zero_grad(set_to_none=True)
                (loss_a + loss_m).backward()
                opt.step()
                sched.step()
                for k, v in {
                    **{f"app_{k}": v for k, v in la.items()},
                    **{f"mot_{k}": v for k, v in lm.items()},
                }.items():
                    sums[k] = sums.get(k, 0.0) + v / steps_per_epoch
                step += 1
                if progress:
                    progress(step, total)
            history.append(sums)
        self.appearance.eval()
        self.motion.eval()
        self._calibrate(self._components(tubes, speeds))
        self.fitted = True
        return {"objects": n, "epochs": epochs, "steps": total, "last_epoch": history[-1] if history else {}}

    def _calibrate(self, comps: dict[str, np.ndarray]) -> None:
        """Every component's statistics on normal training objects: the linear calibration (0 at their
        median, 1 at their 99th percentile, so components with different tails weigh alike where decisions
        are made) and the tail model of their distribution."""
        self.stats = {}
        for k, v in comps.items():
            p50, p99 = np.percentile(v, [50, 99])
            self.stats[k] = (float(p50), float(max(p99 - p50, 1e-6)))
        self.tails = {k: TailModel.from_training(v) for k, v in comps.items()}

    def calibrate(self, batches: list[ObjectBatch]) -> None:
        """Measure the components again on normal objects ``batches`` (the training objects), keeping the
        networks: how a teacher trained before the tail combinations existed gets their statistics."""
        if not self.fitted:
            raise RuntimeError("teacher A must be fitted or loaded before it is calibrated")
        cfg = self.config
        batches = [b for b in batches if len(b)]
        if not batches:
            raise ValueError("teacher A needs at least one normal object to be calibrated")
        tubes = torch.cat([shrink_tubes(b.tubes, cfg.input_size) for b in batches])
        speeds = np.concatenate(
            [object_speeds(b.tubes, b.boxes, self.speed_area, cfg.margin) for b in batches]
        )
        self._calibrate(self._components(tubes, speeds))

    # ---- scoring

    @torch.no_grad()
    def _components(self, tubes: torch.Tensor, speeds: np.ndarray, chunk: int = 512) -> dict[str, np.ndarray]:
        """Raw components per object: shrunk tubes (N, T, S, S) uint8 and speeds (N,)."""
        out: dict[str, list[np.ndarray]] = {k: [] for k in COMPONENTS}
        for i in range(0, len(tubes), chunk):
            tb = tubes[i : i + chunk]
            _, ea, la = self.appearance(appearance_input(tb))
            _, em, lm = self.motion(motion_input(tb, self.config.motion_gain))
            for k, v in zip(COMPONENTS[:4], (ea, em, la, lm), strict=True):
                out[k].append(v.numpy())
        out["motion_speed"] = [np.asarray(speeds, np.float32)]
        return {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in out.items()}

    def raw_components(self, batch: ObjectBatch) -> dict[str, np.ndarray]:
        """Uncalibrated components per object, {name: (N,) float32}."""
        if not self.fitted:
            raise RuntimeError("teacher A must be fitted or loaded before scoring")
        if len(batch) == 0:
            return {k: np.zeros(0, np.float32) for k in COMPONENTS}
        speeds = object_speeds(batch.tubes, batch.boxes, self.speed_area, self.config.margin)
        return self._components(shrink_tubes(batch.tubes, self.config.input_size), speeds)

    def calibrated(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Linear calibration: 0 = median, 1 = 99th percentile of normal training objects."""
        return {k: ((raw[k] - self.stats[k][0]) / self.stats[k][1]).astype(np.float32) for k in COMPONENTS}

    def rarities(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """-ln(share of normal training objects scoring as high or higher), per component."""
        if not self.tails:
            raise RuntimeError(
                "this teacher A has no tail statistics; calibrate it on its training objects first"
            )
        return {k: self.tails[k].rarity(raw[k]) for k in COMPONENTS}

    def score_components(self, batch: ObjectBatch) -> dict[str, np.ndarray]:
        """Linearly calibrated components per object (0 = normal median, 1 = normal 99th percentile)."""
        return self.calibrated(self.raw_components(batch))

    def combine(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        """One score per object, (N,) float32, from raw components, as ``config.combine`` says."""
        weights = {k: np.float32(w) for k, w in self.config.weights.items() if w != 0}
        n = len(next(iter(raw.values()))) if raw else 0
        parts = self.calibrated(raw) if self.config.combine == "linear" else self.rarities(raw)
        stack = np.stack([w * parts[k] for k, w in weights.items()]) if weights else np.zeros((1, n))
        total = stack.max(axis=0) if self.config.combine == "tail-max" else stack.sum(axis=0)
        return total.astype(np.float32)

    def score(self, batch: ObjectBatch) -> np.ndarray:
        """Raw anomaly score per object, (N,) float32: the weighted components, combined."""
        return self.combine(self.raw_components(batch))

    # ---- persistence

    def save(self, path: Path) -> None:
        """Tensors and JSON-able values only, so :meth:`load` can use ``weights_only=True``."""
        from aedcli.files import atomic_path

        state = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "stats": {k: [m, s] for k, (m, s) in self.stats.items()},
            "tails": {k: t.to_dict() for k, t in self.tails.items()},
            "speed_area": float(self.speed_area),
            "appearance": self.appearance.state_dict(),
            "motion": self.motion.state_dict(),
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    @classmethod
    def load(cls, path: Path) -> AppearanceMotionTeacher:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(
                f"teacher file {path} cannot be read; delete it so it is trained again."
            ) from exc
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise WeightsError(
                f"teacher file {path} is not an appearance-motion teacher; delete it or fix --teachers."
            )
        if int(state.get("version", -1)) != FORMAT_VERSION or "speed_area" not in state:
            raise WeightsError(
                f"teacher file {path} has format version {state.get('version')}; delete it to retrain."
            )
        # files written before the tail combinations existed were linear
        teacher = cls(AppearanceMotionConfig.from_dict({"combine": "linear", **state["config"]}))
        try:
            teacher.appearance.load_state_dict(state["appearance"])
            teacher.motion.load_state_dict(state["motion"])
        except (RuntimeError, KeyError) as exc:
            raise WeightsError(
                f"teacher file {path} does not match this version's networks; delete it."
            ) from exc
        teacher.stats = {k: (float(v[0]), float(v[1])) for k, v in state["stats"].items()}
        teacher.tails = {k: TailModel.from_dict(v) for k, v in state.get("tails", {}).items()}
        if teacher.config.combine != "linear" and set(teacher.tails) != set(COMPONENTS):
            raise WeightsError(
                f"teacher file {path} combines by tails but lacks their statistics; delete it to retrain."
            )
        teacher.speed_area = float(state["speed_area"])
        teacher.fitted = True
        teacher.appearance.eval()
        teacher.motion.eval()
        return teacher
