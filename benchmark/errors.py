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


def unknown_name(kind: str, name: str, known) -> UserError:
    """Build the standard 'unknown X' error with close-match suggestions."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return UserError(f"unknown {kind} '{name}'.{hint} Known: {', '.join(known) or '(none)'}.")
