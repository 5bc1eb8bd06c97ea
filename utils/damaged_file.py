"""A file the program wrote earlier and now finds damaged (by a crash, a full disk or a hand edit): say what is
wrong in one log line, and set it aside (never delete it) so a person can look at it; the caller starts afresh."""

from __future__ import annotations

import itertools
from pathlib import Path

from pydantic import ValidationError


def set_aside(path: str | Path) -> str:
    """Rename the file to <name>.corrupt beside itself (then .corrupt.1, .2, ... never over an earlier one);
    says what became of it."""
    path = Path(path)
    for number in itertools.count():
        aside = path.with_name(f"{path.name}.corrupt" + (f".{number}" if number else ""))
        if not aside.exists():
            break
    try:
        path.rename(aside)
    except OSError as error:
        return f"it could not be moved to {aside} ({error})"
    return f"moved to {aside}"


def describe(error: ValidationError, limit: int = 5) -> str:
    """The first few problems, each with where in the file it is, for one log line."""
    problems = []
    for problem in error.errors()[:limit]:
        location = ".".join(str(part) for part in problem["loc"]) or "the document"
        message = problem["msg"].removeprefix("Value error, ")
        problems.append(f"{location}: {message}")
    more = error.error_count() - limit
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
