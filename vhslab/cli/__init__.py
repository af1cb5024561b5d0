"""The `vhslab` command line: each command parses its options, calls one library function and
prints (or saves) what it returns. `vhslab.cli.main.app` is the typer app; `run()` its entry point."""

__all__: list[str] = []  # the CLI's public face is the `vhslab` command, not Python names
