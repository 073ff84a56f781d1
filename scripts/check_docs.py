#!/usr/bin/env python3
"""Nothing stale in the docs: README.md and docs/*.md against the binary and the tree.

    python3 scripts/check_docs.py [AUGUR_BINARY]      (default: target/debug/augur)

1. Commands. Every `augur ...` command in a fenced sh/bash/console block (a console block's
   commands are its `$ ` lines) must name a subcommand path the binary has, and every `--flag` it
   uses must appear in that subcommand's `--help`. Comments, quoted strings, heredoc bodies and
   line continuations are handled as a shell would; `[--flag ...]` (optional flags) is checked
   like any other. A command is `augur` or a path ending in `/augur`, after any `VAR=value`
   assignments, at the start of a line or after `|`, `&&`, `||`, `;` or `&`.
2. Links. Every relative link `[text](target)` or `![alt](target)` must point at an existing file
   or directory (relative to the page), and a `#anchor` at a heading of the target page (GitHub's
   anchor rules). Links into fenced blocks and inline code are not links.

Exits 1 with one line per problem (`file:line: what`), 0 when there is none. Python stdlib only.
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Pages written by a generator from the code. Until the generator has run, a link to one is
# reported as a note, not a problem (its anchors cannot be checked before it exists).

SHELL_LANGS = {"sh", "bash", "shell", "console", "shell-session"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FLAG = re.compile(r"(?<![\w-])(--[A-Za-z0-9][A-Za-z0-9-]*)")
HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = {"|", "||", "&&", ";", "&", ";;", "|&", "(", ")"}
# In a usage line, `[--to s3://bucket/prefix|DIR]` is a choice, not a pipe.
OPTIONAL = re.compile(r"\[[^\]]*\]")


def pages():
    """README.md and docs/*.md, in a stable order."""
    found = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    return [p for p in found if p.is_file()]


def rel(path):
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# === Markdown ===


def split_blocks(text):
    """Yields ("text", line_no, line) for prose lines and ("code", line_no, lang, lines) for each
    fenced block, with `lines` as (line_no, line) pairs."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            yield ("text", i + 1, lines[i])
            i += 1
            continue
        fence, lang, start = m.group(2), m.group(3).lower(), i + 1
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^\s*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$", lines[i]):
            body.append((i + 1, lines[i]))
            i += 1
        i += 1  # the closing fence (or the end of the file)
        yield ("code", start, lang, body)


def strip_inline_code(line):
    return re.sub(r"(`+)(.+?)\1", "", line)


def slug(heading):
    """GitHub's anchor for a heading: inline markup dropped, lower case, punctuation other than
    `-` and `_` removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_|_(?!\w)", "", text)  # _emphasis_, not snake_case
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path, cache={}):
    """Every anchor a page defines: its headings (with GitHub's -1, -2 for repeats)."""
    if path not in cache:
        seen = {}
        found = set()
        for block in split_blocks(path.read_text(encoding="utf-8")):
            if block[0] != "text":
                continue
            m = re.match(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", block[2])
            if not m:
                continue
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        cache[path] = found
    return cache[path]


# === Links ===


def check_links(page, problems):
    for block in split_blocks(page.read_text(encoding="utf-8")):
        if block[0] != "text":
            continue
        _, line_no, line = block
        for m in LINK.finditer(strip_inline_code(line)):
            target = m.group(3)
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
                continue  # http:, https:, mailto:, ...
            where = f"{rel(page)}:{line_no}"
            path_part, _, anchor = target.partition("#")
            dest = page if not path_part else (page.parent / path_part).resolve()
            if not dest.exists():
                problems.append(f"{where}: link to a missing file: {target}")
                continue
            if anchor and dest.is_file() and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where}: no heading for #{anchor} in {rel(dest)}: {target}")


# === Commands ===


def shell_commands(lang, body):
    """(line_no, command text) for each command in a fenced shell block: continuations joined,
    heredoc bodies skipped, console output skipped."""
    commands = []
    pending, pending_no, heredoc = None, None, None
    for line_no, line in body:
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        if pending is None:
            if lang == "console":
                stripped = line.lstrip()
                if not stripped.startswith("$ "):
                    continue
                line = stripped[2:]
            pending, pending_no = line, line_no
        else:
            pending += " " + line.strip()
        if pending.rstrip().endswith("\\"):
            pending = pending.rstrip()[:-1]
            continue
        m = HEREDOC.search(pending)
        if m:
            heredoc = m.group(2)
        commands.append((pending_no, pending))
        pending = None
    if pending is not None:
        commands.append((pending_no, pending))
    return commands


def tokens(command):
    """Shell words of one command line, separators as their own words, comments dropped.
    Quoted words keep their quotes (non-POSIX mode), so flags inside them are not mistaken for
    options."""
    command = OPTIONAL.sub(lambda m: m.group(0).replace("|", " "), command)
    lexer = shlex.shlex(command, posix=False, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words = []
    try:
        for word in lexer:
            words.append(word)
    except ValueError as e:  # unbalanced quotes
        raise ValueError(f"cannot parse as shell: {e}") from None
    return words


def augur_invocations(command):
    """The argument lists (after `augur`) of every augur command in a shell line."""
    words = tokens(command)
    found, segment = [], []
    for word in words + [";"]:
        if word in SEPARATORS or set(word) <= set(";&|()"):
            while segment and ASSIGNMENT.match(segment[0]):
                segment.pop(0)
            if segment and (segment[0] == "augur" or segment[0].endswith("/augur")):
                found.append(segment[1:])
            segment = []
        else:
            segment.append(word)
    return found


class Binary:
    """`augur … --help`, asked once per subcommand path."""

    def __init__(self, path):
        self.path = path
        self.helps = {}

    def help(self, path):
        key = tuple(path)
        if key not in self.helps:
            run = subprocess.run(
                [self.path, *path, "--help"], capture_output=True, text=True, timeout=60, check=False
            )
            self.helps[key] = run.stdout if run.returncode == 0 else None
        return self.helps[key]

    def subcommands(self, path):
        """Subcommand names listed under `Commands:` in clap's help."""
        text = self.help(path) or ""
        names, inside = set(), False
        for line in text.splitlines():
            if re.match(r"^\S.*:\s*$", line):
                inside = line.strip().rstrip(":") in ("Commands", "Subcommands")
                continue
            m = re.match(r"^\s{2}([a-z][a-z0-9-]*)\b", line)
            if inside and m:
                names.add(m.group(1))
        names.discard("help")
        return names


def check_invocation(binary, args, where, problems):
    path = []
    for i, word in enumerate(args):
        if word.startswith("-"):
            break
        if word in binary.subcommands(path):
            path.append(word)
            continue
        if binary.subcommands(path):
            shown = " ".join(["augur", *path, word])
            problems.append(f"{where}: `{shown}`: no such subcommand")
            return
        break  # a positional argument of a leaf subcommand
    if binary.subcommands(path):
        problems.append(f"{where}: `{' '.join(['augur', *path])}` needs a subcommand")
        return
    text = binary.help(path)
    name = " ".join(["augur", *path])
    if text is None:
        problems.append(f"{where}: `{name} --help` failed")
        return
    for word in args[len(path):]:
        if word.startswith(("'", '"')):
            continue
        for flag in FLAG.findall(word.split("=", 1)[0] if word.startswith("--") else word):
            if flag in ("--help", "--version"):
                continue
            if not re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", text):
                problems.append(f"{where}: `{name}` has no {flag} (not in `{name} --help`)")


def check_commands(page, binary, problems):
    count = 0
    for block in split_blocks(page.read_text(encoding="utf-8")):
        if block[0] != "code" or block[2] not in SHELL_LANGS:
            continue
        for line_no, command in shell_commands(block[2], block[3]):
            where = f"{rel(page)}:{line_no}"
            try:
                invocations = augur_invocations(command)
            except ValueError as e:
                problems.append(f"{where}: {e}")
                continue
            for args in invocations:
                count += 1
                check_invocation(binary, args, where, problems)
    return count


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__.strip())
        return 0 if len(argv) == 2 else 2
    binary_path = Path(argv[1] if len(argv) == 2 else ROOT / "target" / "debug" / "augur")
    if not binary_path.is_file():
        print(f"check_docs: no augur binary at {binary_path} (build it, or pass its path)", file=sys.stderr)
        return 2
    binary = Binary(str(binary_path))
    if binary.help([]) is None:
        print(f"check_docs: `{binary_path} --help` failed", file=sys.stderr)
        return 2

    problems, commands = [], 0
    checked = pages()
    for page in checked:
        commands += check_commands(page, binary, problems)
        check_links(page, problems)
    if problems:
        print(f"check_docs: {len(problems)} problem(s) in {len(checked)} pages:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"check_docs: {len(checked)} pages, {commands} augur commands and every relative link are current")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
