"""Generated documentation: the data dictionary (``docs/tables.md``) from the TableSpec declarations,
and the settings reference (``docs/settings.md``) from the settings model.

The tables are those of ``ttb_spark.tables``, the lakehouse's one list. ``python -m ttb_spark tables``
and ``python -m ttb_spark settings`` print them (``make docs`` writes both); tests/test_docs.py keeps the
committed copies in sync.
"""

from __future__ import annotations

import ast
import inspect
import io
import tokenize
import tomllib
import types
from datetime import date, datetime
from importlib import resources
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from ttb_spark import lakehouse, settings, tables

HEADER = (
    "# Data dictionary\n\n"
    "Generated from the table declarations (`lakehouse.TableSpec`) by `python -m ttb_spark tables`; "
    "do not edit by hand. Paths are relative to the lakehouse root (`TTB_LAKEHOUSE_ROOT`). "
    "The same table and column comments are set on the Delta tables.\n"
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def table_markdown(spec: lakehouse.TableSpec) -> str:
    lines = [
        f"## `{spec.name}`",
        "",
        _cell(spec.comment),
        "",
        f"- path: `<root>/{spec.name.replace('.', '/')}`",
        f"- key: {', '.join(f'`{k}`' for k in spec.keys)}",
        f"- partitioned by: {', '.join(f'`{p}`' for p in spec.partition_by) or '—'}",
        *([f"- clustered by: {', '.join(f'`{c}`' for c in spec.cluster_by)}"] if spec.cluster_by else []),
        "",
        "| column | type | comment |",
        "| --- | --- | --- |",
    ]
    for f in spec.schema.fields:
        lines.append(f"| `{f.name}` | `{_cell(f.dataType.simpleString())}` | {_cell(f.metadata.get('comment', ''))} |")
    return "\n".join(lines) + "\n"


def data_dictionary() -> str:
    """Markdown for every table of the package: comment, path, key, partitioning and columns."""
    specs = sorted(tables.ALL, key=lambda s: s.name)
    index = "\n".join(f"- [`{s.name}`](#{s.name.replace('.', '')})" for s in specs)
    return HEADER + "\n" + index + "\n\n" + "\n".join(table_markdown(s) for s in specs)


# --- docs/settings.md: the settings reference ----------------------------------------------------

SETTINGS_HEADER = (
    "# Settings\n\n"
    "Generated from the settings model (`ttb_spark.settings`) by `python -m ttb_spark settings`; "
    "do not edit by hand. One typed object, `Settings`, with one section per table below. Precedence, "
    "highest first: command-line flags > environment variables > the profile `conf/<TTB_ENVIRONMENT>.toml` "
    "(shipped in the package as `ttb_spark/conf`; `TTB_CONF_DIR` names another folder of profiles) > the "
    "defaults. An invalid value stops the job before any Spark session or request with one line naming its "
    "variable, exit status 2. Credentials are never settings. How the settings are used: "
    "[operations](operations.md#settings).\n\n"
    "Columns: the variable that sets the field, its type (with its bounds), the model's default, and the value "
    "each shipped profile sets (blank: the profile leaves the default). Lists are given as comma lists in a "
    "variable and as TOML arrays in a profile. Notes are the comments beside the field in "
    "`ttb_spark/settings.py`.\n"
)


def _type_name(annotation: Any) -> str:
    """A field's type as a reader writes it: ``int``, ``date | none``, ``one of a, b``, ``list of str``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join("none" if a is type(None) else _type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(metadata: list[Any]) -> str:
    symbols = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    found = [f"{symbols[k]} {getattr(m, k)}" for m in metadata for k in symbols if hasattr(m, k) and getattr(m, k) is not None]
    return f" ({', '.join(found)})" if found else ""


def _value(value: Any) -> str:
    """A value as it is written in a variable: ``true``, ``2024-01-02``, ``000,001``; ``unset`` for none."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        text = ",".join(_value(v).strip("`") for v in value)
    elif isinstance(value, (date, datetime)):
        text = value.isoformat()
    else:
        text = str(value)
    return f"`{_cell(text)}`" if text else '`""`'


def _default(field: Any) -> Any:
    return field.default_factory() if field.default_factory is not None else field.default


def _field_comments(module: Any) -> dict[tuple[str, str], str]:
    """(class, field) -> the comment lines just above the field and the comment on its own lines.

    The notes of the settings model live in comments, which Python drops; they are read from the source
    (empty when the source is not available, e.g. a stripped install)."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.splitlines()
    found: dict[tuple[str, str], str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            above: list[str] = []
            line = stmt.lineno - 1
            while line >= 1 and lines[line - 1].strip().startswith("#"):
                above.insert(0, comments.get(line, ""))
                line -= 1
            inline = [comments[n] for n in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1) if n in comments]
            text = " ".join(part for part in above + inline if part)
            if text:
                found[(node.name, stmt.target.id)] = text
    return found


def _profiles() -> dict[str, tuple[str, dict[str, dict[str, Any]]]]:
    """Each shipped profile: its opening comment, and its tables as the loader reads them (a profile
    names its own environment)."""
    folder = resources.files("ttb_spark") / "conf"
    profiles: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {}
    for env in settings.ENVIRONMENTS:
        path = folder / f"{env}.toml"
        text = path.read_text() if path.is_file() else ""
        profile = tomllib.loads(text)
        profile.setdefault("pipeline", {}).setdefault("environment", env)
        opening = []
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            opening.append(line.lstrip("#").strip())
        profiles[env] = (" ".join(opening), profile)
    return profiles


def _doc(cls: type) -> str:
    return _cell(inspect.cleandoc(cls.__doc__ or "").replace("``", "`"))


def settings_markdown() -> str:
    """Markdown for every settings section: each field's variable, type, default, profile values and notes."""
    notes = _field_comments(settings)
    profiles = _profiles()
    envs = settings.ENVIRONMENTS
    parts = [SETTINGS_HEADER]
    parts += ["Sections:", ""] + [f"- [`{name}`](#{name}): {_doc(section)}" for name, section in settings.SECTIONS.items()]
    parts += ["", "Profiles (`conf/<name>.toml`):", ""] + [f"- `{env}`: {_cell(profiles[env][0])}" for env in envs]
    parts.append("")
    for name, section in settings.SECTIONS.items():
        parts += [
            f"## {name}",
            "",
            f"`{section.__name__}`: {_doc(section)}",
            "",
            "| field | variable | type | default | " + " | ".join(envs) + " | notes |",
            "| --- | --- | --- | --- | " + " | ".join("---" for _ in envs) + " | --- |",
        ]
        for field_name, field in section.model_fields.items():
            given = [profiles[env][1].get(name, {}) for env in envs]
            note = field.description or notes.get((section.__name__, field_name), "")
            parts.append(
                f"| `{field_name}` | `{settings._env_var(section, field_name)}` "
                f"| {_cell(_type_name(field.annotation) + _bounds(field.metadata))} | {_value(_default(field))} | "
                + " | ".join(_value(values[field_name]) if field_name in values else "" for values in given)
                + f" | {_cell(note)} |"
            )
        parts.append("")
    return "\n".join(parts)
