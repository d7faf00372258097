import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The testbed's tensors are tiny: one intra-op thread avoids contention overhead on shared CPUs."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def sentiment_experiments_dir(tmp_path_factory):
    """One --out directory for the smoke runs of the experiments on the sentiment testbed (ranking-winrate,
    tdpo-table): they share the smoke stages, so the second command reuses the first one's reference,
    classifier and pairs, as two commands on one directory do."""
    return tmp_path_factory.mktemp("sentiment-experiments")
