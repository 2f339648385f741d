"""Reading Rust sources for the shape checks: strip comments, strings and test-only modules, map files to modules.

Shared by `.ci/cycles.py` and `.ci/fn_length.py`. Not a Rust parser: enough of one for code that rustfmt keeps
tidy (one item per line, braces balanced outside strings and comments).
"""
import os
import re


def strip(text):
    """Blank out comments, string and char literals, keeping every newline so line numbers hold."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not re.match(r"\w", text[i - 1:i] or " "):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + re.sub(r"[^\n]", "", text[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + re.sub(r"[^\n]", "", text[i:j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'", text[i:i + 12])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(text, open_at):
    """Index of the `}` closing the `{` at `open_at`."""
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced braces")


TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{")


def without_tests(text):
    """Blank out `#[cfg(test)] mod x { ... }` blocks (keeping newlines)."""
    while True:
        m = TEST_MOD.search(text)
        if not m:
            return text
        end = matching_brace(text, m.end() - 1)
        text = text[: m.start()] + re.sub(r"[^\n]", " ", text[m.start(): end + 1]) + text[end + 1:]


def crates(root):
    """(crate name, src dir) for every crate under `crates/`."""
    base = os.path.join(root, "crates")
    for name in sorted(os.listdir(base)):
        src = os.path.join(base, name, "src")
        if os.path.isdir(src):
            yield name, src


def modules(src):
    """{module path tuple: file} for the crate rooted at `src` (lib.rs or main.rs is the empty path)."""
    found = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                rel = []
            elif rel[-1] == "mod":
                rel = rel[:-1]
            found[tuple(rel)] = os.path.join(dirpath, f)
    return found
