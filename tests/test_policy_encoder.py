"""The observation encoder: ResNet-18 with GroupNorm per camera (or shared), crops, low-dim concatenation."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from polx.config import EncoderConfig
from polx.errors import UserInputError
from polx.policy.encoder import ImageCrop, ObsEncoder

TWO_CAMERAS = {
    "obs": {
        "top": {"shape": [3, 20, 20], "type": "rgb"},
        "wrist": {"shape": [3, 20, 20], "type": "rgb"},
        "qpos": {"shape": [5], "type": "low_dim"},
        "kp": {"shape": [3, 2], "type": "low_dim"},
    },
    "action": {"shape": [4]},
}


def _obs(batch: int = 2, steps: int = 2) -> dict[str, torch.Tensor]:
    return {
        "top": torch.rand(batch, steps, 3, 20, 20),
        "wrist": torch.rand(batch, steps, 3, 20, 20),
        "qpos": torch.randn(batch, steps, 5),
        "kp": torch.randn(batch, steps, 3, 2),
    }


def test_one_resnet_per_camera_with_group_norm_and_low_dim_appended() -> None:
    enc = ObsEncoder(TWO_CAMERAS, EncoderConfig(crop_shape=(16, 16)))
    assert sorted(enc.backbones) == ["top", "wrist"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in enc.modules())
    norms = [m for m in enc.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_groups == m.num_channels // 16 for m in norms)
    assert enc.cond_dim == 2 * 512 + 5 + 6
    obs = _obs()
    out = enc.eval()(obs)
    assert out.shape == (2, 2, enc.cond_dim)
    torch.testing.assert_close(out[..., -6:], obs["kp"].flatten(2))  # low-dim passes through, in order
    torch.testing.assert_close(out[..., -11:-6], obs["qpos"])


def test_shared_backbone_and_projection() -> None:
    enc = ObsEncoder(TWO_CAMERAS, EncoderConfig(shared=True, crop_shape=None, feature_dim=64))
    assert list(enc.backbones) == ["shared"]
    assert enc.cond_dim == 2 * 64 + 11
    assert enc(_obs()).shape == (2, 2, enc.cond_dim)


def test_no_camera_means_no_image_network() -> None:
    meta = {"obs": {"kp": {"shape": [9, 2], "type": "low_dim"}}, "action": {"shape": [2]}}
    enc = ObsEncoder(meta, EncoderConfig())
    assert len(list(enc.parameters())) == 0 and enc.cond_dim == 18


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), height=st.integers(9, 12), width=st.integers(9, 12), seed=st.integers(0, 1000))
def test_crops_are_windows_of_their_image(h: int, w: int, height: int, width: int, seed: int) -> None:
    images = torch.arange(4 * 2 * height * width, dtype=torch.float32).view(4, 2, height, width)  # every pixel unique
    crop = ImageCrop((h, w))
    torch.manual_seed(seed)
    out = crop.train()(images)
    assert out.shape == (4, 2, h, w)
    for n in range(4):
        top, left = divmod(int(out[n, 0, 0, 0] - images[n, 0, 0, 0]), width)
        torch.testing.assert_close(out[n], images[n, :, top : top + h, left : left + w])  # same window for all channels
    centre = crop.eval()(images)
    top, left = (height - h) // 2, (width - w) // 2
    torch.testing.assert_close(centre, images[:, :, top : top + h, left : left + w])


def test_random_crops_vary_between_images() -> None:
    images = torch.rand(1, 3, 20, 20).expand(64, 3, 20, 20)
    out = ImageCrop((16, 16)).train()(images)
    assert len({tuple(x.flatten()[:4].tolist()) for x in out}) > 1


def test_local_weights_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pt")
    cfg = EncoderConfig(pretrained=str(tmp_path / "r18.pt"), crop_shape=None)
    enc = ObsEncoder(TWO_CAMERAS, cfg)
    net = enc.backbones["top"]
    torch.testing.assert_close(net.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(net.layer1[0].bn1.weight, reference.layer1[0].bn1.weight)  # affine kept in GroupNorm

    with pytest.raises(UserInputError, match="does not exist"):
        ObsEncoder(TWO_CAMERAS, attrs.evolve(cfg, pretrained=str(tmp_path / "missing.pt")))
    for bad in ({"conv1.weight": torch.zeros(1)}, {"other.weight": torch.zeros(1)}):
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(UserInputError, match="not a resnet18 state dict"):
            ObsEncoder(TWO_CAMERAS, attrs.evolve(cfg, pretrained=str(tmp_path / "bad.pt")))


def test_bad_image_shapes_are_user_errors() -> None:
    with pytest.raises(UserInputError, match="crop_shape"):
        ObsEncoder(TWO_CAMERAS, EncoderConfig(crop_shape=(32, 32)))
    gray = {"obs": {"cam": {"shape": [1, 20, 20], "type": "rgb"}}, "action": {"shape": [2]}}
    with pytest.raises(UserInputError, match="3, H, W"):
        ObsEncoder(gray, EncoderConfig(crop_shape=None))
