"""Atomic writes leave either the old file or the new one, with an ordinary file mode."""
import os
import stat

import pytest

from polymodal.core.atomic import atomic_path, atomic_write_text


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_file_has_the_umask_mode_not_mkstemps_0600(tmp_path, mask):
    old = os.umask(mask)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    p = atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]
