"""profiles/x.toml -> the same profile in kit's one canonical layout, comments kept.

The layout, so that a diff shows only real changes:

- the file's leading comment block first, then the top-level keys, then one `[table]` after another,
  all in the order of the profile model's fields (`kit schema`); keys the model does not know keep
  their place after the known ones (fmt formats, `kit check` judges);
- free-form maps (`[packages]`, `image.env`, `engine.args`) keep the author's order: which package
  comes first is a choice, not noise;
- `key = value` with single spaces, bare keys where TOML allows them, double-quoted strings,
  `key = value  # comment` for trailing comments, `{ a = 1, b = 2 }` inline tables, arrays on one
  line up to 100 characters and one element per line beyond (an array holding comments is kept as
  written);
- the leading comment block directly above the top-level keys, one blank line between tables, none
  inside a table, one newline at the end.

A comment stays with the key or table header it precedes. The result is checked to parse to the same
data as the input, and formatting is idempotent (tests/test_fmt.py).
"""

from __future__ import annotations

import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import BaseModel
from tomlkit import items

from kit.errors import OperationError, ProfileError
from kit.profile import Profile

_WIDTH = 100
_UNKNOWN = 10_000  # order key of keys the model does not know: after every known one, in document order


@dataclass
class _Entry:
    """One `key = value` line with the comment lines above it."""

    keys: list[str]  # more than one for a dotted key
    item: items.Item
    comments: list[str] = field(default_factory=list)
    position: int = 0


@dataclass
class _Section:
    """The root of the document, or one `[table]` / `[[array]]` element, with its own key-values."""

    path: tuple[str, ...]
    aot: bool = False
    comments: list[str] = field(default_factory=list)  # above the header
    entries: list[_Entry] = field(default_factory=list)
    trailing: list[str] = field(default_factory=list)  # after the last key-value
    position: int = 0


def format_text(text: str, *, file: str = "<string>") -> str:
    """The canonical layout of one profile's TOML text."""
    try:
        before = tomllib.loads(text)
        doc = tomlkit.parse(text)
    except (tomllib.TOMLDecodeError, tomlkit.exceptions.ParseError) as exc:
        raise ProfileError(f"invalid TOML: {exc}", file=file, fix="fix the syntax first; `kit check` shows where") from None
    sections: list[_Section] = []
    root = _Section(path=())
    sections.append(root)
    _walk(doc.body, root, sections, ())
    out = _emit(sections)
    try:
        same = tomllib.loads(out) == before
    except tomllib.TOMLDecodeError:
        same = False
    if not same:  # a bug in kit, never silently a changed profile
        raise OperationError(f"kit fmt would change what {file} means; the file is left untouched", file=file, fix="report this as a bug in kit, with the file")
    return out


def format_file(path: Path, *, write: bool = True) -> tuple[str, str]:
    """(old, new) text of `path`; writes the new text when it differs and `write` is set."""
    from kit.files import read_text, write_atomic

    old = read_text(path)  # a regular UTF-8 file, or a ProfileError saying what it is instead
    try:
        new = format_text(old, file=str(path))
    except RecursionError:
        raise ProfileError("arrays or tables nested too deeply to read", file=str(path), fix="flatten the nesting") from None
    if write and new != old:
        # Beside the file and renamed over it: a full disk or a file-size limit leaves the old profile whole.
        target = path.resolve()
        try:
            write_atomic(target, new, mode=None)
        except OSError as exc:
            raise OperationError(f"cannot write the formatted profile: {exc.strerror or exc}; the file is unchanged", file=str(path), fix="free space or fix permissions, then run kit fmt again") from None
    return old, new


# -- reading ------------------------------------------------------------------------------------


def _walk(body: list, section: _Section, sections: list[_Section], path: tuple[str, ...]) -> None:
    pending: list[str] = []
    for key, item in body:
        if isinstance(item, items.Comment):
            pending.append(item.as_string().strip())
        elif isinstance(item, items.Whitespace) or key is None:
            continue
        elif isinstance(item, items.Table) and key.is_dotted():
            for entry in _dotted(item, [key.key]):
                entry.comments, pending = pending, []
                entry.position = len(section.entries)
                section.entries.append(entry)
        elif isinstance(item, items.Table):
            sub_path = (*path, key.key)
            if item.is_super_table():
                # `[a.b]` without `[a]`: no header of its own; comments above go to the first header inside.
                section.trailing += pending
                pending = []
                _walk_super(item, sections, sub_path)
                continue
            sub = _Section(path=sub_path, comments=pending, position=len(sections))
            pending = []
            sections.append(sub)
            _walk(item.value.body, sub, sections, sub_path)
        elif isinstance(item, items.AoT):
            for element in item.body:
                sub = _Section(path=(*path, key.key), aot=True, comments=pending, position=len(sections))
                pending = []
                sections.append(sub)
                _walk(element.value.body, sub, sections, sub.path)
        else:
            section.entries.append(_Entry(keys=[key.key], item=item, comments=pending, position=len(section.entries)))
            pending = []
    section.trailing += pending


def _walk_super(table: items.Table, sections: list[_Section], path: tuple[str, ...]) -> None:
    """A table that only exists as the parent of `[a.b]` headers: it has no header of its own."""
    holder = _Section(path=path)
    _walk(table.value.body, holder, sections, path)
    if holder.entries:  # not expected from tomlkit; keep the data rather than drop it
        holder.position = len(sections)
        sections.append(holder)
    elif holder.trailing:
        sections[-1].trailing += holder.trailing


