"""The command line of every script: settings dataclasses as --flags, and user errors as one line.

A script's settings are one `@dataclass` whose fields are written with `setting(default, help)`;
`add_dataclass_args` turns each field into a `--field-name` flag (defaults None, so a preset can fill what the
user did not give) and `dataclass_from_args` builds the dataclass back from preset + flags; `parse_with_presets`
does both for a script whose named presets give settings and model size together. `OneLineParser` is
argparse with one-line usage errors, and `run_main` turns the errors a user can fix (ValueError,
FileNotFoundError, OSError) into one line `prog: error: ...` and exit code 1 instead of a traceback.
Used by train.py, train_seq2seq.py, finetune.py, `python -m minilm.generate` and data/*/prepare.py.

Left out on purpose: config files (flags and named presets only; nanoGPT's exec'd configurator was removed in
nanochat), environment-variable settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from dataclasses import field, fields
from typing import Callable

USER_ERRORS = (ValueError, FileNotFoundError, OSError)  # what a user can fix: bad flags, files, devices


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (the usage block stays in --help)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run_main(prog: str, work: Callable[[], int], debug: bool = False, errors: tuple = ()) -> int:
    """`work()`'s exit code; a user error (USER_ERRORS + `errors`) becomes one line on stderr and exit code 1.

    The line is `prog: error: message` (`error: message` when prog is empty); `debug` re-raises instead.
    """
    try:
        return work()
    except (*USER_ERRORS, *errors) as e:
        if debug:
            raise
        print(f"{prog}: error: {e}" if prog else f"error: {e}", file=sys.stderr)
        return 1


def check_flags(settings, positive=(), non_negative=(), rules=()) -> None:
    """Raise ValueError for the first broken rule, naming its flag: the fields in `positive` must be > 0, those in
    `non_negative` >= 0, then each (ok, message) of `rules` must hold."""
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    checks = [*((getattr(settings, n) > 0, f"{flag(n)} must be a positive integer, got {getattr(settings, n)}")
                for n in positive),
              *((not getattr(settings, n) < 0, f"{flag(n)} must be >= 0, got {getattr(settings, n)}")
                for n in non_negative),
              *rules]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def setting(default, help: str, **kw):
    """A settings-dataclass field whose help text (and choices, if given) become its --flag's help."""
    return field(default=default, metadata={"help": help, **kw})


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _parse_optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "null", "") else int(text)


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, group_title: str | None = None) -> None:
    """Add one `--field-name` option per dataclass field; defaults are None so presets can fill the gaps."""
    target = parser.add_argument_group(group_title) if group_title else parser
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        hint = hints[f.name]
        optional = [a for a in typing.get_args(hint) if a is not type(None)]  # `int | None` -> [int]
        is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        base = optional[0] if is_union and optional else hint
        if base is bool:
            kind, metavar = _parse_bool, "{true,false}"
        elif base is int:
            kind, metavar = (_parse_optional_int if is_union else int), "INT"
        elif base is float:
            kind, metavar = float, "FLOAT"
        else:
            kind, metavar = str, "STR"
        default = f.default if f.default is not dataclasses.MISSING else None
        text = f.metadata.get("help", f.name.replace("_", " "))
        choices = f.metadata.get("choices")
        extra = {"nargs": "?", "const": True} if base is bool else {}  # `--resume` alone means true
        target.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=None,
                            metavar=None if choices else metavar, choices=choices,
                            help=f"{text} (default: {default})".replace("%", "%%"), **extra)


def dataclass_from_args(cls: type, args: argparse.Namespace, base: dict | None = None):
    """Build `cls` from preset values `base` overridden by every flag the user actually gave."""
    values = dict(base or {})
    for f in fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    return cls(**values)


def parse_with_presets(parser: argparse.ArgumentParser, argv, presets: dict[str, tuple[dict, dict]],
                       default_preset: str, settings_cls: type, config_cls: type, settings_title: str,
                       model_title: str) -> tuple[argparse.Namespace, object, dict]:
    """(args, settings, model overrides) for `--preset NAME` plus one flag per field of both dataclasses.

    A preset is (settings values, model fields); every flag the user gave overrides it. The model overrides stay a
    dict: the script adds what comes from the data (vocabulary size, ...) before it builds `config_cls`."""
    parser.add_argument("--preset", default=default_preset, choices=sorted(presets),
                        help=f"named settings + model size (default: {default_preset}); flags override it")
    add_dataclass_args(parser, settings_cls, group_title=settings_title)
    add_dataclass_args(parser, config_cls, group_title=model_title)
    args = parser.parse_args(argv)
    base_settings, base_model = presets[args.preset]
    model_overrides = dict(base_model)
    for f in fields(config_cls):
        if getattr(args, f.name, None) is not None:
            model_overrides[f.name] = getattr(args, f.name)
    return args, dataclass_from_args(settings_cls, args, base_settings), model_overrides
