"""User-facing errors.

Anything the user can fix (a wrong path, an unknown name, a corrupt file) is raised
as :class:`UserError` with a one-line message that names the culprit and what to do.
The CLI prints it as ``error: <message>`` and exits with status 2, never a traceback.
"""

from __future__ import annotations

import difflib


class UserError(Exception):
    """An error caused by input the user controls; printed as one line by the CLI."""


class DataError(UserError):
    """A data file is missing, truncated, corrupt or has unexpected content."""


def unknown_name(kind: str, name: str, known, extra: str = "") -> UserError:
    """Build the standard 'unknown X' error with close-match suggestions (``extra``: one more
    sentence, e.g. how to load a plug-in that would define the name)."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    tail = f" {extra.strip()}" if extra.strip() else ""
    return UserError(f"unknown {kind} '{name}'.{hint} Known: {', '.join(known) or '(none)'}.{tail}")


class ResourceError(UserError):
    """The machine ran out of something (disk space, permission, GPU memory): one line saying
    where and what to do; whatever was already written stays valid and a re-run resumes."""


_DISK_FULL = (28, 122)  # ENOSPC, EDQUOT
_DENIED = (13, 1, 30)  # EACCES, EPERM, EROFS


def resource_error(exc: BaseException, path=None, job: str | None = None) -> ResourceError | None:
    """A :class:`ResourceError` for a full disk, a denied write or CUDA out-of-memory, else None.

    ``path`` names the file being written when the exception does not; ``job`` the job running.
    """
    if isinstance(exc, ResourceError):
        return exc
    where = f" in job '{job}'" if job else ""
    resume = "finished jobs are kept; re-run the same command to resume"
    name = type(exc).__name__
    if name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc)):
        return ResourceError(
            f"out of GPU memory{where}: lower the batch size (--set method_settings.batch_size=..., "
            f"--set finetune_batch_size=...), use --precision bf16, or run fewer workers per GPU; {resume}")
    if not isinstance(exc, OSError):
        return None
    code = exc.errno
    text = str(exc)
    if code is None:  # pyarrow and friends put the errno in the message only
        if "No space left" in text or "errno 28" in text.lower():
            code = 28
        elif "Permission denied" in text:
            code = 13
    target = getattr(exc, "filename", None) or path
    at = f" writing '{target}'" if target else ""
    if code in _DISK_FULL:
        return ResourceError(f"disk full{at}{where}: free space there (or point --out / --cache-dir at another "
                             f"disk) and re-run the same command; {resume}")
    if code in _DENIED:
        return ResourceError(f"permission denied{at}{where}: make the folder writable or choose another "
                             f"--out / --cache-dir; {resume}")
    return None
