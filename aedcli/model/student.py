"""The student network, its pre-training decoder and the adversarial discriminator, in one file.

Croitoru et al., "Lightning Fast Video Anomaly Detection via Adversarial Knowledge Distillation" (arXiv
2211.15597; CVIU 2024 "... via Multi-Scale Adversarial Distillation"). The student looks at a stack of three
frames (t, t-3, t+3) and outputs three low-resolution anomaly maps: S (1x1), M (4x4) and L (16x16). It is
read top to bottom against ``docs/method.md``:

- section 2: :class:`Encoder` (five conv-BN-ReLU stages, output stride 16), :class:`Transformer` (pre-norm
  blocks with convolutional Q/K/V projections, :class:`ConvAttention`), heads :class:`ScoreHead` (S) and
  :class:`MapHead` (M, L), assembled in :class:`Student`;
- section 4: :class:`Reconstructor` (the light decoder of phase 1, dropped afterwards) and
  :class:`Discriminator` (one per teacher; sees all three scales at once).

The networks do no I/O. Configurations are :class:`StudentConfig` dataclasses; ``VARIANTS`` names the
paper's (``fastaed``) and smaller CPU-friendly ones.

>>> cfg = student_config("fastaed", in_channels=3, teachers=("motion", "objects"))  # gray: 3 stacked frames
>>> maps = Student(cfg)(torch.zeros(2, 3, 240, 360))
>>> maps.s.shape, maps.m.shape, maps.l.shape      # one head set per teacher
(torch.Size([2, 2]), torch.Size([2, 2, 4, 4]), torch.Size([2, 2, 16, 16]))

The paper's check figures (about 5.0 M parameters, 7.05 GMAC per frame at 640x360 and 2.49 at 360x240) hold
for colour input (``in_channels=9``); a gray stack (``in_channels=3``) costs 2.08 GMAC at 360x240.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class StudentConfig:
    """Sizes of the student. Defaults are the paper's (method.md section 2).

    channels:   output channels of the encoder stages: a stem (``stem_kernel``, stride ``stem_stride``), then
                3x3 stride-2 convs; the last one is the transformer width. The paper: a 7x7 stride-1 stem and
                four stride-2 stages, output stride 16.
    stem_kernel, stem_stride: the stem's kernel and stride. A stride-2 stem with one stage fewer keeps the
                output stride at 16 and saves the full-resolution layer, the most expensive on a CPU.
    n_heads, head_dim: attention heads; Q is projected to ``n_heads * head_dim`` (320) channels, K and V
                together to twice that (640).
    kv_stride:  stride of the depthwise conv before the K/V projection (attention over a coarser key grid).
    ffn_dim:    hidden width of the transformer's feed-forward layer.
    map_hidden: hidden channels of the M and L heads.
    s_pool:     the S head max-pools to ``s_pool x s_pool`` before its linear layer.
    map_grad_leak: backward-only slope of the M and L heads' final ReLU for negative inputs (see
                :func:`relu_leaky_grad`); outputs are those of a plain ReLU whatever its value, and 0 trains
                exactly as the paper describes.
    teachers:   one set of S, M, L heads per teacher, named after it: each head set learns one teacher's
                maps (and faces that teacher's discriminator), so no teacher's maps are averaged into
                another's. A frame's score is the largest of the head sets' scores
                (:func:`aedcli.scoring.frame_scores`).
    """

    in_channels: int = 9
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    stem_kernel: int = 7
    stem_stride: int = 1
    n_blocks: int = 5
    n_heads: int = 5
    head_dim: int = 64
    kv_stride: int = 2
    ffn_dim: int = 1024
    map_hidden: int = 64
    s_pool: int = 2
    map_grad_leak: float = 0.01
    teachers: tuple[str, ...] = ("teachers",)

    def __post_init__(self) -> None:
        if len(self.channels) < 2:
            raise ValueError(f"channels needs a stem and at least one stride-2 stage, got {self.channels}")
        if self.stem_stride not in (1, 2) or self.stem_kernel not in (3, 4, 5, 7):
            raise ValueError(f"unsupported stem: kernel {self.stem_kernel}, stride {self.stem_stride}")
        if self.in_channels % 3:
            raise ValueError(f"in_channels must be 3 frames x channels per frame, got {self.in_channels}")
        if not self.teachers or len(set(self.teachers)) != len(self.teachers):
            raise ValueError(f"teachers must name one or more distinct head sets, got {self.teachers}")

    @property
    def width(self) -> int:
        """Channels of the transformer (the last encoder stage)."""
        return self.channels[-1]

    @property
    def attn_dim(self) -> int:
        """Channels of Q (and of K and of V): heads x head size."""
        return self.n_heads * self.head_dim

    @property
    def frame_channels(self) -> int:
        """Channels of one frame of the stack (1 gray, 3 colour): what the phase-1 decoder reconstructs."""
        return self.in_channels // 3

    @property
    def strides(self) -> tuple[int, ...]:
        """Output stride of each encoder stage (the paper: 1, 2, 4, 8, 16)."""
        return tuple(self.stem_stride * 2**i for i in range(len(self.channels)))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["teachers"] = list(self.teachers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudentConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = set(d) - set(known)
        if unknown:
            raise ValueError(f"unknown student config keys: {sorted(unknown)}")
        kw: dict[str, Any] = {}
        for key, value in d.items():
            if key == "channels":
                kw[key] = tuple(int(c) for c in value)
            elif key == "teachers":
                kw[key] = tuple(str(t) for t in value)
            else:
                kw[key] = type(known[key].default)(value)
        return cls(**kw)


VARIANTS: dict[str, StudentConfig] = {
    # The paper's student: ~5.0 M parameters.
    "fastaed": StudentConfig(),
    # Narrower last stage, 3 blocks of 3 heads: ~1.6 M parameters.
    "fastaed-s": StudentConfig(
        channels=(16, 32, 64, 128, 192), n_blocks=3, n_heads=3, ffn_dim=768, map_hidden=48
    ),
    # Half the encoder channels, 2 blocks of 2 heads: ~0.5 M parameters.
    "fastaed-xs": StudentConfig(
        channels=(8, 16, 32, 64, 128), n_blocks=2, n_heads=2, ffn_dim=512, map_hidden=32
    ),
    # For real time on a small CPU: a 3x3 stride-2 stem instead of the full-resolution 7x7 layer, four
    # stages up to width 96, one block of 2 heads: ~0.2 M parameters, 0.10 GMAC at 240x360 gray.
    "fastaed-xxs": StudentConfig(
        channels=(12, 24, 48, 96),
        stem_kernel=3,
        stem_stride=2,
        n_blocks=1,
        n_heads=2,
        head_dim=48,
        ffn_dim=384,
        map_hidden=24,
    ),
}


def student_config(
    variant: str, in_channels: int | None = None, teachers: tuple[str, ...] | None = None
) -> StudentConfig:
    """The named variant's config, with ``in_channels`` (3 gray, 9 colour) and the teachers' head sets set
    when given."""
    if variant not in VARIANTS:
        raise KeyError(f"unknown student variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    cfg = VARIANTS[variant]
    if in_channels is not None:
        cfg = replace(cfg, in_channels=in_channels)
    if teachers is not None:
        cfg = replace(cfg, teachers=tuple(teachers))
    return cfg


class StudentMaps(NamedTuple):
    """Three maps per teacher for a batch (the student's, or the teachers'): S in [0, 1], M, L >= 0."""

    s: torch.Tensor  # (B, K)          K = teachers
    m: torch.Tensor  # (B, K, 4, 4)
    l: torch.Tensor  # (B, K, 16, 16)  # noqa: E741


# ---------------------------------------------------------------------------------------------------------
# Encoder


def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    """Conv without bias, BatchNorm, ReLU. The paper's 7x7 stem pads by reflection; odd kernels otherwise
    pad by ``kernel // 2`` with zeros, and an even (patchifying) kernel equal to its stride does not pad."""
    if kernel == 7:
        return nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(c_in, c_out, 7, stride=stride, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )
    padding = kernel // 2 if kernel % 2 else 0
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    """A stem (the paper: 7x7 stride 1), then 3x3 stride-2 convs; output stride 16 for every variant."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        c = cfg.channels
        self.stages = nn.ModuleList(
            [conv_bn_relu(cfg.in_channels, c[0], cfg.stem_kernel, cfg.stem_stride)]
            + [conv_bn_relu(c[i], c[i + 1], 3, 2) for i in range(len(c) - 1)]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # x: (B, in, H, W) -> [(B, c0, H/s0, W/s0), ..., (B, c_last, H/16, W/16)], s_i = cfg.strides[i]
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


# ---------------------------------------------------------------------------------------------------------
# Transformer


# The transformer works on channels-last maps (B, H, W, C): LayerNorm then normalises the last axis, and
# every 1x1 convolution of the paper is an nn.Linear over that axis (the same operation and parameter count,
# and one matrix multiply on CPU instead of a slow 1x1-convolution path). Only the depthwise 3x3 convs see
# (B, C, H, W), as a permuted view.


class ConvAttention(nn.Module):
    """Multi-head attention with convolutional projections (no positional embedding).

    Q: depthwise 3x3 s1 -> BN -> 1x1 (C -> A); K, V: depthwise 3x3 s2 -> BN -> 1x1 (C -> 2A), split.
    Every position attends over the stride-2 key grid; the output is projected back by a 1x1 (A -> C).
    """

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        c, a = cfg.width, cfg.attn_dim
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.q_conv = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.BatchNorm2d(c))
        self.q = nn.Linear(c, a)  # 1x1 conv C -> A
        self.kv_conv = nn.Sequential(
            nn.Conv2d(c, c, 3, stride=cfg.kv_stride, padding=1, groups=c, bias=False), nn.BatchNorm2d(c)
        )
        self.kv = nn.Linear(c, 2 * a)  # 1x1 conv C -> 2A
        self.proj = nn.Linear(a, c)  # 1x1 conv A -> C

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape  # (B, H, W, C)
        nh, hd = self.n_heads, self.head_dim
        img = x.permute(0, 3, 1, 2)  # (B, C, H, W) view for the depthwise convs
        q = self.q(self.q_conv(img).permute(0, 2, 3, 1))  # (B, H, W, A)
        k, v = self.kv(self.kv_conv(img).permute(0, 2, 3, 1)).chunk(2, dim=-1)  # (B, h', w', A) each
        q = q.reshape(b, h * w, nh, hd).transpose(1, 2)  # (B, nh, H*W, hd)
        k = k.reshape(b, -1, nh, hd).transpose(1, 2)  # (B, nh, h'*w', hd), h' = ceil(H / 2)
        v = v.reshape(b, -1, nh, hd).transpose(1, 2)  # (B, nh, h'*w', hd)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, H*W, hd)
        y = y.transpose(1, 2).reshape(b, h, w, nh * hd)  # (B, H, W, A)
        return self.proj(y)  # (B, H, W, C)


class Block(nn.Module):
    """Pre-norm residual block: x + attention(LN(x)), then x + FFN(LN(x)); FFN = 1x1, GELU, 1x1."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        c = cfg.width
        self.ln1 = nn.LayerNorm(c)  # over the channels at every position
        self.attn = ConvAttention(cfg)
        self.ln2 = nn.LayerNorm(c)
        self.ffn = nn.Sequential(nn.Linear(c, cfg.ffn_dim), nn.GELU(), nn.Linear(cfg.ffn_dim, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))  # (B, H, W, C)
        return x + self.ffn(self.ln2(x))  # (B, H, W, C)


class Transformer(nn.Module):
    """``n_blocks`` pre-norm blocks at output stride 16; (B, C, H, W) in and out."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[Block(cfg) for _ in range(cfg.n_blocks)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.blocks(z.permute(0, 2, 3, 1).contiguous())  # (B, H, W, C)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W), a channels-last view


# ---------------------------------------------------------------------------------------------------------
# Heads


class ScoreHead(nn.Module):
    """S (1x1): adaptive max-pool to 2x2, flatten, ReLU, linear (4C -> 1), sigmoid."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.pool = cfg.s_pool
        self.fc = nn.Linear(cfg.width * cfg.s_pool**2, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_max_pool2d(z, self.pool).flatten(1)  # (B, 4C)
        return torch.sigmoid(self.fc(F.relu(x))).squeeze(1)  # (B,)


def relu_leaky_grad(x: torch.Tensor, leak: float) -> torch.Tensor:
    """``relu(x)`` in value; in the backward pass negative inputs get ``leak`` times the gradient.

    Teachers' maps are 0 almost everywhere, so regressing them through a plain final ReLU drives every
    pre-activation of a map head below zero, after which no gradient reaches the head again and it outputs
    0 for good (observed on Ped2 within a few epochs). The leak lets a cell whose target is above 0 climb
    back; where the target is 0 the loss gradient is 0 and nothing leaks. Inference is unaffected.
    """
    if leak == 0.0 or not torch.is_grad_enabled():
        return F.relu(x)
    neg = leak * x.clamp(max=0.0)
    return F.relu(x) + (neg - neg.detach())  # value: relu(x); slope: 1 above 0, leak below


class MapHead(nn.Module):
    """M (4x4) and L (16x16) heads: conv 3x3 (C -> hidden), ReLU, conv 3x3 (-> 1), ReLU, adaptive max-pool."""

    def __init__(self, cfg: StudentConfig, size: int) -> None:
        super().__init__()
        self.size = size
        self.leak = cfg.map_grad_leak
        self.conv1 = nn.Conv2d(cfg.width, cfg.map_hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(cfg.map_hidden, 1, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = relu_leaky_grad(self.conv2(F.relu(self.conv1(z))), self.leak)  # (B, 1, H/16, W/16)
        return F.adaptive_max_pool2d(x, self.size).squeeze(1)  # (B, size, size)


# ---------------------------------------------------------------------------------------------------------
# Student


class TeacherHeads(nn.Module):
    """One teacher's three heads on the shared transformer output: S (1x1), M (4x4), L (16x16)."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.s = ScoreHead(cfg)
        self.m = MapHead(cfg, 4)
        self.l = MapHead(cfg, 16)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.s(z), self.m(z), self.l(z)  # (B,), (B, 4, 4), (B, 16, 16)


class Student(nn.Module):
    """Encoder -> transformer -> one head set per teacher. Input (B, in_channels, H, W), any H, W >= 32."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.transformer = Transformer(cfg)
        self.heads = nn.ModuleList([TeacherHeads(cfg) for _ in cfg.teachers])

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Encoder stage outputs (the decoder's skips) and the transformer output (B, C, H/16, W/16)."""
        feats = self.encoder(x)
        return feats, self.transformer(feats[-1])

    def forward(self, x: torch.Tensor) -> StudentMaps:
        z = self.transformer(self.encoder(x)[-1])  # (B, C, H/16, W/16)
        s, m, l = zip(*(heads(z) for heads in self.heads), strict=True)  # noqa: E741
        return StudentMaps(torch.stack(s, 1), torch.stack(m, 1), torch.stack(l, 1))  # (B, K, ...)


# ---------------------------------------------------------------------------------------------------------
# Phase 1: reconstruction decoder (method.md section 4)


class Reconstructor(nn.Module):
    """Light decoder: from the transformer output back up to half resolution, adding the encoder's skips.

    Each step applies conv 3x3 + BN + ReLU (C_{i+1} -> C_i) at the coarser resolution (4x cheaper than after
    upsampling), resizes to the size of encoder stage i and adds that stage's output, for every stage from
    the one at stride 8 down to the one at stride 2 (the paper: stages 3, 2, 1); a last 3x3 conv outputs
    frame t's channels at half resolution.
    """

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        c = cfg.channels
        self.skips = [i for i in range(len(c) - 2, -1, -1) if cfg.strides[i] >= 2]  # (3, 2, 1) for the paper
        self.ups = nn.ModuleList([conv_bn_relu(c[i + 1], c[i], 3, 1) for i in self.skips])
        self.out = nn.Conv2d(c[self.skips[-1]], cfg.frame_channels, 3, padding=1)

    def forward(self, feats: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        x = z  # (B, c_last, H/16, W/16)
        for up, i in zip(self.ups, self.skips, strict=True):
            x = F.interpolate(up(x), size=feats[i].shape[-2:], mode="nearest") + feats[i]  # stage i's size
        return self.out(x)  # (B, frame_channels, H/2, W/2)


class PretrainNet(nn.Module):
    """Phase 1 model: the student's encoder and transformer (shared modules) plus a :class:`Reconstructor`."""

    def __init__(self, student: Student) -> None:
        super().__init__()
        self.encoder = student.encoder
        self.transformer = student.transformer
        self.decoder = Reconstructor(student.config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        return self.decoder(feats, self.transformer(feats[-1]))  # (B, frame_channels, H/2, W/2)


def reconstruction_target(x: torch.Tensor, frame_channels: int, size: tuple[int, int]) -> torch.Tensor:
    """Frame t (the first ``frame_channels`` input channels) area-resized to ``size``: the phase-1 target."""
    return F.adaptive_avg_pool2d(x[:, :frame_channels], size)  # (B, frame_channels, h, w)


# ---------------------------------------------------------------------------------------------------------
# Phase 2: discriminator (method.md section 4)


class Discriminator(nn.Module):
    """Tells a teacher's maps from the student's, looking at all three scales at once.

    16x16 -> conv 3x3 (1 -> 4), ReLU, max-pool 4; concat the 4x4 map -> conv 3x3 (5 -> 8), ReLU, max-pool 4;
    flatten, concat the 1x1 value -> linear 9 -> 50, LeakyReLU 0.01, linear 50 -> 1. Returns the logit: the
    paper's sigmoid is applied inside the loss (``binary_cross_entropy_with_logits``, numerically stable).

    ``spectral=True`` (the default) puts spectral normalisation (Miyato et al., ICLR 2018) on every layer, so
    the discriminator is 1-Lipschitz in the maps: the adversarial gradient it sends the student is bounded
    and cannot grow with it. Without it, student and discriminator can escalate together (the student's
    unbounded 4x4 / 16x16 maps growing without end); ``spectral=False`` is the paper's plain form.
    """

    def __init__(self, spectral: bool = True) -> None:
        super().__init__()
        norm = nn.utils.parametrizations.spectral_norm if spectral else (lambda m: m)
        self.spectral = spectral
        self.conv_l = norm(nn.Conv2d(1, 4, 3, padding=1))
        self.conv_m = norm(nn.Conv2d(5, 8, 3, padding=1))
        self.fc = nn.Sequential(norm(nn.Linear(9, 50)), nn.LeakyReLU(0.01), norm(nn.Linear(50, 1)))

    def forward(self, s: torch.Tensor, m: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
        x = F.max_pool2d(F.relu(self.conv_l(l[:, None])), 4)  # (B, 4, 4, 4)
        x = torch.cat([x, m[:, None]], dim=1)  # (B, 5, 4, 4)
        x = F.max_pool2d(F.relu(self.conv_m(x)), 4).flatten(1)  # (B, 8)
        x = torch.cat([x, s[:, None]], dim=1)  # (B, 9)
        return self.fc(x).squeeze(1)  # (B,) logits


# ---------------------------------------------------------------------------------------------------------
# Size, cost and inference folding


def count_params(model: nn.Module) -> int:
    """Number of parameters (BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def gmac_per_frame(cfg: StudentConfig, height: int, width: int) -> float:
    """Multiply-accumulates (in units of 10^9) of one student forward pass at ``height x width``.

    Counted with ``torch.utils.flop_counter.FlopCounterMode`` (convs, matmuls, attention): MAC = FLOP / 2.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):  # shapes only: nothing is allocated or computed
        model = Student(cfg).eval()
        x = torch.zeros(1, cfg.in_channels, height, width)
    # Should attention run as the fused CPU kernel, which has no formula in the registry, count QK^T and AV.
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=custom) as counter:
        model(x)
    return counter.get_total_flops() / 2e9


def _attention_flops(
    q_shape: torch.Size, k_shape: torch.Size, v_shape: torch.Size, *_: Any, **__: Any
) -> int:
    b, nh, lq, d = q_shape  # (B, nh, Lq, hd)
    lk, dv = k_shape[2], v_shape[3]
    return 2 * b * nh * lq * lk * (d + dv)  # Q K^T and (softmax) V, 2 FLOPs per MAC


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias equal to ``bn(conv(x))`` in eval mode: w' = w * g / sqrt(var + eps), b' likewise."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.to(conv.weight.device)


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm folded into the conv just before it.

    The outputs equal the original's in eval mode within float tolerance; training the copy is not intended.
    """
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[i] = _fold_bn(conv, bn)
                module[i + 1] = nn.Identity()
    return fused
