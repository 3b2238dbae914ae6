"""The one error tree of medai.

Every message names what was wrong (file, record id or column — never patient data), what was expected, and
the fix. The CLI prints ``str(error)`` on one line and exits non-zero.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MedaiError(Exception):
    """Base class of every error medai raises on purpose."""


class InvalidParameterError(MedaiError, ValueError):
    """A parameter (CLI flag, recipe key, function argument) has a value outside what is accepted."""


class DataValidationError(MedaiError, ValueError):
    """Input data does not have the expected shape, type, range or content."""


class NotFittedError(MedaiError, RuntimeError):
    """A fitted-state attribute was used before ``fit``."""


class MissingDependencyError(MedaiError, ImportError):
    """An optional dependency is absent; the message carries the install command."""


class UnknownNameError(MedaiError, KeyError):
    """A name (model, dataset, column, ...) is not known; the message suggests the closest."""

    def __str__(self) -> str:  # KeyError would repr() the message and add quotes
        return str(self.args[0]) if self.args else ""


class ArtifactIntegrityError(MedaiError):
    """A model artefact does not match its sha256 manifest (changed, missing or extra file)."""


class RunStateError(MedaiError):
    """An output directory is in a state that forbids the operation (exists, partial, incomplete)."""


def closest(name: str, choices: Iterable[str]) -> str:
    """Return a ' Did you mean ...?' suffix naming the closest choice, or '' when none is close."""
    choices = [str(c) for c in choices]
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f" Did you mean '{lowered[match[0]]}'?" if match else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> UnknownNameError:
    """Build the standard 'unknown name' error: lists the choices and suggests the closest."""
    choices = sorted(str(c) for c in choices)
    listed = ", ".join(choices) if len(choices) <= 30 else ", ".join(choices[:30]) + ", ..."
    return UnknownNameError(f"Unknown {kind} '{name}'.{closest(name, choices)} Known: {listed}.")


def invalid_parameter(name: str, owner: str, expected: str, got: object) -> InvalidParameterError:
    """scikit-learn's template: "The 'x' parameter of Y must be ... Got ... instead."."""
    return InvalidParameterError(f"The '{name}' parameter of {owner} must be {expected}. Got {got!r} instead.")
