"""Errors fabula raises on purpose.

Every one of them carries a message meant for a person: what went wrong, where,
and how to fix it. The CLI prints ``fabula: error: <message>`` on one line and
exits with ``exit_code``; anything else escaping is a bug.

    FabulaError                 base; exit code 2
    ├── PackError               a premise pack is malformed or inconsistent
    ├── UsageError              an option or argument cannot work as given
    ├── BackendError            a model backend cannot be loaded or reached
    │   └── MissingDependency   an optional extra is not installed
    └── StoreError              a corpus folder cannot be used as asked

    FabulaWarning               something worked around; the CLI prints
                                ``fabula: warning: <message>`` on one line
"""

from __future__ import annotations


class FabulaError(Exception):
    exit_code = 2

    def __init__(self, message: str):
        # One line: the CLI prints it as is, and logs grep it.
        super().__init__(" ".join(message.split()))


class PackError(FabulaError):
    pass


class UsageError(FabulaError):
    pass


class BackendError(FabulaError):
    pass


class MissingDependency(BackendError):
    def __init__(self, what: str, package: str, extra: str | None = None):
        hint = f"pip install 'fabula[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{what} needs the package {package}, which is not installed; run: {hint}")


def need(module: str, what: str, extra: str | None = None):
    """``module`` imported, or MissingDependency naming ``what`` needs it and the extra that installs it."""
    try:
        return __import__(module)
    except ImportError:
        raise MissingDependency(what, module, extra=extra) from None


class StoreError(FabulaError):
    pass


class FabulaWarning(UserWarning):
    pass
