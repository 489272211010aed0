"""make mutation: mutmut over the code whose mistakes cost users data or secrets.

For each module below, lists the mutants mutmut 3 makes of it (with mutmut's own
mutation code, so the names are the ones ``mutmut run`` gives), runs exactly those with
``mutmut run`` (configured in pyproject.toml's ``[tool.mutmut]``: which files, which
tests), then prints killed/survived per module and every mutant not killed, as
``file:line  old -> new``.

    python bench/mutation_report.py                  # every module (what make mutation runs)
    python bench/mutation_report.py errors policy    # only these
    python bench/mutation_report.py --report         # print the last run's results again

A mutant counts as killed when a test failed or timed out with it. ``EQUIVALENT`` lists
the mutants that change no observable behaviour (each with the reason; bench/MUTATION.md
repeats them): they are not run, and are shown but left out of the score. Everything
mutmut keeps is in mutants/ (git-ignored); a run starts from an empty one.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path("mutants")
SCOPE_FILE = STATE / "surefetch-scope.json"
LOG_FILE = STATE / "mutmut-run.log"
TARGET = 85.0


@dataclass(frozen=True)
class Scope:
    """What of a module is mutated: whole files, or some functions and the body cap."""

    files: tuple[str, ...]
    #: Mangled functions (mutmut's ``x_name`` / ``xǁClassǁname``) taken whole; all if empty.
    functions: tuple[str, ...] = ()
    #: Also the lines of the Client methods that enforce max_body (see body_cap_lines).
    body_cap: bool = False
    why: str = ""


SCOPES: dict[str, Scope] = {
    "errors": Scope(("src/surefetch/errors.py",), why="classify: the kind every failure gets"),
    "policy": Scope(("src/surefetch/policy.py",), why="retry decisions, limits, timeouts"),
    "redact": Scope(("src/surefetch/redact.py",), why="credentials never shown"),
    "sinks": Scope(
        ("src/surefetch/sinks/base.py", "src/surefetch/sinks/jsonl.py"),
        why="batching, resume, torn-line repair, --retry-failed",
    ),
    "client": Scope(
        ("src/surefetch/client.py",),
        functions=("x__read_body",),
        body_cap=True,
        why="the body cap: _read_body and the max_body checks of the Client's exchange",
    ),
}

#: (mangled function, fnmatch pattern; line before; line after) -> why the mutant changes
#: nothing observable.
EQUIVALENT: dict[tuple[str, str, str], str] = {
    (
        "surefetch.redact.x_redact_url",
        'return url if "@" not in url else redact_text(url)',
        'return url if ("@" not in url) and False else redact_text(url)',
    ): 'redact_text returns its argument itself when it holds no "@": the same object.',
    (
        "surefetch.policy.xǁRetryPolicyǁdelay",
        'method: str = "GET",',
        'method: str = "get",',
    ): "delay compares method.upper(), so the default's case cannot matter.",
    (
        "surefetch.errors.x__is_body_error",
        'reason = link.message.split(":\\n", 1)[0]',
        'reason = link.message.split(":\\n", )[0]',
    ): "the first piece of a split is the same whatever the maxsplit.",
    (
        "surefetch.errors.x__is_body_error",
        'reason = link.message.split(":\\n", 1)[0]',
        'reason = link.message.split(":\\n", 2)[0]',
    ): "the first piece of a split is the same whatever the maxsplit.",
    (
        "surefetch.errors.x__is_reset",
        'tail = str(exc).rsplit(". ", 1)[-1]',
        'tail = str(exc).rsplit(". ", )[-1]',
    ): "the last piece of an rsplit is the same whatever the maxsplit.",
    (
        "surefetch.errors.x__is_reset",
        'tail = str(exc).rsplit(". ", 1)[-1]',
        'tail = str(exc).rsplit(". ", 2)[-1]',
    ): "the last piece of an rsplit is the same whatever the maxsplit.",
    (
        "surefetch.errors.x__from_aiohttp",
        "f\" (next: {exc.history[-1].headers.get('Location', '?')})\"",
        "f\" (next: {exc.history[-1].headers.get('location', '?')})\"",
    ): "response headers are a case-insensitive CIMultiDictProxy.",
    (
        "surefetch.errors.x__from_aiohttp",
        "f\" (next: {exc.history[-1].headers.get('Location', '?')})\"",
        "f\" (next: {exc.history[-1].headers.get('LOCATION', '?')})\"",
    ): "response headers are a case-insensitive CIMultiDictProxy.",
    (
        "surefetch.errors.x__from_aiohttp",
        'error.content_type = exc.history[-1].headers.get("Content-Type")',
        'error.content_type = exc.history[-1].headers.get("content-type")',
    ): "response headers are a case-insensitive CIMultiDictProxy.",
    (
        "surefetch.errors.x__from_aiohttp",
        'error.content_type = exc.history[-1].headers.get("Content-Type")',
        'error.content_type = exc.history[-1].headers.get("CONTENT-TYPE")',
    ): "response headers are a case-insensitive CIMultiDictProxy.",
    (
        "surefetch.client.xǁClientǁ*",
        'exc.content_type = resp.headers.get("Content-Type")',
        'exc.content_type = resp.headers.get("content-type")',
    ): "response headers are a case-insensitive CIMultiDictProxy.",
    (
        "surefetch.client.xǁClientǁ*",
        'exc.content_type = resp.headers.get("Content-Type")',
        'exc.content_type = resp.headers.get("CONTENT-TYPE")',
    ): "response headers are a case-insensitive CIMultiDictProxy.",
    (
        "surefetch.redact.x_shown_url",
        'return url.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")',
        'return url.encode("UTF-8", "surrogateescape").decode("utf-8", "backslashreplace")',
    ): "codec names are looked up case-insensitively: UTF-8 is utf-8.",
    (
        "surefetch.redact.x_shown_url",
        'return url.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")',
        'return url.encode("utf-8", "surrogateescape").decode("UTF-8", "backslashreplace")',
    ): "codec names are looked up case-insensitively: UTF-8 is utf-8.",
    (
        "surefetch.errors.x__over_tls",
        'key = getattr(exc, "_conn_key", None)  # aiohttp keeps it there, and has no accessor',
        'key = getattr(exc, "_conn_key", )  # aiohttp keeps it there, and has no accessor',
    ): "every ClientConnectorError sets _conn_key in its __init__: the default is never used.",
    (
        "surefetch.errors.x__over_tls",
        'return bool(getattr(key, "is_ssl", False))',
        'return bool(getattr(key, "is_ssl", None))',
    ): "bool(None) is False.",
    (
        "surefetch.errors.x__over_tls",
        'return bool(getattr(key, "is_ssl", False))',
        'return bool(getattr(key, "is_ssl", ))',
    ): "the key is always aiohttp's ConnectionKey, which has is_ssl: the default is never used.",
    (
        "surefetch.errors.x__over_tls",
        'return bool(getattr(key, "is_ssl", False))',
        'return bool(getattr(key, "is_ssl", True))',
    ): "the key is always aiohttp's ConnectionKey, which has is_ssl: the default is never used.",
    (
        "surefetch.sinks.base.x_retry_filter",
        "everything = False",
        "everything = None",
    ): "it is only ever tested for truth, and None is false like False.",
    (
        "surefetch.sinks.base.x_retry_filter",
        'elif len(word) == 3 and word[0] in "12345" and word[1:] == "xx":',
        'elif len(word) == 3 and word[0] in "XX12345XX" and word[1:] == "xx":',
    ): "word is lower-cased, so its first character is never the upper-case X added.",
}


def equivalent(function: str, before: str, after: str) -> str | None:
    """Why this mutation changes nothing, if EQUIVALENT says so."""
    for (pattern, was, now), why in EQUIVALENT.items():
        if (was, now) == (before, after) and fnmatch.fnmatchcase(function, pattern):
            return why
    return None


@dataclass
class Mutant:
    name: str
    module: str
    function: str
    line: int | None
    before: str
    after: str
    status: str = "not checked"
    equivalent: str | None = None

    def where(self, path: str) -> str:
        return (
            f"{path.removeprefix('src/surefetch/')}:{self.line if self.line is not None else '?'}"
        )


@dataclass
class FileScope:
    path: str
    module: str
    mutants: list[Mutant] = field(default_factory=list)


# -- which mutants ------------------------------------------------------------------


def function_lines(source: str) -> dict[str, tuple[int, int]]:
    """Mangled function name -> (line of its ``def``, last line), as mutmut names them."""
    from mutmut.mutation.trampoline_templates import mangle_function_name

    spans: dict[str, tuple[int, int]] = {}

    def visit(body: list[ast.stmt], cls: str | None) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                key = mangle_function_name(name=node.name, class_name=cls)
                spans[key] = (node.lineno, node.end_lineno or node.lineno)
            elif isinstance(node, ast.ClassDef) and cls is None:
                visit(node.body, node.name)

    visit(ast.parse(source).body, None)
    return spans


def body_cap_lines(source: str) -> dict[str, set[int]]:
    """Mangled Client method -> its lines that enforce max_body: the ``try`` whose
    handler catches BodyTooLargeError, and the statement just before it (the
    Content-Length), wherever the exchange with the server lives this week."""
    from mutmut.mutation.trampoline_templates import mangle_function_name

    found: dict[str, set[int]] = {}
    client = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef) and node.name == "Client"
    )
    for node in client.body:
        if not isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
            continue
        lines: set[int] = set()
        for parent in ast.walk(node):
            for body in (getattr(parent, attr, None) for attr in ("body", "orelse", "finalbody")):
                if not isinstance(body, list):
                    continue
                for i, stmt in enumerate(body):
                    if isinstance(stmt, ast.Try) and any(
                        isinstance(h.type, ast.Name) and h.type.id == "BodyTooLargeError"
                        for h in stmt.handlers
                    ):
                        first = body[i - 1] if i else stmt
                        lines.update(range(first.lineno, (stmt.end_lineno or stmt.lineno) + 1))
        if lines:
            found[mangle_function_name(name=node.name, class_name="Client")] = lines
    if not found:
        raise SystemExit("bench/mutation_report.py: no max_body check found in Client")
    return found


def changed_lines(orig: list[str], mutant: list[str]) -> tuple[int | None, str, str]:
    """The first line the mutation changes (index into ``orig``), and the lines before
    and after, white space trimmed (several lines are joined with " / ")."""
    matcher = difflib.SequenceMatcher(a=orig, b=mutant, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            continue
        before = " / ".join(line.strip() for line in orig[a0:a1])
        after = " / ".join(line.strip() for line in mutant[b0:b1])
        return a0, before, after
    return None, "", ""


def list_mutants(path: str, scope: Scope) -> FileScope:
    """Every mutant mutmut makes of ``path`` that ``scope`` takes, with where it is."""
    from mutmut.mutation.file_mutation import mutate_file_contents
    from mutmut.utils.format_utils import get_mutant_name, mangled_name_from_mutant_name

    source = Path(path).read_text()
    mutated = mutate_file_contents(path, source)
    code = mutated.code.splitlines()
    spans = mutated.line_span_by_function_name
    defs = function_lines(source)
    regions = body_cap_lines(source) if scope.body_cap else {}
    module = get_mutant_name(Path(path), "x").rpartition(".")[0]
    result = FileScope(path=path, module=module)

    def text(name: str) -> list[str]:
        span = spans[name]
        return code[span.start - 1 : span.end]

    def def_index(lines: list[str]) -> int:
        return next(
            i for i, line in enumerate(lines) if line.lstrip().startswith(("def ", "async def "))
        )

    for name in mutated.mutant_names:
        function = mangled_name_from_mutant_name(name)
        whole = not scope.functions and not scope.body_cap
        if not (whole or function in scope.functions or function in regions):
            continue
        # The copies are named after the mutant; give both the function's own name back.
        real = function.rpartition("ǁ")[2] if "ǁ" in function else function[2:]
        orig = [
            line.replace(f"{function}__mutmut_orig", real)
            for line in text(f"{function}__mutmut_orig")
        ]
        mutant = [line.replace(name, real) for line in text(name)]
        at, before, after = changed_lines(orig, mutant)
        line = None
        if at is not None and function in defs:
            line = defs[function][0] + at - def_index(orig)
            if source.splitlines()[line - 1].strip() != orig[at].strip():
                line = None  # the copy does not line up with the file: say so, not a wrong line
        if function in regions and line not in regions[function]:
            continue
        full = get_mutant_name(Path(path), name)
        result.mutants.append(
            Mutant(
                name=full,
                module=module,
                function=f"{module}.{function}",
                line=line,
                before=before,
                after=after,
                equivalent=equivalent(f"{module}.{function}", before, after),
            )
        )
    return result


# -- running ------------------------------------------------------------------------

_RESULT_LINE = re.compile(r"^\S+ surefetch\.\S+__mutmut_\d+$")


def run_mutmut(names: list[str]) -> int:
    """``mutmut run NAMES``, its output shown as it comes (without the list of every
    mutant's result at the end: the report says it better) and kept in the log."""
    mutmut = Path(sys.executable).with_name("mutmut")
    proc = subprocess.Popen(
        [str(mutmut), "run", *names], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    pending = b""
    tty = sys.stdout.isatty()
    with LOG_FILE.open("wb") as log:
        while chunk := proc.stdout.read1(65536):
            log.write(chunk)
            pending += chunk
            *done, pending = re.split(rb"(?<=[\r\n])", pending)
            for piece in done:
                line = piece.decode("utf-8", "replace").strip()
                if _RESULT_LINE.match(line) or line in ("Mutant results", "-" * 14):
                    continue
                if piece.endswith(b"\r") and not tty:
                    continue  # a spinner's frame: only a terminal shows it in place
                sys.stdout.buffer.write(piece)
            sys.stdout.flush()
        sys.stdout.buffer.write(pending)
    return proc.wait()


def load_statuses(files: list[FileScope]) -> None:
    from mutmut.stats import status_by_exit_code

    for scope in files:
        meta = STATE / f"{scope.path}.meta"
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        for mutant in scope.mutants:
            if mutant.name in codes:
                mutant.status = status_by_exit_code[codes[mutant.name]]
            else:
                mutant.status = "not made"  # the source changed between listing and running


# -- the report ---------------------------------------------------------------------

CAUGHT = {"killed", "timeout", "caught by type check"}


def readable(function: str) -> str:
    """``surefetch.sinks.jsonl.xǁJsonlSinkǁopen`` -> ``JsonlSink.open``."""
    name = function.rpartition(".")[2]
    if "ǁ" in name:
        _, cls, method = name.split("ǁ")
        return f"{cls}.{method}"
    return name.removeprefix("x_")


def report(modules: dict[str, list[FileScope]], seconds: float | None) -> None:
    """Print every mutant not killed, by module, then the table of killed/survived."""
    for module, files in modules.items():
        rest = [(f, m) for f in files for m in f.mutants if m.status not in CAUGHT]
        if not rest:
            continue
        print()
        print(f"{module}: {SCOPES[module].why}")
        # No test of the selection calls these functions in-process: one line each.
        untested: dict[tuple[str, str], list[Mutant]] = {}
        for f, m in rest:
            if m.status == "no tests" and not m.equivalent:
                untested.setdefault((f.path, m.function), []).append(m)
        firsts = {where: min(group, key=lambda m: m.line or 0) for where, group in untested.items()}
        for (path, function), first in sorted(
            firsts.items(), key=lambda i: (i[0][0], i[1].line or 0)
        ):
            count = len(untested[path, function])
            print(f"  {first.where(path)}  no tests: {count} mutants of {readable(function)}")
        rest = [(f, m) for f, m in rest if m.status != "no tests" or m.equivalent]
        for f, m in sorted(rest, key=lambda fm: (fm[0].path, fm[1].line or 0)):
            status = f"equivalent: {m.equivalent}" if m.equivalent else m.status
            print(f"  {m.where(f.path)}  {status}  ({m.name.rpartition('.')[2]})")
            print(f"      {m.before}  ->  {m.after}")

    print()
    header = f"{'module':<8} {'mutants':>7} {'killed':>6} {'survived':>8} {'no tests':>8}"
    header += f" {'other':>5} {'equiv.':>6} {'score':>7}"
    print(header)
    print("-" * len(header))
    for module, files in modules.items():
        mutants = [m for f in files for m in f.mutants]
        count = Counter("equivalent" if m.equivalent else m.status for m in mutants)
        caught = sum(count[s] for s in CAUGHT)
        other = len(mutants) - caught - count["survived"] - count["no tests"] - count["equivalent"]
        scored = len(mutants) - count["equivalent"]
        score = 100.0 * caught / scored if scored else 100.0
        flag = "" if score >= TARGET else f"  < {TARGET:.0f} %"
        row = f"{module:<8} {len(mutants):>7} {caught:>6} {count['survived']:>8}"
        row += f" {count['no tests']:>8} {other:>5} {count['equivalent']:>6} {score:>6.1f}%{flag}"
        print(row)
    print("killed: a test failed or timed out; no tests: no selected test calls it in-process;")
    print("equiv.: changes nothing, not run and not scored; score = killed / (mutants - equiv.)")
    if seconds is not None:
        print(f"mutation run took {seconds / 60:.1f} min")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(SCOPES))
    parser.add_argument("--report", action="store_true", help="print the last run's results")
    args = parser.parse_args()
    unknown = set(args.modules) - set(SCOPES)
    if unknown:
        parser.error(f"unknown module {', '.join(sorted(unknown))} (modules: {', '.join(SCOPES)})")
    os.chdir(ROOT)
    if args.report:
        saved = json.loads(SCOPE_FILE.read_text())
        modules = {
            module: [
                FileScope(f["path"], f["module"], [Mutant(**m) for m in f["mutants"]])
                for f in files
            ]
            for module, files in saved.items()
        }
        load_statuses([f for files in modules.values() for f in files])
        report(modules, None)
        return 0

    chosen = args.modules or list(SCOPES)
    shutil.rmtree(STATE, ignore_errors=True)  # a run starts fresh: other files change too
    STATE.mkdir()
    modules = {m: [list_mutants(path, SCOPES[m]) for path in SCOPES[m].files] for m in chosen}
    SCOPE_FILE.write_text(
        json.dumps(
            {
                module: [
                    {"path": f.path, "module": f.module, "mutants": [vars(m) for m in f.mutants]}
                    for f in files
                ]
                for module, files in modules.items()
            },
            ensure_ascii=False,
            indent=1,
        )
    )
    mutants = [m for files in modules.values() for f in files for m in f.mutants]
    # Equivalent mutants would survive every test, each costing the longest run: skip them.
    names = [m.name for m in mutants if not m.equivalent]
    skipped = len(mutants) - len(names)
    print(
        f"{len(names)} mutants in {', '.join(chosen)} ({skipped} known to be equivalent"
        f" not run); mutmut's log: {LOG_FILE}"
    )
    started = time.monotonic()
    code = run_mutmut(names)
    seconds = time.monotonic() - started
    if code != 0:
        # Usually the tests fail without any mutant (mutmut runs them clean first): say which.
        log = LOG_FILE.read_text("utf-8", "replace").splitlines()
        for line in log:
            if line.startswith(("FAILED ", "ERROR ")):
                print(line, file=sys.stderr)
        print(f"mutmut run failed (exit status {code}); see {LOG_FILE}", file=sys.stderr)
        return code
    load_statuses([f for files in modules.values() for f in files])
    report(modules, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
