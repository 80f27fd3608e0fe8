"""Shared settings for this plugin's tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tensors are tiny: a second thread buys nothing, and on a busy machine its barrier waits
    make every op tens of times slower. Restored afterwards for other plugins' tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
