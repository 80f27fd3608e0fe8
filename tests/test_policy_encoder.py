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


# --------------------------------------------------------------------------- backbones, uint8 frames


def _uint8_obs(batch: int = 4, steps: int = 2, size: int = 20, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "top": torch.randint(0, 256, (batch, steps, 3, size, size), dtype=torch.uint8, generator=g),
        "wrist": torch.randint(0, 256, (batch, steps, 3, size, size), dtype=torch.uint8, generator=g),
        "qpos": torch.randn(batch, steps, 5, generator=g),
        "kp": torch.randn(batch, steps, 3, 2, generator=g),
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"backbone": "resnet18", "feature_dim": 32},
        {"backbone": "convnet", "channels": (8, 16, 16), "feature_dim": 24},
        {"backbone": "convnet", "channels": (8, 16), "readout": "avg", "feature_dim": 24, "shared": True},
    ],
    ids=["resnet18", "convnet", "convnet-avg-shared"],
)
def test_each_backbone_trains_from_uint8_frames(fields: dict) -> None:
    """A few AdamW steps from uint8 frames: the condition has the head's width, the loss falls, every weight learns."""
    torch.manual_seed(0)
    enc = ObsEncoder(TWO_CAMERAS, EncoderConfig(crop_shape=(16, 16), **fields)).train()
    obs = _uint8_obs()
    target = torch.randn(4, 2, enc.cond_dim)
    assert enc.cond_dim == 2 * fields["feature_dim"] + 5 + 6
    optimizer = torch.optim.AdamW(enc.parameters(), lr=3e-3)
    before = {name: p.detach().clone() for name, p in enc.named_parameters()}
    losses = []
    for _ in range(8):
        out = enc(obs)
        assert out.shape == (4, 2, enc.cond_dim) and out.dtype == torch.float32
        loss = (out - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    unchanged = [name for name, p in enc.named_parameters() if torch.equal(p, before[name])]
    assert not unchanged, f"never updated: {unchanged}"
    assert obs["top"].dtype == torch.uint8  # the caller's frames are not converted in place


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), crop=st.integers(4, 20), backbone=st.sampled_from(["convnet", "resnet18"]))
def test_uint8_frames_encode_as_their_float_scaling(seed: int, crop: int, backbone: str) -> None:
    """uint8 frames (the data loader's) and the same frames / 255 (an env adapter's) give one condition:
    scaling happens after the crop, on the device, and 0 and 255 are exactly 0.0 and 1.0."""
    torch.manual_seed(seed)
    fields = {"channels": (4, 8)} if backbone == "convnet" else {}
    enc = ObsEncoder(TWO_CAMERAS, EncoderConfig(backbone=backbone, crop_shape=(crop, crop), feature_dim=8, **fields)).eval()
    obs = _uint8_obs(batch=2, seed=seed)
    obs["top"][0, 0] = 0
    obs["top"][1, 0] = 255
    as_float = {k: (v.float() / 255 if v.dtype == torch.uint8 else v) for k, v in obs.items()}
    torch.testing.assert_close(enc(obs), enc(as_float), rtol=0, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(8, 24), crop=st.integers(1, 24), batch=st.integers(1, 6), seed=st.integers(0, 10_000)
)
def test_uint8_crop_is_the_centre_in_eval_and_inside_the_frame_in_train(size: int, crop: int, batch: int, seed: int) -> None:
    crop = min(crop, size)
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    # a coordinate picture: pixel (r, c) holds r in channel 0 and c in channel 1, so a window tells where it came from
    frames[:, 0] = torch.arange(size, dtype=torch.uint8)[:, None]
    frames[:, 1] = torch.arange(size, dtype=torch.uint8)[None, :]
    centre = ImageCrop((crop, crop)).eval()(frames)
    top = (size - crop) // 2
    assert centre.dtype == torch.uint8 and torch.equal(centre, frames[:, :, top : top + crop, top : top + crop])
    torch.manual_seed(seed)
    out = ImageCrop((crop, crop)).train()(frames)
    assert out.shape == (batch, 3, crop, crop) and out.dtype == torch.uint8
    for n in range(batch):
        r0, c0 = int(out[n, 0, 0, 0]), int(out[n, 1, 0, 0])
        assert 0 <= r0 <= size - crop and 0 <= c0 <= size - crop  # inside the frame
        torch.testing.assert_close(out[n], frames[n, :, r0 : r0 + crop, c0 : c0 + crop])


def test_convnet_is_small_and_spatial_softmax_reads_positions() -> None:
    from polx.policy.encoder import SpatialSoftmax

    enc = ObsEncoder(TWO_CAMERAS, EncoderConfig(backbone="convnet", crop_shape=(16, 16), feature_dim=64))
    assert sum(p.numel() for p in enc.parameters()) < 300_000  # two cameras, default channels
    peak = torch.full((1, 1, 5, 7), -1e4)
    peak[0, 0, 4, 0] = 0.0  # bottom-left corner
    torch.testing.assert_close(SpatialSoftmax(5, 7)(peak), torch.tensor([[-1.0, 1.0]]))


def test_an_unknown_backbone_exits_2_naming_the_choices(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "polx", "train", "--head", "imf_attnres", "--env", "pusht", "encoder.backbone=resnet50",
         "--out", str(tmp_path / "runs")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "encoder.backbone" in result.stderr and "resnet18" in result.stderr and "convnet" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
