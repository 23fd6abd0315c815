"""Reading grants and dataset policies from untrusted data: our errors, one readable line.

Pydantic reports every problem of a model at once, with its own exception type and the
offending input. :func:`parse_model` turns that into :class:`InvalidRequestError` naming the
first field and what is wrong with it, without echoing the value (it may be large, or data).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from policies.errors import InvalidRequestError

_M = TypeVar("_M", bound=BaseModel)

#: Largest grant or dataset-policy file read (a grant is a few kilobytes).
MAX_FILE_BYTES = 1_000_000


def describe(exc: ValidationError, what: str) -> str:
    """One line: the first problem of ``exc`` and how many more there are."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return f"invalid {what}"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
    message = str(first.get("msg", "invalid")).replace("\n", " ")
    message = message.removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"invalid {what}: {where}: {message}{more}"


def parse_model(cls: type[_M], data: Any, what: str) -> _M:
    """``cls`` validated from a mapping, a JSON string or bytes; raise InvalidRequestError."""
    try:
        if isinstance(data, str | bytes | bytearray):
            return cls.model_validate_json(data)
        return cls.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError(describe(exc, what)) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidRequestError(f"invalid {what}: {type(exc).__name__}") from None


#: Deepest nesting accepted in a grant or policy file (a grant nests four levels).
MAX_DEPTH = 32
#: Most values accepted in one file, counting each use of a YAML alias again.
MAX_VALUES = 100_000


def _no_nonfinite(document: Any) -> Any:
    """Refuse NaN and infinities anywhere in parsed data (YAML's .inf, JSON's Infinity),
    nesting deeper than :data:`MAX_DEPTH` and more than :data:`MAX_VALUES` values (YAML
    aliases can expand a small file enormously); walked without recursion."""
    stack = [(document, 0)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise InvalidRequestError(f"the document holds more than {MAX_VALUES} values")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequestError("numbers must be finite; NaN and infinity are refused")
        if isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise InvalidRequestError(f"the document is nested deeper than {MAX_DEPTH} levels")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return document


def load_document(path: Path, what: str) -> Any:
    """The YAML or JSON document in ``path`` (YAML is a superset of JSON)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidRequestError(f"{what} file {path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError(f"{what} file {path} is not UTF-8 text") from None
    try:
        document = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        line = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            line = f" at line {mark.line + 1}"
        elif isinstance(exc, json.JSONDecodeError):
            line = f" at line {exc.lineno}"
        raise InvalidRequestError(f"{what} file {path} is not valid YAML or JSON{line}") from None
    if not isinstance(document, dict):
        raise InvalidRequestError(f"{what} file {path} must hold one mapping (key: value)")
    return _no_nonfinite(document)
