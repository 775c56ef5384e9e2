"""A recipe file's bytes to YAML data, within bounds.

The file is UTF-8 text of at most 1 MB. Its document is composed by a bounded composer that
counts what aliases expand to (an alias bomb stops at the limit instead of taking gigabytes),
limits nesting, and accepts only keys that are unique plain strings. Every problem is a
`RecipeError` naming the file, the line and, where there is one, the key path.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from factory.recipe.limits import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_KEY,
    MAX_STRING,
    MAX_TEXT,
    MAX_VALUES,
)
from factory.recipe.names import short
from factory.recipe.schema import RecipeError
from factory.recipe.where import dotted

CORE = "tag:yaml.org,2002:"
TAGS = {CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}
MERGE = CORE + "merge"
CHECKED = {CORE + t: t for t in ("int", "float", "bool")}
BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def read_recipe_file(path: Path) -> tuple[Any, Node]:
    """The data of the recipe file at `path` and its YAML node tree (for key lines)."""
    if not path.exists():
        raise RecipeError(f"{path}: no such recipe file")
    if not path.is_file():
        raise RecipeError(f"{path}: not a regular file")
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise RecipeError(f"{path}: cannot read the recipe: {err.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise RecipeError(f"{path}: larger than {MAX_FILE_BYTES:,} bytes, the limit for a recipe")
    data, node = parse(decode(raw, path), path)
    if node is None:
        raise RecipeError(f"{path}: the file holds no YAML document (only comments or blanks)")
    return data, node


def decode(data: bytes, path: Path) -> str:
    """`data` as text, if it is UTF-8 YAML may hold (no NUL or other control characters)."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            raise RecipeError(f"{path}:1: the file is {encoding} text; save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise RecipeError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}); save the file as UTF-8"
        ) from None
    if match := yaml.reader.Reader.NON_PRINTABLE.search(text):
        line = text.count("\n", 0, match.start()) + 1
        if match.group() == "\0":
            raise RecipeError(
                f"{path}:{line}: a NUL byte: not text (binary, or UTF-16 with no BOM?)"
            )
        raise RecipeError(f"{path}:{line}: character {short(match.group())} is not allowed in YAML")
    return text


