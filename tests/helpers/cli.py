"""`vhslab ...` run in this process: the same entry point (`vhslab.cli.main.run`, with its one-line usage
errors and exit codes) as the installed command, without a new interpreter importing torch and loading
the world again (seconds a call). Returns a `subprocess.CompletedProcess`, so a test reads it as it
would a real run. One real subprocess per kind of check stays where the process itself is under test
(a kill, the environment, the installed script)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback

import torch

from vhslab.cli.main import run


def vhslab(*args, cwd=None) -> subprocess.CompletedProcess:
    """Exit code, stdout and stderr of `vhslab ARGS` (in `cwd` if given); torch's thread count and the
    working directory are put back afterwards."""
    argv, threads, here = sys.argv, torch.get_num_threads(), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["vhslab", *map(str, args)]
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
            except Exception:  # what the interpreter does with an uncaught error: traceback, exit 1
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = argv
        os.chdir(here)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["vhslab", *map(str, args)], code, out.getvalue(), err.getvalue())
