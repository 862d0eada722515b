"""The chargen command line: a thin click shell over the library.

Results (generated text, figures asked for) go to stdout; progress, tables,
warnings and errors go to stderr, so ``chargen sample > out.txt`` captures only
text. Every expected failure is one line on stderr and a non-zero exit.

Each command lives in its own module (train.py, sample.py, suggest.py, models.py for
eval and info, files.py for inspect, compare and show, serve.py); options.py holds what they
share, and display.py all of the terminal drawing.
"""

from __future__ import annotations

import errno
import os
import sys

import click

from chargen import __version__
from chargen.cli.files import compare, inspect, show
from chargen.cli.models import eval_command, info
from chargen.cli.sample import sample
from chargen.cli.serve import serve
from chargen.cli.suggest import suggest
from chargen.cli.train import train
from chargen.errors import ChargenError

# Raised by click 8.2 and later for a bare `chargen`; older versions print the help themselves.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class ChargenGroup(click.Group):
    """A click group whose failures are always one line on stderr, never a traceback."""

    def main(self, args=None, prog_name=None, **extra):
        try:
            return super().main(args=args, prog_name=prog_name or "chargen", standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except _NO_ARGS_IS_HELP as e:  # bare `chargen`: its help, as --help prints it
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.UsageError as e:
            where = f"{e.ctx.command_path}: " if e.ctx else ""
            click.echo(f"Error: {where}{e.format_message()}", err=True)
            sys.exit(2)
        except (click.ClickException, ChargenError) as e:
            message = e.format_message() if isinstance(e, click.ClickException) else str(e)
            click.echo(f"Error: {message}", err=True)
            sys.exit(1)
        except (click.Abort, KeyboardInterrupt):
            click.echo("Aborted.", err=True)
            sys.exit(130)

    def invoke(self, ctx: click.Context):
        # Caught here, inside click: click's own main() would turn a broken pipe into exit 1.
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `chargen sample | head`: the reader left, which is fine
            _leave_quietly_after_broken_pipe()
        except OSError as e:
            # `chargen sample > /dev/full`: every file chargen writes reports its own failures
            # with its name, so a write error without a file name is the output's.
            if e.filename is not None or e.errno not in _OUTPUT_ERRORS:
                raise
            _stdout_to_devnull()
            raise ChargenError(f"cannot write the output: {e.strerror or e}") from e


_OUTPUT_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def _leave_quietly_after_broken_pipe() -> None:
    """Exit 0 without a word, as Unix tools do when the reader of their output goes away."""
    _stdout_to_devnull()
    sys.exit(0)


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null: otherwise Python's final flush of the text still buffered for
    a closed pipe or a full disk fails again at exit (see the Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test runner's capture)
        pass


@click.group(cls=ChargenGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="chargen")
def cli():
    """Teach a recurrent neural network to write: text one character at a time,
    music one MIDI event at a time.

    \b
    Example:
      chargen train data/tinyshakespeare.txt --minutes 5
      chargen sample --temp 0.8
    """


def main():
    """Console-script entry point."""
    cli.main()


for command in (train, sample, suggest, eval_command, info, inspect, compare, show, serve):
    cli.add_command(command)
