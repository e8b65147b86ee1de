"""Safe outputs: written under a temporary name, published only when complete, never twice.

Three promises every command keeps, and this module is where they are kept:

- A reader never sees half an output: a file is written under ``.NAME.HOST-PID.RANDOM.partial``
  beside its final name and renamed onto it when complete.
- Two writers cannot both win: without ``force`` the final name is created exclusively (a hard
  link, which fails if the name exists), so of two commands started together one fails with
  :class:`OutputExistsError` and nothing is lost. A folder of files made together (an
  evaluation) is staged whole and renamed into place (:func:`atomic_folder`); a folder a job
  fills over time (a training run) is held with :func:`folder_lock` for the whole job.
- Nothing is left behind: a failing writer removes its partial file; a terminated one (SIGTERM,
  SIGINT, once :func:`remove_partials_on_signal` is installed) removes every partial file,
  staging folder and lock the process holds, then exits; the partial of a writer killed
  outright (SIGKILL, power loss) carries the host and process id of its writer and is swept by
  the next writer into that folder once that process is gone.

Outputs get the permissions of an ordinary new file (``0o666`` less the umask), not the
``0o600`` of a temporary file, so that a group can read models, data and reports.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".calo.lock"
# Partial files, staging folders and locks this process holds now: what a signal handler removes.
_HELD: set[Path] = set()


class OutputExistsError(FileExistsError):
    """The output path exists (or another job is writing it) and overwriting was not asked for."""


def check_output_path(path: str | os.PathLike[str], force: bool) -> Path:
    """Return ``path`` as a Path after checking it may be written.

    Raises:
        OutputExistsError: If it exists and ``force`` is false.
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; use --force to overwrite it")
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _writer_tag() -> str:
    """``HOST-PID`` of this process, as it appears in its partial files and locks."""
    return f"{socket.gethostname().replace('.', '_').replace('-', '_')}-{os.getpid()}"


