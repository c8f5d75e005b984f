"""A fast YAML emitter for plain documents (the event folders' ``event_db.yaml``).

PyYAML's emitter runs in Python even with libyaml (its representer is pure Python): about
0.4 ms per event document, which made it a large share of writing event folders. The
documents we write hold only plain values (str, int, float, bool, None, datetime, lists and
string-keyed mappings), so a direct emitter is enough. Its output is block-style YAML that
``yaml.safe_load`` (YAML 1.1) reads back to the same values; lists of scalars are written in
flow style (``frames: [1, 12]``), which people find easier to read.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["dump_yaml"]

# Strings that may be written without quotes: they start with a letter, ``_`` or ``/``
# (so never a number, date, anchor, tag or indicator) and hold only characters without
# meaning in plain scalars (a colon only inside a word). Words that YAML 1.1 reads as
# booleans or null are quoted.
_PLAIN = re.compile(
    "[A-Za-z_/\u00b5\u00c0-\u024f][A-Za-z0-9_./@+:\u00b5\u00c0-\u024f-]*"
    "(?: [A-Za-z0-9_./@+:()\u00b5\u00c0-\u024f-]+)*\\Z"
)
_RESERVED_WORDS = frozenset(  # compared in lower case
    ["y", "n", "yes", "no", "true", "false", "on", "off", "null", "~"]
)
# Characters that PyYAML refuses unescaped, or reads as line breaks inside quoted scalars.
_NEEDS_ESCAPE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _string(value: str) -> str:
    if (
        _PLAIN.match(value)
        and value.lower() not in _RESERVED_WORDS
        and not value.endswith(":")
        and ": " not in value
    ):
        return value
    # JSON's double-quoted strings are YAML double-quoted scalars; characters YAML would
    # not accept raw are escaped on top
    return _NEEDS_ESCAPE.sub(_escape, json.dumps(value, ensure_ascii=False))


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "." not in text and "e" in text:  # YAML 1.1 floats need a dot: 1e-05 → 1.0e-05
        mantissa, _, exponent = text.partition("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def _scalar(value: Any) -> str | None:
    """The YAML text of a scalar, or None when ``value`` is a collection."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return _float(float(value))
    if isinstance(value, _dt.datetime):
        return value.isoformat(" ")
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, Mapping | list | tuple):
        return None
    raise TypeError(f"cannot write {type(value).__name__} to YAML: {value!r}")


def _flow_list(items: list | tuple) -> str | None:
    """``[a, b, [c, d]]`` when ``items`` holds only scalars and lists of scalars."""
    parts = []
    for item in items:
        text = _scalar(item)
        if text is None:
            if isinstance(item, Mapping):
                return None
            text = _flow_list(item)
            if text is None:
                return None
        parts.append(text)
    return "[" + ", ".join(parts) + "]"


def _emit(value: Any, indent: str, lines: list[str], prefix: str) -> None:
    """Append the lines of ``value``; ``prefix`` is the text before it on its first line
    (``"key:"`` or ``"-"``)."""
    text = _scalar(value)
    if text is not None:
        lines.append(f"{indent}{prefix} {text}" if prefix else f"{indent}{text}")
        return
    if isinstance(value, Mapping):
        if not value:
            lines.append(f"{indent}{prefix} {{}}" if prefix else f"{indent}{{}}")
            return
        if prefix:
            lines.append(f"{indent}{prefix}")
            indent += "  "
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"mapping keys must be strings, got {key!r}")
            _emit(item, indent, lines, f"{_string(key)}:")
        return
    flow = _flow_list(value)
    if flow is not None:
        lines.append(f"{indent}{prefix} {flow}" if prefix else f"{indent}{flow}")
        return
    if prefix:
        lines.append(f"{indent}{prefix}")
    for item in value:
        block = (
            _scalar(item) is None and item and (isinstance(item, Mapping) or not _flow_list(item))
        )
        if block:
            # "- key: value" (or "- - item") with the rest aligned under the first line
            nested: list[str] = []
            _emit(item, "", nested, "")
            lines.append(f"{indent}- {nested[0]}")
            lines.extend(f"{indent}  {line}" for line in nested[1:])
        else:
            _emit(item, indent, lines, "-")


def dump_yaml(document: Mapping[str, Any]) -> str:
    """Write a mapping of plain values as block-style YAML, keys in the given order.

    Parameters
    ----------
    document
        Keys are strings; values are ``None``, bool, int, float, str, ``datetime``/``date``,
        lists/tuples and mappings of those (see :func:`~deep_events_dagster.core.crops.to_plain`).

    Returns
    -------
    str
        YAML text ending in a newline; ``yaml.safe_load`` returns ``document`` from it (tuples
        come back as lists).

    Raises
    ------
    TypeError
        A value of another type, or a mapping key that is not a string.
    """
    lines: list[str] = []
    _emit(dict(document), "", lines, "")
    return "\n".join(lines) + "\n"
