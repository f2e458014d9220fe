"""``python -m ttb_spark simulate-registry``: a simulator on a port of its own until Ctrl-C, or a receipt
day's public TTB IDs (``--list-public``)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date

from ttb_spark.registry.listing import CODE_ORDERS
from ttb_spark.registry.simulator.registry import PROFILES, UNLISTED_CODES, SyntheticRegistry
from ttb_spark.registry.simulator.server import SEARCH_CAP, Faults, RegistrySimulator


def _fault_option(value: str) -> tuple[str, float]:
    name, _, probability = value.partition("=")
    name = name.strip().replace("-", "_")
    if name not in Faults.KINDS:
        raise argparse.ArgumentTypeError(f"unknown fault {name!r}; one of {', '.join(Faults.KINDS)}")
    try:
        p = float(probability or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"fault probability must be a number, got {probability!r}") from None
    if not 0 <= p <= 1:
        raise argparse.ArgumentTypeError(f"fault probability must be within 0..1, got {p}")
    return name, p


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8731, help="port (0 picks a free one; default 8731)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic record set and of fault draws")
    parser.add_argument("--scale", type=float, default=1.0, help="e-filed (001) volume multiplier (1.0: 250-450 records a weekday; 600-1,300 with --profile registry)")
    parser.add_argument("--profile", choices=PROFILES, default="templates",
                        help="templates: the 18 saved pages' permits and codes (what the tests pin); registry: a real working day's volume "
                             "(received, and completed: ~600-1,350 a weekday at scale 1.0, none at weekends but status changes) and cardinalities (7,200 permits with Zipf-distributed filings, tens of thousands of brands, every class/type and origin)")
    parser.add_argument(
        "--fault", type=_fault_option, action="append", default=[], metavar="KIND[=P]",
        help=f"inject a fault with probability P per request (default 1); KIND one of {', '.join(Faults.KINDS)}",
    )
    parser.add_argument("--fault-first-hits", type=int, metavar="N", help="faults strike only the first N requests of each page")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--retry-after", type=int, default=1, help="seconds announced with a 429")
    parser.add_argument("--today", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="the simulated day: records are public from approval to withdrawal, pages show the status as of it (default: no clock, all public)")
    parser.add_argument("--search-cap", type=int, default=SEARCH_CAP, help=f"most rows a search returns (default {SEARCH_CAP})")
    parser.add_argument("--code-order", choices=CODE_ORDERS, default="string",
                        help="how the search compares class/type codes in a range: as strings, or numeric (zero-padded numbers: 80 before 100)")
    parser.add_argument("--unlisted-codes", type=float, default=0.0, metavar="SHARE",
                        help=f"share of records the search files under codes the seed lacks ({', '.join(UNLISTED_CODES)}; default 0)")
    parser.add_argument("--list-public", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="print the TTB IDs received that day and public as of --today, and exit")


def run_command(args: argparse.Namespace) -> int:
    if args.scale <= 0:
        sys.stderr.write("ttb_spark simulate-registry: error: --scale must be > 0\n")
        return 2
    if args.search_cap < 1:
        sys.stderr.write("ttb_spark simulate-registry: error: --search-cap must be >= 1\n")
        return 2
    if not 0 <= args.unlisted_codes <= 1:
        sys.stderr.write("ttb_spark simulate-registry: error: --unlisted-codes must be within 0..1\n")
        return 2
    if args.list_public:
        registry = SyntheticRegistry(args.seed, args.scale, args.profile)
        for method in ("000", "001", "002", "003"):
            for ttb_id in registry.public_ids(args.list_public, method, args.today):
                sys.stdout.write(ttb_id + "\n")
        return 0
    faults = Faults(
        latency=args.latency, first_hits=args.fault_first_hits, retry_after=args.retry_after, **dict(args.fault)
    )
    sim = RegistrySimulator(seed=args.seed, scale=args.scale, faults=faults, host=args.host, port=args.port,
                            today=args.today, search_cap=args.search_cap, profile=args.profile, code_order=args.code_order,
                            unlisted_codes=args.unlisted_codes)
    clock = f", today {args.today}" if args.today else ""
    sys.stdout.write(f"registry simulator at {sim.base_url} (seed {args.seed}, scale {args.scale}{clock}); Ctrl-C stops\n")
    sys.stdout.flush()
    started = time.monotonic()
    try:
        sim._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim._server.server_close()
        hits = sim.hits
        elapsed = max(time.monotonic() - started, 1e-9)
        sys.stdout.write(f"served {len(hits)} requests in {elapsed:.1f}s ({len(hits) / elapsed:.2f}/s average)\n")
    return 0
