"""Write files atomically: to a temporary file in the target's directory, then ``os.replace``.

A failed or killed write (disk full, a file-size limit, Ctrl-C) leaves the previous file as it was
and no half-written file at the target path; the temporary file is removed on error. Every file
qlab writes (caches, exports) goes through here. No qlab imports: any package may use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically,
    with the permissions a new file would get (umask applied)."""
    target = Path(target)
    # the temporary name ends in the target's suffix: writers that pick a format by extension
    # (matplotlib's savefig, onnxruntime's quantizers) write the same format they would at ``target``
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """``Path(target).write_text(text)`` (UTF-8), atomically."""
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(target: str | os.PathLike[str], obj: Any, **kwargs: Any) -> None:
    """``json.dump(obj, file, **kwargs)`` to ``target``, atomically: an object ``json`` cannot
    serialise raises before anything is written, and the previous file stays as it was."""
    write_text(target, json.dumps(obj, **kwargs))


def save_figure(fig: Any, target: str | os.PathLike[str] | IO[bytes], **kwargs: Any) -> None:
    """``fig.savefig(target, **kwargs)`` (a matplotlib ``Figure``), atomically for a path. The
    format is the target's extension, or ``format=``, or matplotlib's default format when the
    path has none (the file is then written at ``target`` exactly, no extension appended)."""
    if not isinstance(target, (str, os.PathLike)):  # a file object: matplotlib writes it directly
        fig.savefig(target, **kwargs)
        return
    fmt = kwargs.pop("format", None) or Path(target).suffix[1:] or fig.canvas.get_default_filetype()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)


__all__ = ["atomic_path", "save_figure", "write_json", "write_text"]
