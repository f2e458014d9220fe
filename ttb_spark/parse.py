"""Parsing of registry pages (placeholder until the parse module lands)."""

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="saved page files")


def run_command(args: argparse.Namespace) -> int:
    raise NotImplementedError("parse")
