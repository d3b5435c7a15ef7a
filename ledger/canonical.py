"""The ledger's canonical form: the exact bytes every seal hash is computed over.

The rules are the project's own, fixed here and in the README, so that an auditor can recompute
any hash without our code and no library upgrade can change a sealed event's bytes:

- The canonical form of a JSON value is its **RFC 8785 (JCS)** serialisation: object keys sorted,
  no insignificant whitespace, UTF-8, strings escaped minimally (``\\"``, ``\\\\``, ``\\b \\f \\n
  \\r \\t``, other controls as ``\\u00xx``), numbers as ECMAScript writes them (``1``, not ``1.0``;
  ``0.000001``, not ``1e-6``).
- The values themselves are fixed by the contract (``ledger.contract``) before they get here:
  instants are strings ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, always six fraction digits), numbers are
  finite and bounded, strings carry no lone surrogates.

orjson writes exactly the JCS bytes for most of our values and is ~20x faster than a pure-Python
JCS encoder, so it is used whenever every number in the value is one on which the two agree
(integers below 2^53 and non-integral floats in [1e-5, 1e15]) and every object key is ASCII;
anything else goes through the
``rfc8785`` reference implementation. A test compares the two on generated values.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import rfc8785

_MAX_SAFE_INT = 2**53
_FAST_FLOAT_MIN = 1e-5
_FAST_FLOAT_MAX = 1e15


def _orjson_agrees(value: Any) -> bool:
    """Whether orjson writes ``value`` exactly as RFC 8785 does (iterative: this is on the hot path)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is dict:
            # orjson sorts keys by code point, RFC 8785 by UTF-16 unit: they differ only beyond
            # ASCII (U+E000… against a surrogate pair), and every key of the contract is ASCII.
            if not all(map(str.isascii, item)):
                return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float:
            if item.is_integer() or not _FAST_FLOAT_MIN <= abs(item) <= _FAST_FLOAT_MAX:
                return False
        elif kind is int:
            if not -_MAX_SAFE_INT < item < _MAX_SAFE_INT:
                return False
        else:
            return False
    return True


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes of ``value`` (dicts, lists, str, int, float, bool, None only)."""
    if _orjson_agrees(value):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return rfc8785.dumps(value)


def orjson_canonical(value: Any) -> bytes:
    """RFC 8785 bytes by orjson, for values on which the two agree (``canonical_encoder``): bytes
    that orjson parses and writes back unchanged."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def orjson_writes_canonically(number: float) -> bool:
    """Whether orjson writes this JSON number exactly as RFC 8785 does."""
    if type(number) is int:
        return -_MAX_SAFE_INT < number < _MAX_SAFE_INT
    return not number.is_integer() and _FAST_FLOAT_MIN <= abs(number) <= _FAST_FLOAT_MAX


def canonical_encoder(value: Any) -> Callable[[Any], bytes]:
    """An RFC 8785 encoder for ``value`` and for values made from it by adding or replacing
    strings, dicts of strings and nulls only (same numbers): the fast one when orjson agrees on
    ``value``'s numbers. Checking once serves several encodings of one event."""
    return orjson_canonical if _orjson_agrees(value) else rfc8785.dumps


def format_instant(instant: datetime) -> str:
    """An aware datetime as the canonical instant string: UTC, microseconds, ``Z``."""
    utc = instant.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"  # strftime is ~10x slower
