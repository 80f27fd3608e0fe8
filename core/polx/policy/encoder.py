"""Observation encoder: one condition vector per observation step.

Each camera goes through an image backbone (``encoder.backbone``), one per camera or one shared:

* ``resnet18``: a torchvision ResNet-18 (``weights=None``: nothing is downloaded; a local
  state-dict file may be given) with BatchNorm replaced by GroupNorm, because BatchNorm's running
  statistics interact badly with EMA weights and small batches (diffusion_policy's finding).
  Diffusion Policy's encoder, for a GPU: 11 M parameters per camera.
* ``convnet``: a few conv stages with GroupNorm and a spatial-softmax (or mean-pooled) read-out,
  made to train on a CPU (``ConvNet``; frames/s in benchmarks/README.md, "Image encoders").

Frames arrive as uint8 (B, To, C, H, W) and stay uint8 until they are on the policy's device:
the crop (random in train mode, centre in eval mode) and the scaling to [0, 1] and normalisation
run once per batch there. Float frames in [0, 1] (what env adapters return) are accepted too.
Low-dim keys (already normalized by the policy) are concatenated after the image features. An
observation set without cameras builds no image network at all.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from polx.errors import UserInputError

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_RESNET18_FEATURES = 512


def obs_keys(shape_meta: dict) -> tuple[list[str], list[str]]:
    """(rgb keys, low-dim keys) in ``shape_meta`` order."""
    rgb, low_dim = [], []
    for key, meta in shape_meta["obs"].items():
        kind = meta.get("type", "low_dim")
        if kind == "rgb":
            rgb.append(key)
        elif kind == "low_dim":
            low_dim.append(key)
        else:
            raise UserInputError(f"shape_meta obs key {key!r}: type must be rgb or low_dim, got {kind!r}")
    return rgb, low_dim


def _group_norm_like(bn: nn.BatchNorm2d) -> nn.GroupNorm:
    """GroupNorm over the same channels, keeping the BatchNorm's affine weights."""
    channels = bn.num_features
    gn = nn.GroupNorm(num_groups=max(1, channels // 16), num_channels=channels)
    with torch.no_grad():
        gn.weight.copy_(bn.weight)
        gn.bias.copy_(bn.bias)
    return gn


def _replace_batch_norm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _group_norm_like(child))
        else:
            _replace_batch_norm(child)


def resnet18_backbone(config) -> nn.Module:
    """ResNet-18 trunk: (N, 3, H, W) -> (N, feature_dim). ``config`` is an ``EncoderConfig``."""
    import torchvision  # only observation sets with cameras pay for this import

    net = torchvision.models.resnet18(weights=None)
    if config.pretrained is not None:
        _load_local_weights(net, Path(config.pretrained))
    if config.group_norm:
        _replace_batch_norm(net)
    net.fc = nn.Identity() if config.feature_dim == _RESNET18_FEATURES else nn.Linear(_RESNET18_FEATURES, config.feature_dim)
    return net


class SpatialSoftmax(nn.Module):
    """(N, C, H, W) -> (N, 2C): per channel, the softmax-weighted mean x and y in [-1, 1].

    The read-out of Levine et al. (2016) that robomimic and Diffusion Policy use on image
    features: each channel says where its feature is, which is what pushing and grasping need.
    """

    def __init__(self, height: int, width: int):
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1), persistent=False)  # (HW, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        weights = torch.softmax(x.flatten(2), dim=-1)  # (N, C, HW)
        return (weights @ self.grid).reshape(n, 2 * c)


