import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The testbed's tensors are tiny: one intra-op thread avoids contention overhead on shared CPUs."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
