#!/usr/bin/env python3
"""Fail when a non-test function in `crates/*/src` is longer than 70 lines (TIGER_STYLE).

A function's length runs from the line of `fn` to the line of its closing brace. Left out: `#[cfg(test)]`
modules, `#[test]` functions, and the shared backend suites (`testsuite.rs`, `mod suite`), which are tests
that happen to live in a library so that every backend can run them.

Usage: .ci/fn_length.py [repo root] [--limit N] [--top N]. Exit status 1 when a function is over the limit.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rust_source import crates, matching_brace, strip, without_tests  # noqa: E402

FN = re.compile(r"^[ \t]*(pub(\([^)]*\))?\s+)?((const|async|unsafe|extern(\s+\"\w+\")?)\s+)*fn\s+(\w+)", re.M)
SUITE = re.compile(r"\bmod\s+suite\s*\{")


def body_start(text, at):
    """Offset of the `{` opening the body of the fn declared at `at`, or None for a declaration (`;`)."""
    depth = 0
    for j in range(at, len(text)):
        c = text[j]
        if c in "([<" and not (c == "<" and text[j - 1] == "-"):
            depth += 1
        elif c in ")]>" and not (c == ">" and text[j - 1] in "-="):
            depth -= 1
        elif depth <= 0 and c == "{":
            return j
        elif depth <= 0 and c == ";":
            return None
    return None


def functions(path):
    """[(name, first line, length)] of the non-test functions of one file."""
    text = without_tests(strip(open(path, encoding="utf-8").read()))
    for m in SUITE.finditer(text):
        end = matching_brace(text, m.end() - 1)
        text = text[: m.start()] + re.sub(r"[^\n]", " ", text[m.start(): end + 1]) + text[end + 1:]
    out = []
    for m in FN.finditer(text):
        before = text[max(0, m.start() - 200): m.start()]
        if re.search(r"#\[(tokio::)?test(\([^)]*\))?\]\s*$", before):
            continue
        start = body_start(text, m.end())
        if start is None:
            continue
        end = matching_brace(text, start)
        first = text.count("\n", 0, m.start()) + 1
        last = text.count("\n", 0, end) + 1
        out.append((m.group(6), first, last - first + 1))
    return out


def main():
    args = argparse.ArgumentParser()
    args.add_argument("root", nargs="?", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args.add_argument("--limit", type=int, default=70)
    args.add_argument("--top", type=int, default=0, help="also list the N longest functions")
    a = args.parse_args()
    found = []
    for _, src in crates(a.root):
        for dirpath, _, files in os.walk(src):
            for f in sorted(files):
                if f.endswith(".rs") and f != "testsuite.rs":
                    path = os.path.join(dirpath, f)
                    for name, line, length in functions(path):
                        found.append((length, os.path.relpath(path, a.root), line, name))
    found.sort(reverse=True)
    over = [f for f in found if f[0] > a.limit]
    for length, path, line, name in over:
        print(f"{path}:{line}: fn {name} is {length} lines (limit {a.limit})")
    for length, path, line, name in found[: a.top]:
        print(f"  {length:4} {path}:{line} {name}")
    print(f"{len(found)} functions, {len(over)} over {a.limit} lines, longest {found[0][0] if found else 0}")
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
