"""`rimscope <command>`: one small table of commands, each living beside the stage it drives.

A command module offers `add_arguments(parser)` and `run(args) -> int`; it is imported only when
chosen, so `rimscope validate` never pays for importing torch.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from .errors import InputError

COMMANDS = {
    "validate": ("rimscope.validate", "check a cohort (manifest or BIDS) against the input contract"),
    "simulate": ("rimscope.simulate.command", "simulate a QSM/FLAIR cohort with known Rim+ truth"),
    "pretrain": ("rimscope.train.pretrain_command", "self-supervised cross-modal pre-training"),
    "train": ("rimscope.train.command", "fine-tune a model on labelled lesions"),
    "predict": ("rimscope.inference.cli", "rate every lesion of new subjects"),
    "evaluate": ("rimscope.evaluate.cli", "patient-grouped cross-validation of models"),
    "benchmark": ("rimscope.evaluate.benchmark", "the reproducible headline benchmark"),
    "transfer": ("rimscope.evaluate.transfer_bench", "domain-shift bench: models on shifted simulated cohorts, against the truth"),
    "review": ("rimscope.review.cli", "rate lesions in the browser, export labels"),
    "models": ("rimscope.models.cli", "list the available models"),
    "bench": ("rimscope.bench", "speed and memory benchmarks (io, simulate, models, predict)"),
    "demo": ("rimscope.demo", "simulate, predict and score a small held-out cohort"),
}


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def common_parent(defaults: bool = True) -> argparse.ArgumentParser:
    """-q/-v/--debug, accepted before or after the command. On the sub-command their defaults
    are suppressed, otherwise `rimscope -q validate ...` would have -q reset by the sub-parser."""
    keep = {} if defaults else {"default": argparse.SUPPRESS}
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars",
                   **keep)
    p.add_argument("-v", "--verbose", action="count", help="more log output",
                   **({"default": 0} if defaults else keep))
    p.add_argument("--debug", action="store_true", help="show tracebacks", **keep)
    return p


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rimscope", description="rimscope: per-lesion probability of a paramagnetic rim (PRL) from QSM with FLAIR context",
                                     parents=[common_parent()])
    parser.add_argument("--version", action="version", version=f"rimscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        if not _available(module):
            continue
        p = sub.add_parser(name, help=help_, description=help_,
                               parents=[common_parent(defaults=False)])
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    return parser


def _one_line(exc: BaseException) -> str:
    """Messages are promised on one line; a library's multi-line text is joined."""
    return " ".join(str(exc).split())


def bids_app_argv(argv: list[str]) -> list[str] | None:
    """The BIDS App calling convention, `rimscope BIDS_DIR OUT_DIR participant|group [options]`
    (fMRIPrep, MRIQC, QSMxT), as the `predict` argv it means; None for any other form."""
    if len(argv) < 3 or argv[2] not in ("participant", "group") or not Path(argv[0]).is_dir():
        return None
    names = {"--participant-label": "--subjects", "--participant_label": "--subjects",
             "--session-label": "--sessions", "--session_label": "--sessions"}
    return ["predict", "-i", argv[0], "-o", argv[1], "--bids-app", argv[2]] + [names.get(a, a) for a in argv[3:]]


def main(argv=None) -> int:
    from .flags import modernise

    argv = list(sys.argv[1:] if argv is None else argv)
    argv = bids_app_argv(argv) or argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen is not None and chosen not in COMMANDS:  # a typo: name the nearest command
        import difflib

        near = difflib.get_close_matches(chosen, COMMANDS, n=1, cutoff=0.5)
        print(f"rimscope: error: unknown command {chosen!r}"
              + (f"; did you mean {near[0]!r}?" if near else "")
              + " (rimscope --help lists the commands)", file=sys.stderr)
        return 2
    argv = modernise(chosen, argv)
    parser = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    from .runtime import setup_logging

    setup_logging(args.verbose, args.quiet)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    from .errors import user_os_error

    try:
        with sigterm_as_interrupt():
            code = int(module.run(args) or 0)
            sys.stdout.flush()  # a closed pipe (`| head`) shows here, inside the handler below
            return code
    except BrokenPipeError:  # the reader went away: stop quietly, as the Python docs recommend
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        return 1
    except InputError as exc:
        if args.debug:
            raise
        print(f"rimscope: error: {' '.join(str(exc).split())}", file=sys.stderr)  # always one line
        return 2
    except Terminated:
        print("rimscope: terminated (SIGTERM); finished work is kept, rerun the same command to go "
              "on", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("rimscope: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: one line, with the way to see more
        if args.debug:
            raise
        user = user_os_error(exc)  # a full or read-only disk, no permission: the user's to fix
        if user is not None:
            print(f"rimscope: error: {_one_line(user)}", file=sys.stderr)
            return 2
        logging.getLogger("rimscope").debug("traceback", exc_info=True)
        print(f"rimscope: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the "
              "traceback and report it)", file=sys.stderr)
        return 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (what a cluster scheduler sends at its time limit), raised like Ctrl-C so every
    `finally` runs: temporary files go, finished subjects stay, the CLI exits 143."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While inside, SIGTERM raises Terminated in the main thread (elsewhere: left as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Terminated()

    def _unraisable(info):
        # a SIGTERM that lands inside a finalizer (__del__) cannot propagate: Python would print
        # "Exception ignored" with a traceback and carry on. Deliver it again, outside the finalizer.
        if isinstance(info.exc_value, Terminated):
            signal.setitimer(signal.ITIMER_REAL, 0.01)  # SIGALRM raises it once this hook returns
            return
        hook(info)

    hook = sys.unraisablehook
    previous = signal.signal(signal.SIGTERM, _raise)
    previous_alarm = signal.signal(signal.SIGALRM, _raise)
    sys.unraisablehook = _unraisable
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        from .runtime import discard_live_temps

        discard_live_temps()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGALRM, previous_alarm)
        sys.unraisablehook = hook
