"""Where a key sits in a YAML file, so errors can point at `file:line: key.path`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from factory.recipe.names import KeyedError

PLAIN_KEY = re.compile(r"[\w.-]+")


def key_lines(document: yaml.Node | None) -> dict[tuple, int]:
    """Map every key path in a YAML document (its node tree as `reading.parse` read it, whose
    limits bound this walk) to its 1-based line."""
    return _node_lines(document) if document is not None else {}


def _node_lines(node: yaml.Node, keys: tuple = ()) -> dict[tuple, int]:
    """Constructing the data moved merged keys (`<<: *base`) first in their mapping, where the
    keys written after them override their lines."""
    lines = {keys: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines.update(_node_lines(value, (*keys, key.value)))
            lines[(*keys, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_node_lines(item, (*keys, i)))
            if i in vars(node).get("alias_lines", {}):  # set by reading.BoundedLoader
                lines[(*keys, i)] = node.alias_lines[i]
    return lines


def locate(path: Path, lines: dict, keys: tuple) -> str:
    """`path:line` of the deepest written key along `keys`, or the path alone."""
    for n in range(len(keys), 0, -1):
        if keys[:n] in lines:
            return f"{path}:{lines[keys[:n]]}"
    return str(path)


def dotted(keys: tuple) -> str:
    """`('cot', 'levels', 0)` -> `cot.levels[0]`."""
    out = ""
    for key in keys:
        if isinstance(key, int) or not PLAIN_KEY.fullmatch(str(key)):
            out += f"[{key!r}]"  # an index, or a key with spaces, quotes, newlines...
        else:
            out += f".{key}" if out else str(key)
    return out


def validation_messages(
    err: ValidationError, data: dict, path: Path, lines: dict, tags: dict[str, str]
) -> str:
    """One `file:line: key.path: message` line per pydantic error; `tags` names the choices of
    each discriminator key for a clearer message than pydantic's."""
    messages = []
    for error in err.errors():
        keyed = error.get("ctx", {}).get("error")
        below = keyed.keys if isinstance(keyed, KeyedError) else ()
        keys = _data_keys((*error["loc"], *below), data)
        message = error["msg"]
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            tag = error["ctx"]["discriminator"].strip("'")
            keys = (*keys, tag)
            message = f"must be one of {tags[tag]}"
        elif error["type"] == "extra_forbidden":
            message = f"unknown key {keys[-1]!r}"
        elif error["type"] == "missing":
            message = "required key is missing"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        messages.append(f"{locate(path, lines, keys)}: {dotted(keys) or '(top level)'}: {message}")
    return "\n".join(messages)


def _data_keys(loc: tuple, data: Any) -> tuple:
    """Turn a pydantic error location into the key path as written in the YAML: union tags and
    the implicit list around a single teacher are dropped."""
    keys, node = [], data
    for part in loc:
        if (
            isinstance(node, dict)
            and part in node
            or isinstance(node, list)
            and isinstance(part, int)
            and part < len(node)
        ):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part not in node.values():
            node = None  # a missing or unknown key: name it, nothing below it to follow
        else:
            continue
        keys.append(part)
    return tuple(keys)
