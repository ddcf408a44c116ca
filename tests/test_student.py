"""The student network: the paper's size and cost, output shapes for any input, BN folding, discriminator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch

from aedcli.student import (
    VARIANTS,
    Discriminator,
    MapHead,
    PretrainNet,
    Student,
    StudentConfig,
    count_params,
    fuse_for_inference,
    gmac_per_frame,
    reconstruction_target,
    relu_leaky_grad,
    student_config,
)


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
    assert cost["fastaed-xs"] < cost["fastaed-s"] < cost["fastaed"]
    assert size["fastaed-xs"] < size["fastaed-s"] < size["fastaed"]


@pytest.mark.parametrize(
    ("variant", "in_channels", "height", "width"),
    [
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
    assert maps.s.shape == (2,)
    assert maps.m.shape == (2, 4, 4)
    assert maps.l.shape == (2, 16, 16)
    assert bool(((maps.s > 0) & (maps.s < 1)).all())
    assert bool((maps.m >= 0).all()) and bool((maps.l >= 0).all())


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


def test_config_round_trips_through_a_plain_dict() -> None:
    cfg = replace(VARIANTS["fastaed-s"], in_channels=3)
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_variant_names_the_choices() -> None:
    with pytest.raises(KeyError, match="fastaed-xs"):
        student_config("fastaed-xxl")
