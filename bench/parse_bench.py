"""Parse throughput: pages/s on one core over the saved record pages, against the original pipeline's
approach (a full ``BeautifulSoup(page, "html.parser")`` tree per page, fields found with the bs4 API).

The baseline walks the bs4 tree into the same raw items as ``ttb_spark.registry.parse`` walks its lxml tree and
builds records with the same record builders, so the two must give identical records (checked on
every page before timing). A third row, bs4 over the lxml tree builder, shows whether bs4 itself
could carry the hot path. Run: ``.venv/bin/python -m bench.parse_bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import bs4
import lxml
from bs4 import BeautifulSoup, Comment, Tag

import ttb_spark
from ttb_spark.registry import parse
from ttb_spark.registry.parse import CertificateItems, Checkbox, DetailItems

PAGES = Path(ttb_spark.__file__).parent / "data" / "pages"
RESULTS = Path(__file__).parent / "results"
TARGET_PAGES_PER_SECOND = 1000
TARGET_RATIO = 5.0


# --- baseline: the same extraction over a BeautifulSoup tree ----------------------------------

def _own_text(tag: Tag) -> str:
    """Text before the tag's first child element (lxml's ``.text``)."""
    parts = []
    for child in tag.children:
        if isinstance(child, Tag):
            break
        if not isinstance(child, Comment):
            parts.append(str(child))
    return "".join(parts)


def _lines_into(tag: Tag, lines: list[str]) -> None:
    for child in tag.children:
        if isinstance(child, Tag):
            if child.name == "br":
                lines.append("")
            else:
                _lines_into(child, lines)
        elif not isinstance(child, Comment):
            lines[-1] += str(child)


def _lines(tag: Tag) -> list[str]:
    lines = [""]
    _lines_into(tag, lines)
    return lines


def _text(tag: Tag) -> str:
    return "\n" if tag.name == "br" else "\n".join(_lines(tag))


def _rows_until_label(label_row: Tag) -> list[str]:
    rows: list[str] = []
    for row in label_row.find_next_siblings("tr"):
        if row.find("strong") is not None:
            break
        rows.append(_text(row))
    return rows


def bs4_detail_items(soup: BeautifulSoup) -> DetailItems:
    fields: dict[str, str] = {}
    qualifications: list[str] = []
    principal: list[str] | None = None
    other: list[str] = []
    for strong in soup.find_all("strong"):
        key = parse.detail_label_key(_own_text(strong))
        if key is None or key in fields:
            continue
        row = strong.find_parent("tr")
        if key == "qualifications":
            following = row.find_next_sibling("tr") if row is not None else None
            if following is not None:
                for table in following.find_all("table"):
                    qualifications.extend(_text(td) for td in table.find_all("td"))
            fields[key] = ""
        elif key in ("principal", "other"):
            rows = _rows_until_label(row) if row is not None else []
            if key == "principal":
                principal = rows
            else:
                other = rows
        elif key != "contact":
            parts = []
            for sibling in strong.next_siblings:
                if isinstance(sibling, Tag):
                    if sibling.name != "a":
                        parts.append(_text(sibling))
                elif not isinstance(sibling, Comment):
                    parts.append(str(sibling))
            fields[key] = "".join(parts)
    return DetailItems(fields, qualifications, principal, other)


def _checkbox(box: Tag) -> Checkbox:
    cell = box.find_parent("td")
    text_cell = cell.find_next_sibling("td") if cell is not None else None
    if text_cell is None:
        return Checkbox("checked" in box.attrs, (box.get("alt") or "",), None)
    fill = text_cell.find("strong")
    lines = tuple(line for line in _lines(text_cell) if line.strip())
    return Checkbox("checked" in box.attrs, lines, _text(fill) if fill is not None else None)


def _label_items(soup: BeautifulSoup) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for p in soup.find_all("p"):
        own = _own_text(p)
        if not own.lstrip().startswith("Image Type"):
            continue
        type_text = own.split(":", 1)[1] if ":" in own else ""
        texts: list[str] = []
        src = None
        for sibling in p.next_siblings:
            if isinstance(sibling, Tag):
                if sibling.name == "p" and _own_text(sibling).lstrip().startswith("Image Type"):
                    break
                if src is None and sibling.name == "img" and "publicViewAttachment" in (sibling.get("src") or ""):
                    src = sibling.get("src")
            elif src is None and not isinstance(sibling, Comment):
                texts.append(str(sibling))
        out.append((type_text + "".join(texts), src))
    return out


def bs4_certificate_items(soup: BeautifulSoup) -> CertificateItems:
    fields: dict[str, list[str]] = {}
    boxes: dict[str, list[Checkbox]] = {}
    embossed: list[str] = []
    for div in soup.find_all("div"):
        classes = div.get("class") or []
        if classes == ["data"]:
            if not embossed and "EMBOSSED" in _own_text(div):
                embossed = _lines(div)[1:] or [""]
            continue
        if classes not in (["label"], ["boldlabel"]):
            continue
        key = parse.certificate_label_key(_own_text(div))
        if key is None or key in fields or key in boxes:
            continue
        lines: list[str] = []
        for value in div.find_next_siblings():
            if value.name == "br":
                continue
            inputs = [el for el in value.find_all("input") if el.get("type") == "checkbox"]
            if inputs:
                boxes[key] = [_checkbox(el) for el in inputs]
                break
            if value.name != "div" or (value.get("class") or []) != ["data"]:
                break
            lines.extend(_lines(value))
        if key not in boxes:
            fields[key] = lines
    return CertificateItems(fields, boxes, [e for e in embossed if e.strip()], _label_items(soup))


def baseline_parse(page: bytes, features: str = "html.parser") -> dict:
    """The record of a saved record page through a full BeautifulSoup tree."""
    soup = BeautifulSoup(parse.decode(page), features)
    heading = soup.find("h1")
    if heading is not None and heading.get_text(strip=True) == "COLA Detail":
        return parse.detail_record(bs4_detail_items(soup))
    return parse.certificate_record(bs4_certificate_items(soup))


# --- measurement ------------------------------------------------------------------------------

def _ours(page: bytes) -> dict:
    result = parse.parse_page(page)
    assert result.record is not None, (result.kind, result.reason)
    return result.record


def _rate(fn: Callable[[bytes], Any], pages: list[bytes], min_seconds: float) -> dict[str, float]:
    """Pages per second over whole passes of all pages: by this process's CPU time (the per-core
    figure; other processes on a shared machine inflate wall time) for the median and the best
    pass (least disturbed by neighbours), and by wall clock over all passes."""
    for page in pages:
        fn(page)
    cpu_passes: list[float] = []
    wall0 = time.perf_counter()
    while not cpu_passes or time.perf_counter() - wall0 < min_seconds:
        cpu0 = time.process_time()
        for page in pages:
            fn(page)
        cpu_passes.append(time.process_time() - cpu0)
    wall = time.perf_counter() - wall0
    done = len(pages) * len(cpu_passes)
    return {"pages": done, "passes": len(cpu_passes), "wall_s": round(wall, 3),
            "pages_per_s_wall": round(done / wall, 1),
            "pages_per_s_cpu": round(len(pages) / statistics.median(cpu_passes), 1),
            "pages_per_s_cpu_best": round(len(pages) / max(min(cpu_passes), 1e-9), 1)}


def _machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model or platform.processor(), "python": platform.python_version(),
            "lxml": lxml.__version__, "beautifulsoup4": bs4.__version__, "loadavg_1m_at_start": os.getloadavg()[0]}


def main(argv: Sequence[str] | None = None) -> dict:
    cli = argparse.ArgumentParser(prog="bench.parse_bench", description=__doc__.splitlines()[0])
    cli.add_argument("--seconds", type=float, default=3.0, help="minimum timing per implementation")
    args = cli.parse_args(argv)

    files = sorted(p for d in PAGES.iterdir() if d.name.isdigit() for p in d.glob("*.html"))
    pages = [f.read_bytes() for f in files]
    mismatched = [str(f.relative_to(PAGES)) for f, page in zip(files, pages) if _ours(page) != baseline_parse(page)]
    if mismatched:
        raise SystemExit(f"parse and baseline disagree on {mismatched}")

    rows = {
        "ttb_spark.registry.parse (lxml)": _rate(_ours, pages, args.seconds),
        'bs4 "html.parser" (baseline)': _rate(baseline_parse, pages, args.seconds),
        'bs4 "lxml" builder': _rate(lambda p: baseline_parse(p, "lxml"), pages, args.seconds),
    }
    ours, base = rows["ttb_spark.registry.parse (lxml)"], rows['bs4 "html.parser" (baseline)']
    ratio_cpu = ours["pages_per_s_cpu"] / base["pages_per_s_cpu"]
    ratio_wall = ours["pages_per_s_wall"] / base["pages_per_s_wall"]
    result = {
        "pages": len(pages),
        "identical_output": True,
        "rows": rows,
        "ratio_vs_baseline_cpu": round(ratio_cpu, 1),
        "ratio_vs_baseline_wall": round(ratio_wall, 1),
        "meets_pages_per_s_target": ours["pages_per_s_cpu"] >= TARGET_PAGES_PER_SECOND,
        "meets_ratio_target": ratio_cpu >= TARGET_RATIO,
        "machine": _machine(),
    }
    print(f"parse benchmark: {len(pages)} saved record pages (detail + certificate), single process, identical output")
    print(f"{'implementation':30} {'pages/s CPU median':>19} {'CPU best':>9} {'wall':>7} {'pages':>6}")
    for name, row in rows.items():
        print(f"{name:30} {row['pages_per_s_cpu']:>19,.0f} {row['pages_per_s_cpu_best']:>9,.0f} "
              f"{row['pages_per_s_wall']:>7,.0f} {row['pages']:>6}")
    print(f"ratio vs baseline: {ratio_cpu:.1f}x (CPU median), {ratio_wall:.1f}x (wall); targets >= {TARGET_PAGES_PER_SECOND} pages/s, "
          f">= {TARGET_RATIO:.0f}x")
    m = result["machine"]
    print(f"machine: {m['nproc']} CPUs, {m['cpu_model']}, load {m['loadavg_1m_at_start']:.2f}; "
          f"Python {m['python']}, lxml {m['lxml']}, bs4 {m['beautifulsoup4']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "parse_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
