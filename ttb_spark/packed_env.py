"""Will a packed Python environment start on the cluster? ``python -m ttb_spark.packed_env DIR [--glibc X.Y]``.

`make package` runs this on the environment before packing it (it needs the ``dev`` extra's pyelftools).
Two things break a packed environment on a cluster and nothing else shows them before a run fails there:
- **its interpreter**: ``venv-pack`` keeps ``bin/python`` as a link to the interpreter the venv was made
  from. A link into pyenv, conda, Homebrew or a home folder names a path only the build machine has; a
  link to the OS's packaged interpreter (``/usr/bin/python3.11``) resolves on a node of that OS with
  that package (Amazon Linux 2023: ``dnf install python3.11``);
- **its native libraries**: pip picks wheels for the build machine's glibc; one that needs a newer glibc
  than the cluster's OS has (Amazon Linux 2023: 2.34) fails to load there.
Exit 1 with one line per problem, naming the file and the fix; exit 0 and a summary line otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Iterator, Sequence

# The packaged interpreters an OS installs: what a link may name outside the environment.
SYSTEM_INTERPRETER_DIR = Path("/usr/bin")
# glibc of Amazon Linux 2023 (AWS: "Core toolchain packages glibc, gcc, binutils"), the OS of EMR 7+ nodes.
DEFAULT_GLIBC = "2.34"
ELF_MAGIC = b"\x7fELF"


def interpreter_problems(env: Path) -> list[str]:
    """Why ``env/bin/python`` would not start on another machine (empty when it would)."""
    python = env / "bin" / "python"
    target = Path(os.path.realpath(python))
    if not python.is_symlink() and python.is_file():
        return [f"{python} is a copy of an interpreter (venv --copies): it still looks for its standard library "
                f"where it was built; make the environment with the cluster OS's own Python (PACKAGE_PYTHON=/usr/bin/python3.11)"]
    if target.is_relative_to(env.resolve()):
        return []
    if target.parent == SYSTEM_INTERPRETER_DIR:
        return []
    return [f"{python} resolves to {target}, which only this machine has: on the cluster the environment "
            f"would not start. Build the package on the cluster's OS with its packaged Python "
            f"(Amazon Linux 2023: dnf install python3.11; make package PACKAGE_PYTHON=/usr/bin/python3.11), "
            f"see docs/deployment.md"]


def glibc_needed(path: Path) -> tuple[int, ...] | None:
    """The newest ``GLIBC_x.y`` symbol version an ELF file needs (None for a file that is not ELF or needs none)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    with path.open("rb") as stream:
        if stream.read(4) != ELF_MAGIC:
            return None
        stream.seek(0)
        versions = [
            tuple(int(part) for part in aux.name.removeprefix("GLIBC_").split("."))
            for section in ELFFile(stream).iter_sections() if isinstance(section, GNUVerNeedSection)
            for _, auxiliaries in section.iter_versions() for aux in auxiliaries
            if aux.name.startswith("GLIBC_") and aux.name.removeprefix("GLIBC_").replace(".", "").isdigit()
        ]
    return max(versions, default=None)


def _native_files(env: Path) -> Iterator[Path]:
    for path in sorted(env.rglob("*.so*")):
        if path.is_file() and not path.is_symlink():
            yield path


def library_problems(env: Path, glibc: str) -> tuple[list[str], int]:
    """Native libraries in ``env`` that need a newer glibc than ``glibc``, and how many were checked."""
    limit = tuple(int(part) for part in glibc.split("."))
    problems, checked = [], 0
    for path in _native_files(env):
        needed = glibc_needed(path)
        if needed is None:
            continue
        checked += 1
        if needed > limit:
            problems.append(f"{path.relative_to(env)} needs glibc {'.'.join(map(str, needed))}, newer than the "
                            f"cluster's {glibc}: build the package on the cluster's OS (docs/deployment.md)")
    return problems, checked


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ttb_spark.packed_env", description=__doc__.splitlines()[0])
    parser.add_argument("env", type=Path, help="the environment folder, before venv-pack packs it")
    parser.add_argument("--glibc", default=DEFAULT_GLIBC, help=f"the cluster OS's glibc (default {DEFAULT_GLIBC})")
    args = parser.parse_args(argv)
    if not (args.env / "bin" / "python").exists() and not (args.env / "bin" / "python").is_symlink():
        parser.error(f"{args.env}: no bin/python, not a Python environment")
    problems = interpreter_problems(args.env)
    libraries, checked = library_problems(args.env, args.glibc)
    for problem in problems + libraries:
        sys.stderr.write(f"packed environment: {problem}\n")
    if problems or libraries:
        return 1
    sys.stdout.write(f"packed environment: interpreter {os.path.realpath(args.env / 'bin' / 'python')}, "
                     f"{checked} native libraries need glibc <= {args.glibc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
