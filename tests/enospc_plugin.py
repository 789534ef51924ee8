"""A pytest plugin for test_faults.py (`-p enospc_plugin`): the disk is full. Every write of a
record, checkpoint, weights file, table or session file fails with ENOSPC, as on a full disk."""
import errno
import os

from vggbench import records


def pytest_configure(config):
    def full_disk(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    records.atomic_write_bytes = full_disk  # records.atomic_write, checkpoints and weights go through it