def _dotted(table: items.Table, prefix: list[str]) -> list[_Entry]:
    out: list[_Entry] = []
    for key, item in table.value.body:
        if key is None:
            continue
        if isinstance(item, items.Table):
            out += _dotted(item, [*prefix, key.key])
        else:
            out.append(_Entry(keys=[*prefix, key.key], item=item))
    return out


# -- ordering -----------------------------------------------------------------------------------


def _field_order(model: type[BaseModel] | None) -> dict[str, int]:
    if model is None:
        return {}
    return {(info.alias or name): i for i, (name, info) in enumerate(model.model_fields.items())}


def _submodel(model: type[BaseModel] | None, key: str) -> type[BaseModel] | None:
    """The pydantic model of field `key` of `model` (through Optional and list), or None for a free-form map."""
    if model is None:
        return None
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return _model_in(info.annotation)
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found:
            return found
    return None


def _model_at(path: tuple[str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Profile
    for part in path:
        model = _submodel(model, part)
    return model


def _order_key(path: tuple[str, ...], position: int) -> tuple:
    """Sort key of a table: its fields' indices down the path, so children follow their parent."""
    key: list[int] = []
    model: type[BaseModel] | None = Profile
    for part in path:
        order = _field_order(model)
        key.append(order.get(part, _UNKNOWN))
        model = _submodel(model, part)
    return (*key, position)


# -- writing ------------------------------------------------------------------------------------


def _emit(sections: list[_Section]) -> str:
    root, tables = sections[0], sections[1:]
    # A comment above a header sits, for tomlkit, at the end of the table before it: give it back.
    chain = [root, *tables]
    for before, after in zip(chain, chain[1:]):
        after.comments = [*before.trailing, *after.comments]
        before.trailing = []
    footer, chain[-1].trailing = chain[-1].trailing, []  # comments after everything stay at the end
    header: list[str] = []
    if root.entries:
        header, root.entries[0].comments = root.entries[0].comments, []
    elif tables:
        header, tables[0].comments = tables[0].comments, []
    else:
        header, footer = footer, []
    blocks: list[str] = []
    if root.entries:  # the leading comments sit directly above the top-level keys
        blocks.append("\n".join([*header, _body(root)]))
    elif header:
        blocks.append("\n".join(header))
    ordered = sorted(tables, key=lambda s: _order_key(s.path, s.position))
    for sec in ordered:
        name = ".".join(_key(p) for p in sec.path)
        head = f"[[{name}]]" if sec.aot else f"[{name}]"
        lines = [*sec.comments, head]
        if sec.entries:
            lines.append(_body(sec))
        blocks.append("\n".join(lines))
    if footer:
        blocks.append("\n".join(footer))
    return "\n\n".join(b for b in blocks if b) + "\n"


def _body(sec: _Section) -> str:
    model = _model_at(sec.path)
    order = _field_order(model)
    entries = sorted(sec.entries, key=lambda e: (order.get(e.keys[0], _UNKNOWN), e.position))
    lines: list[str] = []
    for e in entries:
        lines += e.comments
        sub = _submodel(model, e.keys[0]) if len(e.keys) == 1 else None
        name = ".".join(_key(k) for k in e.keys)
        line = f"{name} = {_value(e.item, sub, len(name) + 3)}"
        comment = e.item.trivia.comment.strip() if e.item.trivia.comment else ""
        if comment:
            line += f"  {comment}"
        lines.append(line)
    return "\n".join(lines)


def _key(name: str) -> str:
    if name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
        return name
    return '"' + "".join(_escape_char(c) for c in name) + '"'  # a key is one line: never a multi-line string


def _string(value: str) -> str:
    if "\n" in value:
        body = value.replace("\\", "\\\\").replace('"""', '""\\"')
        body = "".join(_escape_char(c) if c not in "\n" and (ord(c) < 0x20 or ord(c) == 0x7F) else c for c in body)
        return '"""\n' + body + '"""'
    return '"' + "".join(_escape_char(c) for c in value) + '"'


def _escape_char(c: str) -> str:
    named = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    if c in named:
        return named[c]
    if ord(c) < 0x20 or ord(c) == 0x7F:
        return f"\\u{ord(c):04X}"
    return c


def _value(item: Any, model: type[BaseModel] | None, indent: int = 0) -> str:
    if isinstance(item, items.String):
        return _string(str(item))
    if isinstance(item, items.InlineTable):
        order = _field_order(model)
        pairs = list(item.value.body)
        kv = [(k, v) for k, v in pairs if k is not None]
        kv.sort(key=lambda p: order.get(p[0].key, _UNKNOWN))
        inner = ", ".join(f"{_key(k.key)} = {_value(v, _submodel(model, k.key))}" for k, v in kv)
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(item, items.Array):
        if any(isinstance(v, items.Comment) for v in getattr(item, "_value", [])):
            return item.as_string()
        elements = [_value(v, model) for v in item]
        one_line = "[" + ", ".join(elements) + "]"
        if len(one_line) + indent <= _WIDTH:
            return one_line
        return "[\n" + "".join(f"    {e},\n" for e in elements) + "]"
    if isinstance(item, items.Item):
        return item.as_string().strip()
    return tomlkit.item(item).as_string()
