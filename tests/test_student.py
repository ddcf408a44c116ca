"""The student network: the paper's size and cost, output shapes for any input, one head set per teacher, BN
folding, the phase-1 decoder and the discriminator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch

from aedcli.model.student import (
    VARIANTS,
    Discriminator,
    MapHead,
    PretrainNet,
    Student,
    StudentConfig,
    StudentMaps,
    count_params,
    fuse_for_inference,
    gmac_per_frame,
    reconstruction_target,
    relu_leaky_grad,
    student_config,
)
from aedcli.scoring import frame_scores, teacher_scores


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def test_fastaed_has_about_five_million_parameters() -> None:
    assert count_params(Student(student_config("fastaed"))) == pytest.approx(5.0e6, rel=0.03)


def test_fastaed_costs_the_papers_gmac_for_a_colour_stack() -> None:
    cfg = student_config("fastaed", in_channels=9)  # 3 frames x BGR: the paper's check figures
    assert gmac_per_frame(cfg, 360, 640) == pytest.approx(7.05, rel=0.03)
    assert gmac_per_frame(cfg, 240, 360) == pytest.approx(2.49, rel=0.03)


def test_smaller_variants_are_cheaper_than_the_papers() -> None:
    cost = {name: gmac_per_frame(student_config(name, 3), 240, 360) for name in VARIANTS}
    size = {name: count_params(Student(student_config(name, 3))) for name in VARIANTS}
    assert cost["fastaed-xxs"] < cost["fastaed-xs"] < cost["fastaed-s"] < cost["fastaed"]
    assert size["fastaed-xxs"] < size["fastaed-xs"] < size["fastaed-s"] < size["fastaed"]
    assert cost["fastaed-xxs"] == pytest.approx(0.10, rel=0.1)  # real time on a small CPU


@pytest.mark.parametrize(
    ("variant", "in_channels", "height", "width"),
    [
        ("fastaed-xxs", 3, 32, 32),
        ("fastaed-xxs", 9, 45, 70),
        ("fastaed-xs", 3, 32, 32),
        ("fastaed-xs", 9, 45, 70),
        ("fastaed-s", 3, 64, 96),
        ("fastaed", 3, 120, 180),
        ("fastaed", 9, 33, 47),
    ],
)
def test_outputs_have_the_three_map_shapes_and_ranges_for_any_input_size(
    variant: str, in_channels: int, height: int, width: int
) -> None:
    model = Student(student_config(variant, in_channels)).eval()
    with torch.no_grad():
        maps = model(torch.randn(2, in_channels, height, width))
    assert maps.s.shape == (2, 1)  # one head set: the default teachers
    assert maps.m.shape == (2, 1, 4, 4)
    assert maps.l.shape == (2, 1, 16, 16)
    assert bool(((maps.s > 0) & (maps.s < 1)).all())
    assert bool((maps.m >= 0).all()) and bool((maps.l >= 0).all())


@pytest.mark.parametrize("teachers", [("motion",), ("motion", "objects"), ("a", "b", "c")])
def test_student_has_one_head_set_per_teacher(teachers: tuple[str, ...]) -> None:
    model = Student(student_config("fastaed-xxs", 3, teachers)).eval()
    assert len(model.heads) == len(teachers)
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        maps = model(x)
        _, z = model.features(x)
        alone = [heads(z) for heads in model.heads]
    k = len(teachers)
    assert isinstance(maps, StudentMaps)
    assert (maps.s.shape, maps.m.shape, maps.l.shape) == ((2, k), (2, k, 4, 4), (2, k, 16, 16))
    for i, (s, m, l) in enumerate(alone):  # noqa: E741 - head set i gives teacher i's maps, in order
        torch.testing.assert_close(maps.s[:, i], s)
        torch.testing.assert_close(maps.m[:, i], m)
        torch.testing.assert_close(maps.l[:, i], l)
    if k > 1:  # separate parameters, not one head set repeated
        assert model.heads[0].s.fc.weight.data_ptr() != model.heads[1].s.fc.weight.data_ptr()
        assert not torch.equal(maps.s[:, 0], maps.s[:, 1])


def test_frame_score_of_a_student_is_its_largest_teacher_score() -> None:
    model = Student(student_config("fastaed-xxs", 3, ("motion", "objects"))).eval()
    with torch.no_grad():
        maps = model(torch.randn(3, 3, 48, 64))
    per_teacher = teacher_scores(*maps)
    assert per_teacher.shape == (3, 2)
    for i in range(2):  # each head set scores as the paper's single student: (S + max M + max L) / 3
        paper = (maps.s[:, i] + maps.m[:, i].amax((1, 2)) + maps.l[:, i].amax((1, 2))) / 3
        torch.testing.assert_close(torch.from_numpy(per_teacher[:, i]), paper.double())
    torch.testing.assert_close(torch.from_numpy(frame_scores(*maps)), torch.from_numpy(per_teacher).amax(1))


def test_teachers_must_be_named_and_distinct() -> None:
    with pytest.raises(ValueError, match="distinct head sets"):
        student_config("fastaed-xs", 3, ())
    with pytest.raises(ValueError, match="distinct head sets"):
        student_config("fastaed-xs", 3, ("motion", "motion"))


def test_fastaed_xxs_has_output_stride_16_with_a_stride_2_stem() -> None:
    cfg = student_config("fastaed-xxs", 3)
    assert (cfg.stem_kernel, cfg.stem_stride) == (3, 2)
    assert cfg.strides == (2, 4, 8, 16)
    model = Student(cfg).eval()
    with torch.no_grad():
        feats, z = model.features(torch.randn(1, 3, 96, 160))
    assert [f.shape[-2:] for f in feats] == [(48, 80), (24, 40), (12, 20), (6, 10)]
    assert z.shape == (1, cfg.width, 6, 10)  # 96 / 16, 160 / 16
    assert student_config("fastaed").strides == (1, 2, 4, 8, 16)


@pytest.mark.parametrize(("variant", "channels"), [("fastaed-xxs", 3), ("fastaed-xxs", 9), ("fastaed-xs", 3)])
def test_reconstructor_outputs_frame_t_at_half_resolution(variant: str, channels: int) -> None:
    net = PretrainNet(Student(student_config(variant, channels)))
    with torch.no_grad():
        recon = net(torch.randn(2, channels, 48, 80))
    assert recon.shape == (2, channels // 3, 24, 40)


def test_fastaed_reconstructor_adds_the_skips_of_stages_3_2_and_1() -> None:
    assert PretrainNet(Student(student_config("fastaed", 3))).decoder.skips == [3, 2, 1]
    assert PretrainNet(Student(student_config("fastaed-xxs", 3))).decoder.skips == [2, 1, 0]


def test_folding_batchnorm_keeps_the_outputs() -> None:
    model = Student(student_config("fastaed-xs", 3))
    model.train()
    with torch.no_grad():  # move the BN statistics away from their initial values
        for _ in range(3):
            model(torch.randn(4, 3, 48, 64) * 2 + 0.5)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        torch.nn.init.uniform_(bn.weight, 0.5, 1.5)
        torch.nn.init.uniform_(bn.bias, -0.2, 0.2)
    model.eval()
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(3, 3, 48, 64)
    with torch.no_grad():
        a, b = model(x), fused(x)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5)


def test_relu_leaky_grad_has_relu_values_and_a_small_slope_below_zero() -> None:
    x = torch.tensor([-2.0, -0.5, 0.5, 3.0], requires_grad=True)
    y = relu_leaky_grad(x, 0.01)
    assert torch.equal(y.detach(), torch.relu(x.detach()))
    y.sum().backward()
    assert x.grad is not None and x.grad.tolist() == pytest.approx([0.01, 0.01, 1.0, 1.0])


@pytest.mark.parametrize(("leak", "revives"), [(0.0, False), (0.01, True)])
def test_a_dead_map_head_revives_only_with_the_gradient_leak(leak: float, revives: bool) -> None:
    head = MapHead(replace(student_config("fastaed-xs"), map_grad_leak=leak), 4)
    with torch.no_grad():
        head.conv2.bias.fill_(-1.0)  # every cell below zero: a plain ReLU head outputs 0 and gets no gradient
    z = torch.rand(8, 128, 4, 6)
    with torch.no_grad():
        assert float(head(z).max()) == 0.0
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(head(z), torch.full((8, 4, 4), 0.5))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert (float(head(z).max()) > 0.1) == revives


def test_discriminator_gives_one_logit_per_sample_from_all_three_scales() -> None:
    d = Discriminator()
    s, m, l = torch.rand(5), torch.rand(5, 4, 4), torch.rand(5, 16, 16)  # noqa: E741
    logits = d(s, m, l)
    assert logits.shape == (5,)
    # Each scale reaches the output.
    for i in range(3):
        maps = [s.clone().requires_grad_(), m.clone().requires_grad_(), l.clone().requires_grad_()]
        d(*maps).sum().backward()
        assert maps[i].grad is not None and float(maps[i].grad.abs().sum()) > 0


def test_discriminator_has_the_papers_layers() -> None:
    d = Discriminator()
    assert (d.conv_l.in_channels, d.conv_l.out_channels) == (1, 4)
    assert (d.conv_m.in_channels, d.conv_m.out_channels) == (5, 8)
    assert (d.fc[0].in_features, d.fc[0].out_features, d.fc[2].out_features) == (9, 50, 1)


def test_pretrain_net_reconstructs_frame_t_at_half_resolution_and_shares_the_encoder() -> None:
    student = Student(student_config("fastaed-xs", 3))
    net = PretrainNet(student)
    x = torch.randn(2, 3, 40, 66)
    recon = net(x)
    assert recon.shape == (2, 1, 20, 33)
    target = reconstruction_target(x, 1, recon.shape[-2:])
    torch.testing.assert_close(target, torch.nn.functional.avg_pool2d(x[:, :1], 2))
    assert net.encoder is student.encoder and net.transformer is student.transformer


def test_attention_uses_the_configured_heads_and_key_stride() -> None:
    cfg = student_config("fastaed")
    attn = Student(cfg).transformer.blocks[0].attn
    assert attn.q.out_features == cfg.n_heads * cfg.head_dim == 320
    assert attn.kv.out_features == 640 and attn.proj.out_features == 256
    assert attn.kv_conv[0].stride == (2, 2) and attn.kv_conv[0].groups == cfg.width
    assert attn.q_conv[0].stride == (1, 1)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_config_round_trips_through_a_plain_dict(variant: str) -> None:
    cfg = replace(VARIANTS[variant], in_channels=3, teachers=("motion", "objects"))
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown student config keys"):
        StudentConfig.from_dict({**cfg.to_dict(), "edges": "repeat"})


def test_unknown_variant_names_the_choices() -> None:
    with pytest.raises(KeyError, match="fastaed-xs"):
        student_config("fastaed-xxl")
