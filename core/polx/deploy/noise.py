"""torch's CPU ``randn`` in numpy, so a runtime without torch draws the noise torch would draw.

``torch.Generator.manual_seed(s)`` seeds an MT19937 with ``s & 0xffffffff`` (the reference
``init_genrand``); ``torch.randn`` of float32 with at least 16 elements fills the tensor with
uniforms ``(u32 & (2**24 - 1)) / 2**24``, then turns each block of 16 into normals by
Box-Muller (``u1 = 1 - x[j]``, ``u2 = x[j + 8]``, ``j < 8``), and, when the size is not a multiple
of 16, draws 16 fresh uniforms for the last 16 values and transforms them again. This module does
the same with numpy's MT19937 (whose state it sets from the same initialisation), so
``TorchNormal(seed).draw(shape)`` equals ``torch.randn(shape, generator=torch.Generator().manual_seed(seed))``
to float32 rounding (torch's vectorised log/sin/cos differ from numpy's by an ulp or so).
"""

from __future__ import annotations

import numpy as np

_N = 624


def _init_genrand(seed: int) -> np.ndarray:
    state = np.empty(_N, dtype=np.uint64)
    x = seed & 0xFFFFFFFF
    state[0] = x
    for j in range(1, _N):
        x = (1812433253 * (x ^ (x >> 30)) + j) & 0xFFFFFFFF
        state[j] = x
    return state.astype(np.uint32)


class TorchNormal:
    """Standard normal float32 draws, in the order and values of torch's CPU generator."""

    def __init__(self, seed: int = 0):
        self.seed(seed)

    def seed(self, seed: int) -> None:
        self.bits = np.random.MT19937()
        self.bits.state = {"bit_generator": "MT19937", "state": {"key": _init_genrand(int(seed)), "pos": _N}}

    def _uniform(self, n: int) -> np.ndarray:
        raw = self.bits.random_raw(n) & np.uint64((1 << 24) - 1)
        return (raw.astype(np.float32) * np.float32(1.0 / (1 << 24))).astype(np.float32)

    @staticmethod
    def _box_muller(block: np.ndarray) -> np.ndarray:
        """(k, 16) uniforms -> (k, 16) normals, torch's ``normal_fill_16``."""
        u1, u2 = 1.0 - block[:, :8], block[:, 8:]
        radius = np.sqrt(-2.0 * np.log(u1))
        theta = np.float32(2.0 * np.pi) * u2
        return np.concatenate([radius * np.cos(theta), radius * np.sin(theta)], axis=1).astype(np.float32)

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        if size < 16:
            raise ValueError(f"torch draws fewer than 16 normals another way; got shape {shape}")
        data = self._uniform(size)
        whole = size // 16 * 16
        data[:whole] = self._box_muller(data[:whole].reshape(-1, 16)).reshape(-1)
        if size % 16:
            data[size - 16 :] = self._box_muller(self._uniform(16).reshape(1, 16)).reshape(-1)
        return data.reshape(shape)
