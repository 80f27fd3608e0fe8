"""Observation encoder: one condition vector per observation step.

Each camera goes through a torchvision ResNet-18 (``weights=None``: nothing is downloaded; a
local state-dict file may be given) with BatchNorm replaced by GroupNorm, because BatchNorm's
running statistics interact badly with EMA weights and small batches (diffusion_policy's
finding). Images are randomly cropped in train mode and center-cropped in eval mode. Low-dim
keys (already normalized by the policy) are concatenated after the image features. An
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
    """Random crop per image in train mode, center crop in eval mode. (N, C, H, W) -> (N, C, h, w)."""

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

    Image keys hold float images in [0, 1], shape (B, To, C, H, W); low-dim keys (B, To, D) must
    already be normalized. The output concatenates, per step, each camera's features (in
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
                raise UserInputError(f"camera {key!r} has {c} channels; the ResNet encoder takes RGB (3, H, W) images")
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
            self.backbones["shared" if config.shared else key] = resnet18_backbone(config)
        self.shared = config.shared
        self.cond_dim = len(self.rgb_keys) * config.feature_dim + sum(self.low_dim_sizes)
        if self.rgb_keys:
            self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        batch, steps = next(iter(obs.values())).shape[:2]
        features = []
        for key in self.rgb_keys:
            images = obs[key].flatten(0, 1)  # (B*To, C, H, W)
            images = (self.crops[key](images) - self.mean) / self.std
            net = self.backbones["shared" if self.shared else key]
            features.append(net(images).view(batch, steps, -1))
        for key in self.low_dim_keys:
            features.append(obs[key].reshape(batch, steps, -1))
        return torch.cat(features, dim=-1)  # (B, To, cond_dim)
