"""Loopback registry simulator (placeholder until the scrape work lands)."""

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8731)


def run_command(args: argparse.Namespace) -> int:
    raise NotImplementedError("simulate-registry")
