"""One intra-op thread for this plugin's tests: their models are tiny, and on a busy 2-core
machine a second thread only adds spin-waits (tests ran several times slower with two)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
