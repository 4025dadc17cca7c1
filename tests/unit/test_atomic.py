"""Atomic writes: all or nothing, and a refused write names the file it was for."""

from __future__ import annotations

import errno
from pathlib import Path

import polars as pl
import pytest

from paretohqd.atomic import write_parquet, write_text
from paretohqd.errors import describe_os_error


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    target = tmp_path / "t.parquet"
    write_parquet(target, pl.DataFrame({"a": [1]}))

    def full(table: object, where: object, **kw: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 half")
        raise OSError(errno.ENOSPC, "Error writing bytes to file (no file named)")

    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(OSError) as err:
        write_parquet(target, pl.DataFrame({"a": [2]}))
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert pl.read_parquet(target)["a"].to_list() == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_a_refused_directory_names_the_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError) as err:
        write_text(blocker / "sub" / "x.txt", "x")
    assert err.value.filename == str(blocker / "sub")


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (errno.ENOSPC, "no space left on the device: /r/x; free some space"),
        (errno.EDQUOT, "disk quota exceeded: /r/x"),
        (errno.EROFS, "read-only file system: /r/x"),
        (errno.EACCES, "permission denied: /r/x; make the directory writable"),
        (errno.EISDIR, "a directory is in the way: /r/x; move it away"),
    ],
)
def test_the_machines_os_errors_read_as_one_line(code: int, says: str) -> None:
    text = describe_os_error(OSError(code, "x", "/r/x"))
    assert text is not None and text.startswith(says) and "\n" not in text


def test_other_os_errors_are_not_described() -> None:
    assert describe_os_error(FileNotFoundError(errno.ENOENT, "x", "/r/x")) is None
    assert describe_os_error(OSError("no errno")) is None
