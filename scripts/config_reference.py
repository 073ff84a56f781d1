#!/usr/bin/env python3
"""Generates docs/config-reference.md from the code: every key of the configuration tree with
its type, default and doc comment, read from each module's `config.rs` (the serde structs augur
parses) and `config/default.toml` (the defaults, which a unit test keeps equal to the code's).

    python3 scripts/config_reference.py           # rewrite docs/config-reference.md
    python3 scripts/config_reference.py --check   # fail if it is stale (scripts/test.sh)

Walks the tree from `struct Config` in src/config.rs: a field whose type is another config
struct is a sub-table, a `kind`-tagged enum lists its variants' keys under `kind = "..."`.
Standard library only.
"""
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "config-reference.md"
SOURCES = [ROOT / "src" / "config.rs"] + sorted((ROOT / "src").glob("*/config.rs"))

ITEM = re.compile(r"^pub (struct|enum) (\w+)", re.M)
CONST_FN = re.compile(r"fn (\w+)\(\) -> [^{]+\{\n\s*(.*?)\n\}", re.S)


def items():
    """name -> (kind, attrs, body) of every config struct and enum; default fn name -> value."""
    found, defaults = {}, {}
    for path in SOURCES:
        text = path.read_text()
        for m in CONST_FN.finditer(text):
            defaults[m.group(1)] = m.group(2).replace("\n", " ")
        for m in ITEM.finditer(text):
            start = text.index("{", m.end())
            depth, i = 0, start
            while True:
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                if depth == 0:
                    break
                i += 1
            head = text[text.rfind("\n\n", 0, m.start()) : m.start()]
            found[m.group(2)] = (m.group(1), head, text[start + 1 : i])
    return found, defaults


def fields(body):
    """(doc, attrs, name, type) of each field or variant line of a struct/enum body."""
    doc, attrs, out = [], [], []
    for line in body.split("\n"):
        s = line.strip()
        if s.startswith("///"):
            doc.append(s[3:].strip())
        elif s.startswith("#["):
            attrs.append(s)
        elif m := re.match(r"(?:pub )?(\w+): (.+?),?$", s):
            out.append((" ".join(doc), " ".join(attrs), m.group(1), m.group(2).rstrip(",")))
            doc, attrs = [], []
        elif m := re.match(r"(\w+)(?:\((\w+)\))?(?: \{)?,?$", s):
            out.append((" ".join(doc), " ".join(attrs), m.group(1), m.group(2) or ""))
            doc, attrs = [], []
    return out


def variants(body):
    """(doc, attrs, name, inner type) of an enum's variants: its lines at the first indent only."""
    top = "\n".join(l for l in body.split("\n") if not l.startswith("        "))
    return [f for f in fields(top) if f[2][0].isupper()]


def rust_value(text):
    """A default fn's body as TOML would write it."""
    if m := re.match(r'\w+::parse\((".*?")\)', text):
        return m.group(1)
    text = re.sub(r"\.to_owned\(\)|\.into\(\)|\.to_string\(\)", "", text)
    text = re.sub(r"^vec!", "", text)
    return text.replace("_", "") if re.fullmatch(r"[\d_ *]+", text) else text


def snake(name):
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def lookup(table, key):
    for part in key.split("."):
        if not isinstance(table, dict) or part not in table:
            return None
        table = table[part]
    return table


def toml_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_text(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    return str(value)


def main():
    found, defaults = items()
    file_defaults = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    rows = []

    def walk(type_name, prefix, in_list):
        kind, head, body = found[type_name]
        if kind == "enum":
            tagged = 'tag = "kind"' in head
            for doc, _, variant, inner in variants(body):
                if not tagged:
                    continue
                rows.append((f'{prefix}kind = "{snake(variant)}"', "", "", doc))
                if inner in found:
                    walk(inner, prefix, in_list)
            if not tagged:
                return
            # Inline struct variants (`Memory { tables }`): their fields follow the variant line.
            for variant_body in re.findall(r"\w+ \{([^}]*)\}", body):
                for doc, attrs, name, ty in fields(variant_body):
                    add(prefix, doc, attrs, name, ty, in_list)
            return
        for doc, attrs, name, ty in fields(body):
            add(prefix, doc, attrs, name, ty, in_list)

    def add(prefix, doc, attrs, name, ty, in_list):
        inner = re.sub(r"^(Option|Vec)<(.+)>$", r"\2", ty)
        key = prefix + name
        leaf = inner in found and "try_from" in found[inner][1]
        if not leaf and (inner in found and found[inner][0] == "struct" or inner in found and 'tag = "kind"' in found[inner][1]):
            listed = ty.startswith("Vec<")
            rows.append((f"[{'[' if listed else ''}{key}{']' if listed else ''}]", ty, "", doc))
            walk(inner, key + ("[]." if listed else "."), in_list or listed)
            return
        value = None if in_list else lookup(file_defaults, key)
        if value is not None:
            default = toml_text(value)
        elif m := re.search(r'default = "([\w:]+)"', attrs):
            default = rust_value(defaults.get(m.group(1).rsplit("::", 1)[-1], m.group(1)))
        elif "default" in attrs:
            default = {"bool": "false", "u64": "0", "usize": "0", "u32": "0", "f64": "0.0", "String": '""'}.get(ty)
            if default is None:
                default = "none" if ty.startswith("Option<") else "empty" if ty.startswith(("Vec<", "BTreeMap<")) else "see type"
        else:
            default = "required"
        rows.append((key, ty, default, doc))

    walk("Config", "", False)
    out = [
        "# Configuration reference",
        "",
        "Generated by `scripts/config_reference.py` from each module's `config.rs` and",
        "`config/default.toml`; `scripts/test.sh` fails when it is stale. How the layers combine",
        "(defaults, `--config FILE`, `AUGUR__` variables) is in [configuration.md](configuration.md).",
        "A bracketed key is a table (`[[key]]`: a list of tables); `key[].field` is a field of each",
        "element; `kind = \"...\"` lines are the variants of a tagged table.",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for key, ty, default, doc in rows:
        cell = lambda s: s.replace("|", "\\|")
        out.append(f"| `{cell(key)}` | {'`' + cell(ty) + '`' if ty else ''} | {'`' + cell(default) + '`' if default else ''} | {cell(doc)} |")
    text = "\n".join(out) + "\n"
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit("docs/config-reference.md is stale: run python3 scripts/config_reference.py")
        print(f"config reference: {len(rows)} keys, current")
    else:
        OUT.write_text(text)
        print(f"wrote {OUT.relative_to(ROOT)}: {len(rows)} keys")


if __name__ == "__main__":
    main()
