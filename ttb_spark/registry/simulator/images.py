"""The label images the simulator serves (SITE.md: ``publicViewAttachment.do?filename=<name>&filetype=l``).

A record's labels are the ones its certificate page shows: per label its ``Actual Dimensions`` and the image's
file name (free text, as the saved pages have them). Each is rendered with Pillow: a label of the record's
brand and fanciful name, its aspect ratio the actual dimensions', in the format its file name says (JPEG,
PNG or GIF; anything else JPEG, as a scan would be). The artwork depends on the brand, fanciful name and file
name only, so the same label filed again under another COLA is the same image, as refiled labels are.
Images are there 48 hours after approval (TTB's note) and never for records approved before 1999.
"""

from __future__ import annotations

import html
import io
import random
import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from ttb_spark.registry.client import IMAGE_PATH as ROUTE
from ttb_spark.registry.simulator.pages import _templates

if TYPE_CHECKING:
    from ttb_spark.registry.simulator.registry import Record

LABEL = re.compile(
    rb"Actual Dimensions:\s*([\d.]+)\s*inches W X\s*([\d.]+)\s*inches H.*?"
    rb"<img src=\"[^\"]*" + re.escape(ROUTE.encode()) + rb"\?filename=([^\"&]*)&(?:amp;)?filetype=l\"",
    re.S,
)
DELAY = timedelta(days=2)  # "label images appear about 48 hours after approval"
FIRST_YEAR = 1999  # records approved before it have data but no images
PIXELS_PER_INCH = 120  # a 3.7 x 4.5 inch label: 444 x 540 pixels
FORMATS = {".jpg": ("JPEG", "image/jpeg"), ".jpeg": ("JPEG", "image/jpeg"), ".png": ("PNG", "image/png"),
           ".gif": ("GIF", "image/gif")}  # fmt: skip


@dataclass(frozen=True)
class Label:
    """One label of a certificate page: its image's file name and actual size."""

    file_name: str
    width_inches: float
    height_inches: float

    @property
    def content_type(self) -> str:
        return _format(self.file_name)[1]


def labels(certificate: bytes) -> tuple[Label, ...]:
    """The labels a rendered certificate page shows, in page order."""
    return tuple(
        Label(html.unescape(name.decode("iso-8859-1")), float(width), float(height)) for width, height, name in LABEL.findall(certificate)
    )


def available(approval: date, today: date | None) -> bool:
    """Whether a record approved on ``approval`` has its images served on ``today`` (None: no clock, every day)."""
    return approval.year >= FIRST_YEAR and (today is None or today >= approval + DELAY)


def _format(file_name: str) -> tuple[str, str]:
    return FORMATS.get(PurePosixPath(file_name).suffix.lower(), FORMATS[".jpg"])


def image_of(record: Record, label: Label) -> bytes:
    """The image the registry serves for ``label`` of ``record``'s certificate."""
    return render(label, record.brand, _templates()[record.template].fanciful_name)


@lru_cache(maxsize=256)
def render(label: Label, brand: str, fanciful_name: str | None) -> bytes:
    """The label's image: deterministic per (label, brand, fanciful name), so a refetch gets the same bytes."""
    from PIL import Image, ImageDraw, ImageFont

    kind, _ = _format(label.file_name)
    size = (max(1, round(label.width_inches * PIXELS_PER_INCH)), max(1, round(label.height_inches * PIXELS_PER_INCH)))
    rng = random.Random(f"{brand}|{fanciful_name}|{label.file_name}")
    paper = tuple(rng.randrange(150, 256) for _ in range(3))
    ink = tuple(rng.randrange(0, 90) for _ in range(3))
    grain = Image.effect_noise(size, rng.uniform(20, 60)).convert("RGB")  # printed paper's texture: JPEGs of realistic size
    image = Image.blend(Image.new("RGB", size, paper), grain, 0.25)
    draw = ImageDraw.Draw(image)
    margin = max(2, min(size) // 20)
    draw.rectangle((margin, margin, size[0] - margin - 1, size[1] - margin - 1), outline=ink, width=max(1, margin // 3))
    font = ImageFont.load_default(size=max(8, min(size) // 12))
    y = size[1] // 3
    for line in (brand, fanciful_name or "", label.file_name):
        if line:
            draw.text((size[0] // 2, y), line, fill=ink, font=font, anchor="mm")
            y += max(10, min(size) // 9)
    out = io.BytesIO()
    image.save(out, kind, **({"quality": 85} if kind == "JPEG" else {}))
    return out.getvalue()
