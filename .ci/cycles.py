#!/usr/bin/env python3
"""Fail when the modules of any crate import each other in a circle.

For each crate under `crates/` this builds the graph "module A names an item of module B" from the paths in the
code (`use` trees and inline paths starting with `crate::`, `super::`, `self::` or a child module's name), follows
`pub use` re-exports to the module that defines the item, leaves out `#[cfg(test)]` modules, and reports every
strongly connected component with more than one module, with the lines that make each edge.

Usage: .ci/cycles.py [repo root]. Exit status 1 when a cycle exists.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rust_source import crates, matching_brace, modules, strip, without_tests  # noqa: E402

USE = re.compile(r"\b(pub(\([^)]*\))?\s+)?use\s+([^;]+);")
PATH = re.compile(r"(?<![\w:])((?:\w+::)+\w+|\w+::\{)")


def expand(tree):
    """`a::{b, c::{d, e}}` -> [[a,b],[a,c,d],[a,c,e]] (aliases and globs keep their path)."""
    tree = re.sub(r"\s+", "", tree)
    if "{" not in tree:
        path = tree.split(" as ")[0].split("as")[0] if False else re.sub(r"as\w+$", "", tree)
        return [path.split("::")]
    head, rest = tree.split("{", 1)
    inner = rest[: rest.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    prefix = [p for p in head.split("::") if p]
    out = []
    for part in parts:
        if part:
            out += [prefix + p for p in expand(part)]
    return out


class Crate:
    def __init__(self, src):
        self.files = modules(src)
        self.text = {m: without_tests(strip(open(f, encoding="utf-8").read())) for m, f in self.files.items()}
        self.children = {m: {c[-1] for c in self.files if len(c) == len(m) + 1 and c[: len(m)] == m}
                         for m in self.files}
        self.reexports = {m: {} for m in self.files}
        self.globs = {m: [] for m in self.files}
        for m, text in self.text.items():
            for u in USE.finditer(text):
                if True:  # private imports are visible to child modules too
                    for path in expand(u.group(3)):
                        if path[-1] == "*":
                            self.globs[m].append(path[:-1])
                        else:
                            self.reexports[m][path[-1]] = path
        self.inline = {m: inline_modules(text) for m, text in self.text.items()}

    def defines(self, module, name):
        """Whether `module` itself defines `name` (an item, not a re-export)."""
        item = r"\b(struct|enum|trait|type|fn|const|static|mod|union|macro_rules!)\s+" + re.escape(name) + r"\b"
        return re.search(item, self.text[module]) is not None

    def scope(self, module, at):
        """The inline `mod x { }` path around offset `at` of `module`'s file."""
        return [name for name, start, end in self.inline[module] if start <= at <= end]

    def absolute(self, module, path, inner=()):
        """The path made absolute (a list of names from the crate root), or None if it leaves the crate.

        `inner` is the inline module around the path; inline modules belong to their file's module, so a path
        that stays inside them points at the file itself."""
        head, rest = path[0], path[1:]
        here = list(module) + list(inner)
        if head == "crate":
            return rest
        if head == "self":
            return here + rest
        if head == "super":
            base = here
            while path and path[0] == "super":
                base, path = base[:-1], path[1:]
            return base + path
        if not inner and head in self.children[module]:
            return list(module) + path
        return None

    def target(self, module, path, inner=(), depth=0):
        """The module that defines what `path` (as written in `module`) names."""
        names = self.absolute(module, path, inner)
        if names is None or depth > 8:
            return None
        at = ()
        for i, name in enumerate(names):
            if at + (name,) in self.files:
                at = at + (name,)
                continue
            reexport = self.reexports[at].get(name)
            if reexport:
                found = self.target(at, reexport + names[i + 1:], (), depth + 1)
                return found if found is not None else at
            if not self.defines(at, name):
                for glob in self.globs[at]:
                    source = self.target(at, glob + [name], (), depth + 1)
                    if source is not None and source != at and self.defines(source, name):
                        return source
            return at
        return at

    def edges(self):
        """{(from, to): [line, ...]}"""
        found = {}
        for m, text in self.text.items():
            spans = []
            for u in USE.finditer(text):
                spans.append((u.start(), u.end()))
                for path in expand(u.group(3)):
                    self.add(found, m, path, text, u.start())
            for p in PATH.finditer(text):
                if any(a <= p.start() < b for a, b in spans) or p.group(1).endswith("{"):
                    continue
                self.add(found, m, p.group(1).split("::"), text, p.start())
        return found

    def add(self, found, module, path, text, at):
        to = self.target(module, path, self.scope(module, at))
        if to is None or to == module:
            return
        line = text.count("\n", 0, at) + 1
        found.setdefault((module, to), []).append(line)


def inline_modules(text):
    """[(name, start, end)] of every `mod name { ... }` written inside a file."""
    out = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", text):
        out.append((m.group(1), m.start(), matching_brace(text, m.end() - 1)))
    return out


def sccs(nodes, edges):
    """Tarjan's strongly connected components, iteratively."""
    graph = {n: sorted({b for (a, b) in edges if a == n}) for n in nodes}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter[0]
                counter[0] += 1
                stack.append(node)
                on.add(node)
            recurse = False
            for j in range(i, len(graph[node])):
                nxt = graph[node][j]
                if nxt not in index:
                    work.append((node, j + 1))
                    work.append((nxt, 0))
                    recurse = True
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            if recurse:
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                out.append(comp)
    return out


def name(crate, module):
    return crate + ("::" + "::".join(module) if module else "")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    cycles, modules_seen, edges_seen = 0, 0, 0
    for crate_name, src in crates(root):
        crate = Crate(src)
        edges = crate.edges()
        modules_seen += len(crate.files)
        edges_seen += len(edges)
        for comp in sccs(sorted(crate.files), edges):
            if len(comp) < 2:
                continue
            cycles += 1
            print(f"cycle in {crate_name}: " + " <-> ".join(name(crate_name, m) for m in sorted(comp)))
            members = set(comp)
            for (a, b), lines in sorted(edges.items()):
                if a in members and b in members:
                    where = os.path.relpath(crate.files[a], root)
                    print(f"    {name(crate_name, a)} -> {name(crate_name, b)}  ({where}:{','.join(map(str, lines[:5]))})")
    print(f"{modules_seen} modules, {edges_seen} module edges, {cycles} cycle(s)")
    sys.exit(1 if cycles else 0)


if __name__ == "__main__":
    main()
