"""Files written whole or not at all, so a kill, a crash or a full disk never leaves half a file.

The content goes to a temporary file beside the target, which is flushed, fsynced and renamed over it
(os.replace is atomic within a folder); the folder is then fsynced so that the rename itself is durable.
At any moment a reader sees the previous complete file or the new complete one.
"""

import contextlib
import glob
import logging
import os


def temporary_path(path):
    """The hidden temporary file beside `path` that this process writes it through."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_file(path, mode="wb", **open_kwargs):
    """open() for writing whose content replaces `path` only when the block ends without an error.

    On an error (or an interrupt) the temporary file is removed and `path` keeps its previous content.
    """
    tmp_path = temporary_path(path)
    try:
        with open(tmp_path, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp_path)
        raise
    fsync_folder(os.path.dirname(os.path.abspath(path)))


def remove_interrupted_writes(path):
    """Delete temporary files of `path` left by processes killed while writing it."""
    folder, name = os.path.split(os.path.abspath(path))
    for stale in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")):
        logging.warning("Removing %s, left by an interrupted write.", stale)
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)


def fsync_folder(folder):
    """Make renames in `folder` durable (POSIX; folders cannot be opened for fsync on Windows)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
