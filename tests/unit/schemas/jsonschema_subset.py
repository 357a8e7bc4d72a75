"""A small validator for the JSON Schema 2020-12 keywords our schemas use (no ``jsonschema`` dep).

Types follow orjson's Python values: ``integer`` is ``int`` but not ``bool`` (so ``1.0`` is not an
integer, as in the decoder). An unsupported keyword fails loudly instead of being ignored.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
_ANNOTATIONS = {"$schema", "$id", "title", "description", "$defs"}


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[name])


def is_valid(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> bool:
    """Whether ``value`` validates against ``schema``."""
    root = schema if root is None else root
    for keyword, arg in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        if not _check(keyword, arg, value, schema, root):
            return False
    return True


def _check(
    keyword: str, arg: Any, value: Any, schema: dict[str, Any], root: dict[str, Any]
) -> bool:
    if keyword == "$ref":
        target: Any = root
        for part in arg.removeprefix("#/").split("/"):
            target = target[part]
        return is_valid(value, target, root)
    if keyword == "type":
        names = [arg] if isinstance(arg, str) else arg
        return any(_is_type(value, n) for n in names)
    if keyword == "const":
        return type(value) is type(arg) and bool(value == arg)
    if keyword == "enum":
        return any(type(value) is type(a) and value == a for a in arg)
    if keyword == "oneOf":
        return sum(is_valid(value, s, root) for s in arg) == 1
    if keyword == "allOf":
        return all(is_valid(value, s, root) for s in arg)
    if keyword == "if":
        then = schema.get("then", {})
        return not is_valid(value, arg, root) or is_valid(value, then, root)
    if keyword == "then":
        return True  # applied by "if"
    if isinstance(value, str):
        if keyword == "pattern":
            return re.search(arg, value) is not None
        if keyword == "minLength":
            return len(value) >= arg
        if keyword == "maxLength":
            return len(value) <= arg
    if isinstance(value, dict):
        if keyword == "required":
            return all(k in value for k in arg)
        if keyword == "properties":
            return all(is_valid(value[k], s, root) for k, s in arg.items() if k in value)
        if keyword == "additionalProperties":
            assert arg is True, "only additionalProperties: true is supported"
            return True
    if isinstance(value, list):
        if keyword == "items":
            return all(is_valid(v, arg, root) for v in value)
        if keyword == "minItems":
            return len(value) >= arg
        if keyword == "maxItems":
            return len(value) <= arg
    known = {
        "pattern", "minLength", "maxLength", "required", "properties", "additionalProperties",
        "items", "minItems", "maxItems",
    }  # fmt: skip
    assert keyword in known, f"unsupported JSON Schema keyword {keyword!r}"
    return True  # a keyword of another instance type does not apply
