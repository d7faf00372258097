"""Suite-wide settings: no hub access, and one offline asset cache per test session (unless one is set)."""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "ALIGNLAB_CACHE_DIR" not in os.environ:
    os.environ["ALIGNLAB_CACHE_DIR"] = tempfile.mkdtemp(prefix="alignlab-test-cache-")

import torch

# Two cores shared with pytest itself: one intra-op thread avoids oversubscription stalls in small matmuls.
torch.set_num_threads(1)
