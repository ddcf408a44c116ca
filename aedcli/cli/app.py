"""The ``aed`` command line: a thin Typer layer over the core.

Each subcommand lives in ``aedcli/cli/<name>.py`` and only parses options, calls the core and prints. Results
go to stdout (``--json -`` prints them as JSON there), logs and progress to stderr. Errors a user can fix
(:class:`aedcli.errors.AedError`) become one red sentence on stderr and a non-zero exit code (2 for usage
errors, 1 for failures); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys

# OpenMP threads that spin while waiting starve each other (and everything else) on small, busy CPUs; a
# passive wait costs little on an idle machine. Set before torch is imported; the user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from aedcli import __version__
from aedcli.cli import bench, calibrate, detect, distill, evaluate, export, teach
from aedcli.errors import AedError


def _plain_argument_help() -> None:
    """Arguments appear in help as ``SOURCE``, not ``SOURCE <str>`` in the list and ``{SOURCE}`` in the usage
    line: recent Typer versions print Python type names there, which mean nothing to a user. Only methods
    that exist are replaced, so another Typer keeps its own form."""
    argument = getattr(typer.core, "TyperArgument", None)
    if argument is None:
        return
    if hasattr(argument, "display_type_rich"):
        argument.display_type_rich = lambda self, ctx: None
    if hasattr(argument, "_usage_display_name"):
        argument._usage_display_name = lambda self: self.display_name_raw + ("..." if self.nargs != 1 else "")


_plain_argument_help()
app = typer.Typer(
    name="aed",
    help="Real-time video anomaly detection by adversarial knowledge distillation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and OpenCV's own messages."),
) -> None:
    """Real-time video anomaly detection by adversarial knowledge distillation.

    Detect with the shipped weights:   aed detect clip.mp4 --overlay
    Train on your own cameras:         aed distill --dataset folder --root my_cameras --out runs/cam
    Evaluate on a benchmark:           aed eval --dataset ped2 --root DIR
    """
    if debug:
        os.environ["AED_DEBUG"] = "1"


app.command("detect")(detect.detect)
app.command("teach")(teach.teach)
app.command("distill")(distill.distill)
app.command("eval")(evaluate.eval_command)
app.command("calibrate")(calibrate.calibrate)
app.command("bench")(bench.bench)
app.command("export")(export.export)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``aed`` console script."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or os.environ.get("AED_DEBUG") == "1"
    if not debug:
        # OpenCV and FFmpeg print their own messages ("moov atom not found", "Camera index out of range")
        # around aed's one-sentence error; keep them quiet unless --debug or the user's own setting asks.
        quiet_opencv = "OPENCV_LOG_LEVEL" not in os.environ
        os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
        os.environ.setdefault("OPENCV_VIDEOIO_DEBUG", "0")
        if quiet_opencv:
            # OpenCV was imported (with the commands) before this point and read its log level then.
            import cv2

            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        # Outside standalone mode Click returns a command's typer.Exit code instead of exiting.
        code = app(args=argv, standalone_mode=False)
    except AedError as exc:
        if debug:
            raise
        # escape: a path such as "runs [old]/a.mp4" is text, not console markup (which "[/]" would break).
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except MemoryError as exc:
        if debug:
            raise
        # Files being written are discarded (atomic output), so the command can simply be run again.
        reason = f" ({escape(str(exc))})" if str(exc) else ""
        err_console.print(
            f"[bold red]error:[/] aed ran out of memory{reason}; lower --batch or the input size, or free "
            "some memory, and run the command again.",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("[yellow]aborted[/]")
        sys.exit(1)
    except Exception as exc:
        # Click's usage errors (unknown option, bad value) arrive here outside standalone mode; Typer may
        # vendor Click, so recognise them by their interface rather than by class.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if isinstance(code, int) and code != 0:
        sys.exit(code)