class ConvNet(nn.Module):
    """A CPU-sized image backbone: (N, 3, H, W) -> (N, feature_dim).

    Conv stages with GroupNorm and Mish: the first two 3x3 stride-2 halve the image (a 5x5 first),
    the rest keep its size; then a spatial softmax (or mean pooling) and one linear layer. At 84 px
    and the default channels (32, 64, 64, 64): 0.1 M parameters and a 21x21 feature map.
    """

    def __init__(self, config, image_hw: tuple[int, int]):
        super().__init__()
        layers: list[nn.Module] = []
        height, width = image_hw
        channels_in = 3
        for i, channels in enumerate(config.channels):
            stride = 2 if i < 2 else 1
            kernel = 5 if i == 0 else 3
            layers += [
                nn.Conv2d(channels_in, channels, kernel, stride=stride, padding=kernel // 2),
                nn.GroupNorm(max(1, channels // 16), channels),
                nn.Mish(),
            ]
            if stride == 2:
                height, width = (height + 1) // 2, (width + 1) // 2
            channels_in = channels
        self.trunk = nn.Sequential(*layers)
        if config.readout == "spatial_softmax":
            self.readout: nn.Module = SpatialSoftmax(height, width)
            out = 2 * channels_in
        else:
            self.readout = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            out = channels_in
        self.fc = nn.Linear(out, config.feature_dim)
        self.feature_hw = (height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.readout(self.trunk(x)))


def build_backbone(config, image_hw: tuple[int, int]) -> nn.Module:
    """The ``encoder.backbone`` network for images of ``image_hw`` (after the crop)."""
    if config.backbone == "convnet":
        return ConvNet(config, image_hw)
    if config.backbone == "resnet18":
        return resnet18_backbone(config)
    raise UserInputError(f"encoder.backbone: must be one of resnet18, convnet; got {config.backbone!r}")


def _load_local_weights(net: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise UserInputError(f"encoder.pretrained: {str(path)!r} does not exist (a local torchvision resnet18 state dict)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserInputError(f"encoder.pretrained: {str(path)!r} is not a loadable state dict: {exc}") from None
    if not isinstance(state, dict):
        raise UserInputError(f"encoder.pretrained: {str(path)!r} holds a {type(state).__name__}, not a state dict")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        missing, unexpected = [" ".join(str(exc).split())[:200]], []
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise UserInputError(
            f"encoder.pretrained: {str(path)!r} is not a resnet18 state dict "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


class ImageCrop(nn.Module):
    """Random crop per image in train mode, center crop in eval mode. (N, C, H, W) -> (N, C, h, w).

    Any dtype: it runs on uint8 frames, before they are scaled, so it moves a quarter of the bytes.
    """

    def __init__(self, crop_shape: tuple[int, int]):
        super().__init__()
        self.crop_shape = tuple(crop_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, height, width = x.shape
        h, w = self.crop_shape
        if (h, w) == (height, width):
            return x
        if not self.training:
            top, left = (height - h) // 2, (width - w) // 2
            return x[:, :, top : top + h, left : left + w]
        # one random window per image, gathered with index grids instead of a Python loop
        top = torch.randint(0, height - h + 1, (n,), device=x.device)
        left = torch.randint(0, width - w + 1, (n,), device=x.device)
        rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (n, 1, h, 1)
        cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (n, 1, 1, w)
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(c, device=x.device)[None, :, None, None]
        return x[batch, chan, rows, cols]


class ObsEncoder(nn.Module):
    """``{key: (B, To, ...)}`` -> condition ``(B, To, cond_dim)``.

    Image keys hold uint8 frames (or float frames in [0, 1]), shape (B, To, C, H, W); low-dim keys
    (B, To, D) must already be normalized. The output concatenates, per step, each camera's features (in
    ``shape_meta`` order) and then the low-dim vectors.
    """

    def __init__(self, shape_meta: dict, config):
        super().__init__()
        self.rgb_keys, self.low_dim_keys = obs_keys(shape_meta)
        obs_meta = shape_meta["obs"]
        self.low_dim_sizes = [int(torch.Size(obs_meta[k]["shape"]).numel()) for k in self.low_dim_keys]
        self.crops = nn.ModuleDict()
        self.backbones = nn.ModuleDict()
        for key in self.rgb_keys:
            c, h, w = obs_meta[key]["shape"]
            if c != 3:
                raise UserInputError(f"camera {key!r} has {c} channels; the image encoder takes RGB (3, H, W) images")
            if config.image_size is not None and (h, w) != (config.image_size, config.image_size):
                raise UserInputError(
                    f"encoder.image_size={config.image_size} but camera {key!r} gives {h}x{w} images: the size applies to "
                    "training from --dataset without --env; with an env, set the env's own image size (or encoder.image_size=null)"
                )
            crop = tuple(config.crop_shape) if config.crop_shape is not None else (h, w)
            if crop[0] > h or crop[1] > w:
                raise UserInputError(f"encoder.crop_shape {list(crop)} is larger than camera {key!r} images ({h}x{w})")
            self.crops[key] = ImageCrop(crop)
            if config.shared and self.backbones:
                continue
            self.backbones["shared" if config.shared else key] = build_backbone(config, crop)
        self.shared = config.shared
        self.cond_dim = len(self.rgb_keys) * config.feature_dim + sum(self.low_dim_sizes)
        if self.rgb_keys:
            self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        batch, steps = next(iter(obs.values())).shape[:2]
        features = []
        for key in self.rgb_keys:
            images = self.crops[key](obs[key].flatten(0, 1))  # (B*To, C, h, w), still uint8 when given so
            if images.dtype == torch.uint8:
                images = images.float().div_(255.0)
            images = (images - self.mean) / self.std
            net = self.backbones["shared" if self.shared else key]
            features.append(net(images).view(batch, steps, -1))
        for key in self.low_dim_keys:
            features.append(obs[key].reshape(batch, steps, -1))
        return torch.cat(features, dim=-1)  # (B, To, cond_dim)
