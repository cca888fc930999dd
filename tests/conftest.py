"""Fixtures shared by every test folder; the builders they use live in :mod:`tests.helpers`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.datasets import write_cub


@pytest.fixture
def cub_dir(tmp_path: Path) -> Path:
    """A tiny CUB-200-2011 folder with real JPEGs (3 classes x 4 images)."""
    return write_cub(tmp_path / "cub")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One folder for generated datasets, shared by the whole session (written once)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def one_thread():
    """One intra-op thread: on the tests' small tensors a second thread only adds OpenMP
    barriers, which cost ~10 ms per op on a loaded 2-core machine (3 us with one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
