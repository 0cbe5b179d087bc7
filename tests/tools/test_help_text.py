"""Every option of every sub-command says what it does and what it defaults to (issue 16.13)."""

from __future__ import annotations

import argparse

from tools.cli import DefaultsShownFormatter, build_parser


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            visible = {c.dest for c in action._choices_actions}  # hidden aliases have no help entry
            for name, sub in action.choices.items():
                if name in visible:
                    yield from _parsers(sub, (*path, name))


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if action.option_strings and action.help != argparse.SUPPRESS and action.dest != "help":
            yield action


def test_every_option_has_help_text_and_shows_its_default():
    missing_help, missing_default = [], []
    for path, parser in _parsers(build_parser()):
        for action in _options(parser):
            name = f"{' '.join(path)} {action.option_strings[0]}"
            if not action.help:
                missing_help.append(name)
            default = action.default
            if default in (None, False, argparse.SUPPRESS) or isinstance(action, argparse._StoreTrueAction):
                continue
            helptext = DefaultsShownFormatter("x")._get_help_string(action) % vars(action)
            if "default" not in helptext.lower():
                missing_default.append(f"{name} (default {default!r})")
    assert not missing_help, f"options without help text: {missing_help}"
    assert not missing_default, f"defaults not shown in --help: {missing_default}"


def test_a_default_already_in_the_text_is_not_repeated():
    serve = next(parser for path, parser in _parsers(build_parser()) if path == ("serve",))
    text = " ".join(serve.format_help().split())
    assert text.count("default: onnx") == 1  # --backend says it itself
    assert "(default: 0.9)" in text  # --alert-confidence: added from the config field
    assert "(default: None)" not in text and "(default: False)" not in text
