"""The project's one exception type for bad input.

Every error that means "the input is wrong" (an unknown site, a store of other data, a prompt the
world cannot render, an output that would replace a file vhslab did not write...) is a `VhslabError`;
the CLI exits 2 with one line for it and only for it. Anything else is a fault (exit 1). The
subclasses keep the built-in type they always had (ValueError, FileNotFoundError, FileExistsError) so
that `except ValueError` in user code still catches them.
"""

from __future__ import annotations


class VhslabError(Exception):
    """Bad input: the message names the file, option or value and what was expected."""


class InputError(VhslabError, ValueError):
    """A wrong value (shape, name, range, NaN...)."""


class MissingError(VhslabError, FileNotFoundError):
    """A named file or folder that is not there."""


class ExistsError(VhslabError, FileExistsError):
    """An output path that is taken by something this command may not replace."""


__all__ = ["ExistsError", "InputError", "MissingError", "VhslabError"]