def parse(text: str, path: Path | str) -> tuple[Any, Node | None]:
    """The data of the one YAML document in `text`, and its node tree (None when empty)."""
    loader = BoundedLoader(text, path)
    try:
        node = loader.get_single_node()
        return (None if node is None else loader.construct_document(node)), node
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        parts = (getattr(err, "context", None), getattr(err, "problem", None))
        problem = ", ".join(p for p in parts if p) or str(err)
        raise RecipeError(f"{where}: invalid YAML: {' '.join(problem.split())}") from None
    finally:
        loader.dispose()


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, whose composer stops at the limits and checks every key.

    PyYAML shares an aliased node rather than copying it, so parsing an alias bomb is cheap and
    the cost comes later, from whatever walks the data. The composer therefore adds the size of
    the aliased node (values, text, depth) each time an alias is used."""

    def __init__(self, text: str, path: Path | str):
        super().__init__(text)
        self.path, self.keys = path, []
        self.values = self.text = self.depth = self.reach = 0
        self.sizes: dict[str, tuple[int, int, int]] = {}  # anchor -> values, text, height
        self.seen: dict[int, dict[str, int]] = {}  # mapping node -> its keys' lines

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if isinstance(parent, MappingNode) and index is not None:
            self._check_key(parent, index)
            part = index.value
        else:
            part = index if isinstance(parent, SequenceNode) else None
        self.keys.append(part)
        try:
            return self._compose(parent, index, isinstance(parent, MappingNode) and index is None)
        finally:
            self.keys.pop()

    def _compose(self, parent: Node | None, index: Any, is_key: bool) -> Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            return self._alias(event, parent, index)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self._fail(event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
        start, reach, self.reach = (self.values, self.text), self.reach, self.depth
        node = super().compose_node(parent, index)
        self._check_value(node, explicit=event.tag not in (None, "!"), is_key=is_key)
        height = self.reach - self.depth
        if event.anchor is not None:
            self.sizes[event.anchor] = (self.values - start[0], self.text - start[1], height)
        self.reach, self.depth = max(reach, self.reach), self.depth - 1
        return node

    def _alias(self, event: yaml.AliasEvent, parent: Node | None, index: Any) -> Node:
        if event.anchor in self.anchors and event.anchor not in self.sizes:
            self._fail(event.start_mark, f"alias *{event.anchor} is used inside its own anchor")
        values, text, height = self.sizes.get(event.anchor, (0, 0, 0))  # undefined: PyYAML says
        self.reach = max(self.reach, self.depth + 1 + height)
        if self.reach > MAX_DEPTH:
            message = f"nested deeper than {MAX_DEPTH} levels once aliases expand"
            self._fail(event.start_mark, message)
        self._count(values, text, event.start_mark)
        if isinstance(parent, SequenceNode):  # the item's line is the alias's, not the anchor's
            vars(parent).setdefault("alias_lines", {})[index] = event.start_mark.line + 1
        return super().compose_node(parent, index)

    def _count(self, values: int, text: int, mark: yaml.Mark) -> None:
        self.values, self.text = self.values + values, self.text + text
        if self.values > MAX_VALUES:
            self._fail(mark, f"more than {MAX_VALUES:,} keys and values once aliases expand")
        if self.text > MAX_TEXT:
            self._fail(mark, f"more than {MAX_TEXT:,} characters of text once aliases expand")

    def _check_value(self, node: Node, explicit: bool, is_key: bool) -> None:
        """Count `node`, which must carry a core tag (implicit dates, `=` and a `<<` that is no
        key stay text) and, as a number or boolean, read as one."""
        allowed = (TAGS | {MERGE}) if is_key else TAGS
        if not explicit and node.tag not in allowed:
            node.tag = CORE + "str"
        if node.tag not in allowed:
            self._fail(node.start_mark, f"the tag {node.tag.replace(CORE, '!!')} is not allowed")
        text = len(node.value) if isinstance(node, ScalarNode) else 0
        if text > MAX_STRING:
            self._fail(
                node.start_mark, f"a string of {text:,} characters; the limit is {MAX_STRING:,}"
            )
        self._count(1, text, node.start_mark)
        if node.tag in CHECKED:
            try:
                self.construct_object(node)
            except yaml.YAMLError:
                raise
            except Exception:  # PyYAML's int('') or int('_', 16): not a number at all
                self._fail(
                    node.start_mark, f"{short(node.value)} is not a valid {CHECKED[node.tag]}"
                )

    def _check_key(self, mapping: MappingNode, key: Node) -> None:
        """A key is a plain string, not too long, written once in its mapping (`<<` merges)."""
        if not isinstance(key, ScalarNode):
            kind = "mapping" if isinstance(key, MappingNode) else "sequence"
            self._fail(key.start_mark, f"a key must be a string, not a {kind}")
        if key.tag not in (CORE + "str", MERGE):
            kind, shown = key.tag.replace(CORE, ""), short(key.value or "~")
            self._fail(key.start_mark, f"key {shown} is read as {kind}, not a string: quote it")
        if len(key.value) > MAX_KEY:
            message = f"a key of {len(key.value):,} characters; the limit is {MAX_KEY}"
            self._fail(key.start_mark, message)
        lines = self.seen.setdefault(id(mapping), {})
        if key.value in lines:
            message = f"duplicate key {short(key.value)}, first written at line {lines[key.value]}"
            self._fail(key.start_mark, message, keys=(*self._path(), key.value))
        lines[key.value] = key.start_mark.line + 1

    def _path(self) -> tuple:
        return tuple(part for part in self.keys if part is not None)

    def _fail(self, mark: yaml.Mark, message: str, keys: tuple | None = None) -> None:
        keys = self._path() if keys is None else keys
        where = f"{self.path}:{mark.line + 1}: {dotted(keys) or '(top level)'}"
        raise RecipeError(f"{where}: {message}")
