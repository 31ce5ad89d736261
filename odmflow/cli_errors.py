"""How every odmflow command reports an error it expected: one red line, no traceback."""

import typer


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` on stderr and return the Exit to raise (2: bad input, 1: processing)."""
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(code)
