"""The ``diffdensity`` command line: it only parses options and calls the library (one module per command group).

Sub-commands are registered on the click group :func:`main`; ``diffdensity train``'s options are generated from
:class:`diffdensity.training.TrainConfig`'s fields (one each). Every error becomes one line and exit status 1
(``--debug`` or ``DIFFDENSITY_DEBUG=1`` for the traceback). Nothing here imports torch until a command runs.
"""
from __future__ import annotations

import click

__all__ = ["main", "train_options", "options_to_config_dict"]


class _Group(click.Group):
    """The ``diffdensity`` group: every library error of every sub-command becomes one line and exit status 1;
    ``--debug`` (or ``DIFFDENSITY_DEBUG=1``) shows the traceback instead."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Abort() from None
        except Exception as e:  # noqa: BLE001 - the one place where errors become messages
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(_one_line(e)) from None


def _one_line(e: BaseException) -> str:
    from .._io_utils import DiskFullError

    msg = " ".join(str(e).split()) or "(no message)"
    if isinstance(e, (ValueError, TypeError, DiskFullError)):
        return msg
    return f"{type(e).__name__}: {msg} (run with --debug for the traceback)"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--debug", is_flag=True, envvar="DIFFDENSITY_DEBUG", help="show Python tracebacks of errors")
@click.version_option(package_name="diffdensity")
def main(debug):
    """diffdensity: density in diffusion models (training, sampling, likelihood)."""


# the sub-commands register themselves on `main` when imported
from . import align, analyze, demo, distributional, guide, likelihood, models, report, reproduce, sample  # noqa: E402,F401
from .train import LazyParamsCommand, options_to_config_dict, train_cmd, train_options  # noqa: E402,F401


def _threads(ctx, param, value):
    """--threads (every command): the CPU thread policy of diffdensity._threads, applied before any work."""
    from .._threads import apply_threads

    try:
        apply_threads(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _with_threads(command: click.Command) -> None:
    """Give ``command`` (and a group's sub-commands) a --threads option, unless it has one (training: its config's)."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _with_threads(sub)
        return
    if isinstance(command, LazyParamsCommand) or any(p.name == "threads" for p in command.params):
        return  # the training commands: TrainConfig's own --threads (generated on first use, not here)
    command.params.append(click.Option(["--threads"], type=click.IntRange(min=1), default=None, is_eager=True,
                                       expose_value=False, callback=_threads,
                                       help="CPU threads (default: DIFFDENSITY_THREADS, else OMP_NUM_THREADS, else "
                                            "half the usable CPUs per process)"))


_with_threads(main)
