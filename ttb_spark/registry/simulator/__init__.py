"""A loopback stand-in for the TTB Public COLA Registry, for tests, benchmarks and the demo.

It speaks the registry's URL scheme (``/colasonline/viewColaDetails.do?action=
publicDisplaySearchAdvanced|publicDisplaySearchBasic|publicFormDisplay&ttbid=<id>``), hands out
a ``JSESSIONID`` cookie and answers HTTP 200 with the real error page for every TTB ID that is not
public, like the registry. Public records are a deterministic (seeded) synthetic set: per receipt
day, hundreds for e-filing (``001``, times ``scale``), none to a few for the paper codes, with
short gaps of non-public sequence numbers and, on e-filed days, at least one run longer than the
default consecutive-miss threshold. Pages are the 18 real saved pages used as templates, with the TTB ID,
serial number, brand name and dates swapped (application date = receipt date <= approval/issue
date).

One concern a module: :mod:`.registry` (the population model: the seeded record set, each record's
timeline, the ``registry`` profile's permits, brands and codes), :mod:`.pages` (the pages, rendered from
the real saved ones), :mod:`.server` (the HTTP server: routes, sessions, the search, faults and the
record of requests) and :mod:`.command` (``python -m ttb_spark simulate-registry``). The names other
code uses are imported here.
"""

from ttb_spark.registry.simulator.command import configure_parser, run_command
from ttb_spark.registry.simulator.pages import error_page, render_export, render_results, search_page
from ttb_spark.registry.simulator.registry import MAX_LAG, PROFILES, Record, State, SyntheticRegistry
from ttb_spark.registry.simulator.server import SEARCH_CAP, Faults, Hit, RegistrySimulator, running, serving

__all__ = [
    "MAX_LAG", "PROFILES", "SEARCH_CAP", "Faults", "Hit", "Record", "RegistrySimulator", "State", "SyntheticRegistry",
    "configure_parser", "error_page", "render_export", "render_results", "run_command", "running", "search_page", "serving",
]  # fmt: skip