def _process_gone(tag: str) -> bool:
    """Whether the writer named by a ``HOST-PID`` tag is known to have ended (on this host only)."""
    host, _, pid = tag.rpartition("-")
    if host != _writer_tag().rpartition("-")[0] or not pid.isdigit():
        return False  # another machine's writer (a shared file system): its fate is unknown here
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sweep_stale_partials(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove the partial files in ``folder`` (of output ``name`` only, if given) whose writer is gone.

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{name}.*{PARTIAL_SUFFIX}" if name else f".*{PARTIAL_SUFFIX}"
    removed = []
    for path in folder.glob(pattern):
        parts = path.name[: -len(PARTIAL_SUFFIX)].rsplit(".", 2)
        if len(parts) == 3 and _process_gone(parts[1]):
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                removed.append(path)
    return removed


def lock_path(folder: str | os.PathLike[str]) -> Path:
    """Where :func:`folder_lock` keeps the lock of ``folder``: beside it, as ``.NAME.calo.lock``."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}{LOCK_SUFFIX}"


def publish(tmp: str | os.PathLike[str], path: str | os.PathLike[str], force: bool) -> None:
    """Move the complete file ``tmp`` onto ``path``: replacing it with ``force``, else exclusively.

    Raises:
        OutputExistsError: ``path`` exists (perhaps just created by a concurrent writer) and
            ``force`` is false; ``tmp`` is left for the caller to remove.
    """
    tmp, path = Path(tmp), Path(path)
    if force:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError as err:
        raise OutputExistsError(
            f"{path} exists (written by another job meanwhile?); use --force to overwrite it"
        ) from err
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # A file system without hard links: claim the name exclusively, then replace the placeholder.
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError as exists:
            raise OutputExistsError(f"{path} exists; use --force to overwrite it") from exists
        os.replace(tmp, path)
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; publish it onto ``path`` only if the block succeeds.

    A failing or interrupted writer leaves the destination untouched and removes its partial
    file, so a reader never sees half an output; without ``force`` the final name is claimed
    exclusively (see :func:`publish`). Stale partials of killed writers of the same output are
    swept first.
    """
    path = check_output_path(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_partials(path.parent, path.name)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{_writer_tag()}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp = Path(tmp_name)
    _HELD.add(tmp)
    try:
        yield tmp
        publish(tmp, path, force)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _HELD.discard(tmp)


@contextlib.contextmanager
def atomic_folder(
    path: str | os.PathLike[str],
    force: bool = False,
    replaceable: Callable[[Path], bool] = lambda p: False,
    what: str = "an output",
) -> Iterator[Path]:
    """Yield an empty staging folder beside ``path``; it becomes ``path`` only if the block succeeds.

    ``path`` must be absent or empty, or, with ``force``, a folder that ``replaceable`` accepts
    (a former output of the same kind): it is then replaced whole, so no file of the former
    output stays. A folder of other files is never replaced, ``force`` or not. ``what`` names
    the output in messages (``"an evaluation"``).

    Raises:
        OutputExistsError: ``path`` is taken (perhaps just now, by a concurrent writer).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_partials(path.parent, path.name)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_writer_tag()}.", suffix=PARTIAL_SUFFIX, dir=path.parent))
    os.chmod(stage, 0o777 & ~_umask())
    _HELD.add(stage)
    try:
        yield stage
        try:
            os.rename(stage, path)  # atomic onto an absent or empty folder
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
        ours = path.is_dir() and replaceable(path)
        if not (force and ours):
            raise OutputExistsError(
                f"{path} already holds {what}; use --force to replace it" if ours
                else f"{path} exists and holds other files than {what}; choose another place"
            )  # fmt: skip
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_writer_tag()}.", suffix=PARTIAL_SUFFIX, dir=path.parent))
        os.rename(path, old / path.name)
        os.rename(stage, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        _HELD.discard(stage)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Hold ``folder`` for one job: a second job on the same folder fails at once.

    The lock is a file created exclusively beside the folder (``.NAME.calo.lock``; its parent is
    created if needed, so an unwritable location fails here, before any long work); a lock left
    by a killed job of this host is taken over.

    Args:
        folder: The output folder.
        what: The job, for the message (``"an evaluation"``, ``"a training run"``).

    Raises:
        OutputExistsError: Another live job holds the folder.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(folder)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            try:
                holder = lock.read_text().strip()
            except FileNotFoundError:
                continue  # released meanwhile
            if holder and _process_gone(holder):
                lock.unlink(missing_ok=True)
                continue
            raise OutputExistsError(
                f"{folder} is being written by {what} of another process ({holder or 'unknown'}); wait for it, "
                f"or remove {lock} if that job is gone"
            ) from None
        with os.fdopen(fd, "w") as handle:
            handle.write(_writer_tag())
        _HELD.add(lock)
        break
    else:  # pragma: no cover - a lock taken over twice in a row by a racing job
        raise OutputExistsError(f"{folder} is being written by another job")
    sweep_stale_partials(folder.parent, folder.name)  # what a killed job left beside the folder
    sweep_stale_partials(folder)  # and inside it
    try:
        yield folder
    finally:
        lock.unlink(missing_ok=True)
        _HELD.discard(lock)


def _remove_held_and_exit(signum: int, frame: object) -> None:
    for path in list(_HELD):
        with contextlib.suppress(OSError):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    name = signal.Signals(signum).name
    os.write(2, f"calo: stopped by {name}; {len(_HELD)} unfinished output(s) removed\n".encode())
    os._exit(128 + signum)


def _forget_in_forked_child() -> None:
    """A forked child (a pool drawing figures, a data-loader worker) holds none of its parent's
    outputs: it must not remove them when it is itself stopped, which pools do with SIGTERM."""
    _HELD.clear()
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) is _remove_held_and_exit:
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)


os.register_at_fork(after_in_child=_forget_in_forked_child)


def remove_partials_on_signal() -> Callable[[], None]:
    """On SIGTERM (``timeout``, Slurm, ``kill``) or SIGINT (Ctrl-C): remove what this process holds
    unfinished (partial files, staging folders, locks), say so on stderr, and exit with 128 + the
    signal number.

    Done in the handler itself, not by raising into the program: an exception raised by a signal
    can land in a finalizer (``__del__``), where Python swallows it, and the program would go on
    as if nothing had been asked of it.

    Returns:
        A function that restores the former handlers (call it when the work is done).
    """
    former = {sig: signal.signal(sig, _remove_held_and_exit) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in former.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    return restore
