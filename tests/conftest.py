import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_sd1():
    from gfti_core.tiny import tiny_pipeline

    return tiny_pipeline("sd1")


@pytest.fixture(scope="session")
def tiny_sd2():
    from gfti_core.tiny import tiny_pipeline

    return tiny_pipeline("sd2")


@pytest.fixture(scope="session")
def tiny_sdxl():
    from gfti_core.tiny import tiny_pipeline

    return tiny_pipeline("sdxl")
