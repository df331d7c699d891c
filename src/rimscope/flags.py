"""One vocabulary on the command line, declared once: `-i/--input` for what a command reads,
`-o/--output` for what it writes, `--set/-O KEY=VALUE` for options (nnU-Net, TotalSegmentator and
HD-BET use -i/-o the same way).

Old spellings (`--out`, `--cohort`, `--option`, `-o KEY=VALUE` where -o meant an option, the
positional cohort of `validate`) still work for one release: `modernise` rewrites them before
parsing and prints a one-line deprecation warning for each.
"""
from __future__ import annotations

import sys

RENAMED = {"--out": "--output", "--cohort": "--input", "--option": "--set"}
SET_COMMANDS = {"train", "pretrain", "evaluate", "benchmark"}  # where `-o KEY=VALUE` meant --option


def add_input(p, help: str, required: bool = False, dest: str = "input", **kw) -> None:
    p.add_argument("-i", "--input", dest=dest, required=required, help=help, **kw)


def add_output(p, help: str, required: bool = False, dest: str = "output", **kw) -> None:
    p.add_argument("-o", "--output", dest=dest, required=required, help=help, **kw)


def add_set(p, help: str = "option KEY=VALUE (repeatable)") -> None:
    p.add_argument("--set", "-O", dest="option", action="append", default=[], metavar="KEY=VALUE", help=help)


def deprecated(old: str, new: str) -> None:
    print(f"rimscope: warning: {old} is deprecated, use {new} (the old spelling goes in the next release)",
          file=sys.stderr)


def modernise(command: str | None, argv: list[str]) -> list[str]:
    """argv with the old spellings of `command`'s flags replaced by the current ones."""
    out, warned = [], set()
    for i, tok in enumerate(argv):
        flag, eq, value = tok.partition("=")
        new = RENAMED.get(flag) if tok.startswith("--") else None
        if new is None and tok == "-o" and command in SET_COMMANDS and "=" in (argv[i + 1] if i + 1 < len(argv) else ""):
            flag, new = "-o KEY=VALUE", "--set KEY=VALUE"
            tok = "--set"
        elif new is not None:
            tok = new + (eq + value if eq else "")
        if new is not None and flag not in warned:
            warned.add(flag)
            deprecated(flag, new)
        out.append(tok)
    return out
