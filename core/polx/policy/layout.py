"""Action layouts: where each action group's dimensions sit in the chunk the head sees.

An env declares its action groups in ``shape_meta["action"]["groups"]``, name -> ``[start, stop)``
in its action vector, in order and tiling it (RoboIMI: ``{"left": [0, 8], "right": [8, 16]}``).
An env that declares none has one group, ``action``, covering every dimension.

``policy.action_layout`` chooses what the head sees:

* ``natural`` (default): the env's action as it is, ``A`` wide; the groups keep their positions.
* ``packed``: each group at a fixed width ``W`` (``policy.group_width``; null: the widest group),
  zero-padded at its end, so RoboIMI with ``W = 16`` becomes ``[L8, 0x8, R8, 0x8]``, 32 wide: the
  layout a multi-embodiment head (pi0.5 style) trains on. ``mask`` marks the real dimensions; the
  policy hands it to the objective as ``action_mask``, so padded dimensions never count in a loss,
  and ``unpack`` drops them before anything leaves the policy (metrics, the executed action).

Packing happens inside ``Policy`` on normalized actions: the dataset, the normalizer and every
metric stay in the env's units and width.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs
import torch

from polx.errors import PolxError, UserInputError
from polx.policy.valid import valid_mask

LAYOUTS = ("natural", "packed")
Group = tuple[str, int, int]  # (name, start, stop): dims [start, stop) of an action vector


def declared_groups(action_meta: Mapping[str, Any], source: str = "shape_meta action") -> tuple[Group, ...]:
    """The groups of ``shape_meta["action"]``, checked to tile ``[0, A)`` in order; one ``action`` group if none.

    ``source`` names where the groups came from in the error message."""
    dim = int(action_meta["shape"][0])
    groups = action_meta.get("groups")
    if not groups:
        return (("action", 0, dim),)
    out, expected_start = [], 0
    for name, bounds in groups.items():
        start, stop = (int(b) for b in bounds)
        if start != expected_start or stop <= start:
            raise PolxError(
                f"{source} group {name!r}: [{start}, {stop}) must start at {expected_start} and be non-empty "
                f"(groups must tile the {dim} action dims in order)"
            )
        out.append((str(name), start, stop))
        expected_start = stop
    if expected_start != dim:
        raise PolxError(f"{source} groups cover dims [0, {expected_start}) of the {dim}-dim action; they must cover all")
    return tuple(out)


@attrs.define(frozen=True, eq=False)
class ActionLayout:
    """How the env's action (``env_dim`` wide) maps onto the head's (``dim`` wide)."""

    groups: tuple[Group, ...]  # in the env's action
    width: int | None  # the per-group width when packed; None: natural
    index: torch.Tensor = attrs.field(init=False)  # (env_dim,) int64: head position of each env dim

    def __attrs_post_init__(self) -> None:
        if self.width is None:
            index = torch.arange(self.groups[-1][2])
        else:
            index = torch.cat([g * self.width + torch.arange(stop - start) for g, (_, start, stop) in enumerate(self.groups)])
        object.__setattr__(self, "index", index)

    @classmethod
    def from_config(cls, shape_meta: Mapping[str, Any], policy_config: Any) -> "ActionLayout":
        groups = declared_groups(shape_meta["action"])
        if getattr(policy_config, "action_layout", "natural") == "natural":
            return cls(groups, None)
        widest = max(stop - start for _, start, stop in groups)
        width = policy_config.group_width or widest
        if width < widest:
            name = next(n for n, start, stop in groups if stop - start == widest)
            raise UserInputError(
                f"policy.group_width: {width} is narrower than action group {name!r} ({widest} dims); use >= {widest} or null"
            )
        return cls(groups, width)

    @property
    def packed(self) -> bool:
        return self.width is not None

    @property
    def env_dim(self) -> int:
        return self.groups[-1][2]

    @property
    def dim(self) -> int:
        """The head's action width."""
        return self.env_dim if self.width is None else self.width * len(self.groups)

    @property
    def head_groups(self) -> tuple[Group, ...]:
        """The groups in the head's action: each ``[g * W, (g + 1) * W)`` when packed, padding included."""
        if self.width is None:
            return self.groups
        return tuple((name, g * self.width, (g + 1) * self.width) for g, (name, _, _) in enumerate(self.groups))

    @property
    def mask(self) -> torch.Tensor:
        """(dim,) bool: True on the dims that hold an env dimension, False on padding."""
        mask = torch.zeros(self.dim, dtype=torch.bool)
        mask[self.index] = True
        return mask

    def pack(self, x: torch.Tensor, fill: float | bool = 0) -> torch.Tensor:
        """(..., env_dim) -> (..., dim), padding set to ``fill``; the identity when natural."""
        if self.width is None:
            return x
        out = torch.full((*x.shape[:-1], self.dim), fill, dtype=x.dtype, device=x.device)
        out[..., self.index.to(x.device)] = x
        return out

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., env_dim): the env's action, padding dropped."""
        if self.width is None:
            return x
        return x.index_select(-1, self.index.to(x.device))

    def pack_mask(self, action_mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        """The ``action_mask`` for a packed chunk shaped ``like`` (..., env_dim): the dataset's own mask (if
        any) in packed positions, padding False. Natural: ``action_mask`` unchanged."""
        if self.width is None:
            return action_mask
        return self.pack(valid_mask(like, None, action_mask), fill=False)

    def blind(self, head: Any) -> Any:
        """The head as the objective calls it: under a packed layout, blind to the padded dims of its input."""
        return PaddingBlindHead(head, self.mask) if self.width is not None else head


class PaddingBlindHead:
    """Calls ``head`` with the padded dims of ``sample`` (its first argument, in both head protocols) zeroed.

    The objectives noise padded dims like any other (training) and let the head's untrained outputs
    move them (sampling), so without this a head that mixes dims would read noise there that
    differs between training and sampling. Zeroed, they cannot reach a real dim's output.
    Everything else (``spec``, ``train()``, ...) is the head's own.
    """

    def __init__(self, head: Any, mask: torch.Tensor):
        self.head, self.mask = head, mask

    def __call__(self, sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.head(self.blind(sample), *args, **kwargs)

    def blind(self, sample: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask.to(sample.device), sample, 0.0)

    def cross_group_attention(self, sample: torch.Tensor, *args: Any) -> Any:
        return self.head.cross_group_attention(self.blind(sample), *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.head, name)
