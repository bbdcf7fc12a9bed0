"""strongSwan's settings syntax (swanctl.conf, strongswan.conf) read into nested dicts.

    name {                 a section; `name : base1, base2 {` copies base sections in first
        key = value        a value runs to the end of the line, a '#' or a '}'; words are
        key = "a \"b\""    joined by one space; a quoted string may hold anything (\\n, \\t)
        a.b = c            dotted names are nested sections
    }
    include FILE|GLOB      other files, relative to the including one, in sorted order
    # a comment

What the parser keeps: section -> dict, key -> str (the last assignment wins, as in strongSwan).
Errors name the file and line. The format is described in strongSwan's settings documentation;
this reader was written from that description (no code copied).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

Tree = dict[str, Any]
MAX_INCLUDE_DEPTH = 10
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_NAME_STOP = set(' \t\r\n{}=:,#"')


class SwanctlSyntaxError(ValueError):
    """A swanctl.conf that cannot be read; the text names FILE:LINE and what is wrong."""


class _Reader:
    def __init__(self, text: str, path: Path, depth: int) -> None:
        self.text, self.path, self.depth = text, path, depth
        self.pos, self.line = 0, 1

    def fail(self, problem: str) -> SwanctlSyntaxError:
        return SwanctlSyntaxError(f"{self.path}:{self.line}: {problem}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def advance(self) -> str:
        char = self.peek()
        self.pos += 1
        if char == "\n":
            self.line += 1
        return char

    def skip_blank(self) -> None:
        """Whitespace, newlines and comments."""
        while self.pos < len(self.text):
            char = self.peek()
            if char in " \t\r\n":
                self.advance()
            elif char == "#":
                while self.peek() not in ("", "\n"):
                    self.advance()
            else:
                return

    def name(self) -> str:
        start = self.pos
        while self.peek() and self.peek() not in _NAME_STOP:
            self.advance()
        if self.pos == start:
            shown = self.peek() or "end of file"
            raise self.fail(f"expected a name, found {shown!r}")
        return self.text[start : self.pos]

    def quoted(self) -> str:
        self.advance()  # the opening quote
        out: list[str] = []
        while True:
            char = self.advance()
            if char == "":
                raise self.fail("a quoted string is not closed")
            if char == '"':
                return "".join(out)
            if char == "\\":
                nxt = self.advance()
                out.append(_ESCAPES.get(nxt, "" if nxt == "\n" else "\\" + nxt))
            else:
                out.append(char)

    def value(self) -> str:
        """After '=': words and strings up to a newline, '#' or '}', joined by one space."""
        words: list[str] = []
        while True:
            while self.peek() in (" ", "\t", "\r"):
                self.advance()
            char = self.peek()
            if char in ("", "\n", "#", "}"):
                return " ".join(words)
            if char == '"':
                words.append(self.quoted())
                continue
            start = self.pos
            while self.peek() and self.peek() not in ' \t\r\n#}"':
                self.advance()
            words.append(self.text[start : self.pos])

    def include_target(self) -> str:
        while self.peek() in (" ", "\t"):
            self.advance()
        if self.peek() == '"':
            return self.quoted()
        start = self.pos
        while self.peek() and self.peek() not in " \t\r\n#}":
            self.advance()
        return self.text[start : self.pos]

    # --- grammar
    def body(self, into: Tree, closing: bool) -> None:
        while True:
            self.skip_blank()
            char = self.peek()
            if char == "":
                if closing:
                    raise self.fail("a section is not closed with '}'")
                return
            if char == "}":
                if not closing:
                    raise self.fail("'}' without a section to close")
                self.advance()
                return
            self.statement(into)

    def statement(self, into: Tree) -> None:
        name = self.name()
        if name == "include" and self.peek() in (" ", "\t"):
            save = (self.pos, self.line)
            while self.peek() in (" ", "\t"):
                self.advance()
            if self.peek() not in ("=", "{", ":", "\n", "\r", "#", ""):
                self.include(into, self.include_target())
                return
            self.pos, self.line = save
        self.skip_inline()
        char = self.peek()
        if char == "=":
            self.advance()
            _assign(into, name, self.value())
        elif char in ("{", ":"):
            bases: list[str] = []
            if char == ":":
                self.advance()
                while True:
                    self.skip_blank()
                    bases.append(self.name())
                    self.skip_blank()
                    if self.peek() != ",":
                        break
                    self.advance()
                self.skip_blank()
                if self.peek() != "{":
                    raise self.fail(f"expected '{{' after the bases of section {name!r}")
            self.advance()
            section = _section(into, name)
            if bases:  # resolved once the whole file is read (a base may come later)
                self.refs.append((section, bases, f"{self.path}:{self.line}", name))
            self.body(section, closing=True)
        else:
            raise self.fail(f"expected '=' or '{{' after {name!r}")

    def skip_inline(self) -> None:
        while self.peek() in (" ", "\t", "\r", "\n"):
            self.advance()

    def include(self, into: Tree, target: str) -> None:
        if self.depth >= MAX_INCLUDE_DEPTH:
            raise self.fail(f"includes nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)")
        pattern = target if os.path.isabs(target) else str(self.path.parent / target)
        for file in sorted(glob.glob(pattern)):
            sub = _Reader(Path(file).read_text(), Path(file), self.depth + 1)
            sub.root, sub.refs = self.root, self.refs
            sub.body(into, closing=False)

    root: Tree
    refs: list[tuple[Tree, list[str], str, str]]


def _assign(into: Tree, name: str, value: str) -> None:
    *parents, last = name.split(".")
    node = into
    for part in parents:
        node = _section(node, part)
    node[last] = value


def _section(into: Tree, name: str) -> Tree:
    node = into
    for part in name.split("."):
        existing = node.get(part)
        if not isinstance(existing, dict):
            existing = node[part] = {}
        node = existing
    return node


def _lookup(tree: Tree, dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _fill(into: Tree, base: Tree) -> None:
    """Settings of a referenced section that the section does not set itself."""
    for key, value in base.items():
        if isinstance(value, dict):
            _fill(_section(into, key), value)
        elif key not in into:
            into[key] = value


def parse_settings(text: str, path: Path) -> Tree:
    reader = _Reader(text, path, 0)
    tree: Tree = {}
    reader.root, reader.refs = tree, []
    reader.body(tree, closing=False)
    for section, bases, where, name in reader.refs:  # `name : base1, base2`, by full path
        for base in bases:
            found = _lookup(tree, base)
            if not isinstance(found, dict):
                raise SwanctlSyntaxError(
                    f"{where}: section {name!r} refers to {base!r}, which is not defined"
                )
            _fill(section, found)
    return tree


def read_settings(path: Path) -> Tree:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SwanctlSyntaxError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_settings(text, path)
