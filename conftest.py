"""Settings for every test under this repository (core's and each plugin's).

One torch intra-op thread: the tests' tensors are tiny, and on a busy 2-core machine a second
thread only adds spin-waits (single ops measured tens of times slower with two).
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
