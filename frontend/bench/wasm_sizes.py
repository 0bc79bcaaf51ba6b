#!/usr/bin/env python3
"""What is big in a wasm file: the code size of each function, grouped by crate (a small
stand-in for twiggy, which is not installed here).

Reads the code section and the `name` section, so give it an unstripped build passed through
wasm-bindgen (docs/PERFORMANCE.md, "The browser app", has the commands).
Usage: wasm_sizes.py FILE.wasm [--top N]
"""
import re
import sys
from collections import Counter


def leb(data, i):
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def sections(data):
    i = 8
    while i < len(data):
        kind = data[i]
        size, i = leb(data, i + 1)
        yield kind, data[i:i + size]
        i += size


def demangle(name):
    """Legacy Rust mangling (_ZN...E) to a path; anything else as it is."""
    if not name.startswith("_ZN"):
        return name
    i, parts = 3, []
    while i < len(name) and name[i].isdigit():
        j = i
        while name[j].isdigit():
            j += 1
        n = int(name[i:j])
        parts.append(name[j:j + n])
        i = j + n
    if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()
    return "::".join(parts).replace("$LT$", "<").replace("$GT$", ">").replace("$u20$", " ") \
        .replace("..", "::").replace("$C$", ",").replace("$RF$", "&")


def crate_of(name):
    name = name.lstrip("<&_ ")
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)", name)
    return m.group(1) if m else "?"


def main():
    path = sys.argv[1]
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 30
    data = open(path, "rb").read()
    imported = 0
    bodies, names, totals = [], {}, Counter()
    for kind, body in sections(data):
        totals[kind] += len(body)
        if kind == 2:  # imports: functions among them shift the indices
            count, i = leb(body, 0)
            for _ in range(count):
                for _ in range(2):
                    n, i = leb(body, i)
                    i += n
                k = body[i]
                i += 1
                if k == 0:
                    _, i = leb(body, i)
                    imported += 1
                elif k == 1:
                    i += 1
                    flags = body[i]; i += 1
                    _, i = leb(body, i)
                    if flags & 1:
                        _, i = leb(body, i)
                elif k == 2:
                    flags = body[i]; i += 1
                    _, i = leb(body, i)
                    if flags & 1:
                        _, i = leb(body, i)
                elif k == 3:
                    i += 2
        elif kind == 10:
            count, i = leb(body, 0)
            for _ in range(count):
                size, j = leb(body, i)
                bodies.append(j + size - i)
                i = j + size
        elif kind == 0:
            n, i = leb(body, 0)
            if body[i:i + n] != b"name":
                continue
            i += n
            while i < len(body):
                sub = body[i]
                size, i = leb(body, i + 1)
                end = i + size
                if sub == 1:
                    count, i = leb(body, i)
                    for _ in range(count):
                        idx, i = leb(body, i)
                        n, i = leb(body, i)
                        names[idx] = body[i:i + n].decode("utf-8", "replace")
                        i += n
                i = end
    kinds = {0: "custom", 1: "type", 2: "import", 3: "function", 5: "memory", 6: "global",
             7: "export", 9: "element", 10: "code", 11: "data", 12: "datacount"}
    print(f"{path}: {len(data)} bytes")
    for kind, size in totals.most_common():
        print(f"  section {kinds.get(kind, kind):10} {size:>9}")
    funcs = [(size, demangle(names.get(imported + k, f"func[{imported + k}]")))
             for k, size in enumerate(bodies)]
    by_crate = Counter()
    for size, name in funcs:
        by_crate[crate_of(name)] += size
    print("\ncode by crate (first path segment):")
    for crate, size in by_crate.most_common(top):
        print(f"  {size:>9}  {crate}")
    print(f"\nlargest {top} functions:")
    for size, name in sorted(funcs, reverse=True)[:top]:
        print(f"  {size:>9}  {name[:150]}")


if __name__ == "__main__":
    main()
