import pytest
import torch


@pytest.fixture(autouse=True)
def _threads():
    # two cores: one intra-op thread per test keeps timings stable under pytest
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def small(tmp_path):
    """Base config keys for a fast run on the tiny model and the bundled samples."""

    def make(method, **extra):
        base = {"method": method, "micro_batch_size": 4, "max_length": 64, "max_prompt_length": 32,
                "limit": 48, "eval_fraction": 0.0, "run_dir": str(tmp_path / f"run-{method}"),
                "tensorboard": False, "progress": False, "learning_rate": 1e-4}
        base.update(extra)
        return base

    return make
