"""Session-wide test settings: offline, and one torch thread.

Nothing may download from a model hub. One intra-op thread: the tests use tiny tensors, for
which thread hand-off costs more than it saves (about 10x slower on a loaded 2-core machine).
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)
