"""Entry point of the ``veil`` command: global options, command groups, one-line errors.

Errors veil raises on purpose (:class:`VeilError`) print as ``error: <message>`` on one line
with exit code 2; ``--debug`` shows the traceback instead. SIGTERM stops the command as Ctrl-C
does (exit code 143): the processes and servers it started are stopped and a run's ledger so
far is saved.
"""

from __future__ import annotations

import sys

import typer

from veil import __version__
from veil.cli import (
    audit,
    collab,
    data,
    deid,
    dp,
    enclave,
    he,
    image,
    model,
    mpc,
    report,
    run,
    train,
)

app = typer.Typer(
    name="veil",
    help="Privacy-preserving machine learning: train, protect, audit and report on models "
    "under four guarantees (training-data, input, output and model privacy).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data.app, name="data")
app.add_typer(model.app, name="model")
app.add_typer(dp.app, name="dp")
app.add_typer(collab.app, name="collab")
app.add_typer(he.app, name="he")
app.add_typer(mpc.app, name="mpc")
app.add_typer(image.app, name="image")
app.add_typer(deid.app, name="deid")
app.add_typer(enclave.app, name="enclave")
app.add_typer(audit.app, name="audit")
app.command("train")(train.train)
app.command("report")(report.report)
app.command("run")(run.run)

_state = {"debug": False, "terminated": False}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is so that it unwinds as from Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    _state["terminated"] = True  # typer turns any KeyboardInterrupt into exit code 130
    raise Terminated


def _unwind_on_sigterm() -> None:
    """By default SIGTERM ends Python at once: no ``finally`` runs, so the MPC ranks, Flower
    nodes and services a command started (each in its own session, stopped by PID on the way
    out) lived on after it (measured: a timed-out ``veil run`` left an MPC rank running)."""
    import signal

    signal.signal(signal.SIGTERM, _raise_terminated)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"veil {__version__}")
        raise typer.Exit()


@app.callback()
def _globals(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    from veil.core.progress import set_quiet

    set_quiet(quiet)
    _state["debug"] = debug


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return (and, when called as the program, exit with) its status code.

    The app runs in standalone mode, so usage errors and ``--help`` are handled there (exit
    code 2 and 0); veil's own errors come out here and print as one line.
    """
    from veil.core.errors import VeilError

    if argv is None:
        _unwind_on_sigterm()
    try:
        app(args=argv, prog_name="veil")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except VeilError as e:
        if _state["debug"]:
            raise
        typer.echo(f"error: {e}", err=True)
        code = 2
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        code = 130
    if _state["terminated"]:
        typer.echo("terminated", err=True)
        code = 143
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
