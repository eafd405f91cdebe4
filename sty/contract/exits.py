"""Exit codes shared by every `sty` command (README.md documents them), and the error for bad usage."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    DIFFERENT = 1  # diff found differences, apply --check found drift
    INVALID = 2  # invalid input or usage: a sentence per problem, nothing written
    FAILED = 3  # a check or an operation failed


class UsageError(Exception):
    """The command cannot run as asked (unknown target, no bundles, not root ...): one sentence, exit 2."""
