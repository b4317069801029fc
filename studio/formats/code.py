"""Product logic of the Code tab: languages, prompt templates, reading code out of answers, syntax checks.

Owns: `LANGUAGES` and `language()` (lookup by id, alias or label), `MODES` and `render_prompt()` (the
prompt each mode sends), `extract_code_blocks()`, `explanation_text()` and `main_code()` (CommonMark-style
fenced blocks, also while an answer is still streaming) and `syntax_check()`, which parses and never runs
anything (for Python it also names undefined names, as pyflakes would, from the symbol table). Pure: no
gradio, torch or storage, so the UI, the API and tests all share it.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
import string
import symtable
from collections.abc import Callable
from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class Language:
    id: str
    label: str
    extension: str
    aliases: tuple[str, ...]  # lower-case fence info words; the first one is used to tag fences
    highlight: str | None  # a grammar gradio.Code knows, or None
    test_framework: str


# Dict order is the UI's dropdown order.
LANGUAGES: dict[str, Language] = {
    lang.id: lang
    for lang in (
        Language("python", "Python", ".py", ("python", "py", "python3"), "python", "pytest"),
        Language("javascript", "JavaScript", ".js", ("javascript", "js", "node"), "javascript", "Jest"),
        Language("typescript", "TypeScript", ".ts", ("typescript", "ts"), "typescript", "Jest"),
        Language("java", "Java", ".java", ("java",), None, "JUnit 5"),
        Language("c", "C", ".c", ("c",), "c", "assert.h checks run from a main()"),
        Language("cpp", "C++", ".cpp", ("cpp", "c++", "cxx", "cc"), "cpp", "GoogleTest"),
        Language("go", "Go", ".go", ("go", "golang"), None, "Go's testing package"),
        Language("rust", "Rust", ".rs", ("rust", "rs"), None, "Rust #[test] functions"),
        Language(
            "sql", "SQL", ".sql", ("sql", "sqlite", "postgresql", "mysql"), "sql", "SQL assertion queries"
        ),
        Language("bash", "Bash", ".sh", ("bash", "sh", "shell", "zsh"), "shell", "Bats"),
        Language("json", "JSON", ".json", ("json",), "json", "a JSON Schema"),
        Language("yaml", "YAML", ".yaml", ("yaml", "yml"), "yaml", "a JSON Schema"),
    )
}

_BY_NAME: dict[str, Language] = {
    name: lang for lang in LANGUAGES.values() for name in (lang.id, lang.label.lower(), *lang.aliases)
}


def language(name: str) -> Language:
    """A language by id, alias or label, case-insensitive."""
    found = _BY_NAME.get(name.strip().lower()) if isinstance(name, str) else None
    if found is None:
        known = ", ".join(lang.label for lang in LANGUAGES.values())
        raise ValueError(f"unknown language {name!r}; known: {known}")
    return found


_lookup = language  # for functions whose `language` parameter hides the function


@dataclass(frozen=True)
class Mode:
    id: str
    label: str
    # str.format template over PLACEHOLDERS. {error} is a whole paragraph: the error text in a fence, or
    # "It does not work as expected." when none was given, so templates read well either way.
    template: str
    input_label: str


PLACEHOLDERS = ("language", "fence", "input", "error", "source_language", "source_fence", "test_framework")


_WRITE = (
    "Write {language} code for this task:\n\n{input}\n\n"
    "Answer with the complete code in one fenced code block tagged ```{fence}, then a short explanation."
)
_EXPLAIN = (
    "Explain what this {language} code does: its purpose, how it works step by step, and anything surprising "
    "or risky in it.\n\n```{fence}\n{input}\n```\n\n"
    "Answer in prose; quote code in fenced blocks only where it helps."
)
_FIX = (
    "This {language} code has a bug.\n\n```{fence}\n{input}\n```\n\n{error}\n\nFind the cause and fix it. "
    "Answer with the corrected code in one fenced code block tagged ```{fence}, then a short explanation "
    "of what was wrong."
)
_TRANSLATE = (
    "Translate this {source_language} code to idiomatic {language}, keeping its behaviour the same."
    "\n\n```{source_fence}\n{input}\n```\n\n"
    "Answer with the complete {language} code in one fenced code block tagged ```{fence}, then a short note "
    "on any differences."
)
_TESTS = (
    "Write unit tests for this {language} code using {test_framework}. Cover the normal cases, the edge "
    "cases and the errors.\n\n```{fence}\n{input}\n```\n\n"
    "Answer with the complete test code in one fenced code block tagged ```{fence}, then a short list of "
    "what the tests cover."
)
MODES: dict[str, Mode] = {
    mode.id: mode
    for mode in (
        Mode("write", "Write code", _WRITE, "Describe the code to write"),
        Mode("explain", "Explain code", _EXPLAIN, "Code to explain"),
        Mode("fix", "Debug / fix", _FIX, "Code to fix"),
        Mode("translate", "Translate", _TRANSLATE, "Code to translate"),
        Mode("tests", "Write tests", _TESTS, "Code to test"),
        Mode("follow-up", "Follow-up", "{input}", "Follow-up request (e.g. 'make it iterative')"),
    )
}

_NO_ERROR = "It does not work as expected."
_BACKTICK_RUN = re.compile(r"`{3,}")
_TEMPLATE_FENCE = re.compile(r"^```(?!`)", re.MULTILINE)
_BLANK_LINES_AT_START = re.compile(r"\A(?:[ \t]*\n)+")


def _trim(text: str) -> str:
    """Blank lines around the text go; the first line's indentation (code!) stays."""
    return _BLANK_LINES_AT_START.sub("", text.replace("\r\n", "\n")).rstrip()


def _placeholders(template: str) -> set[str]:
    allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"the template has broken braces ({exc}); write {{{{ and }}}} for literal braces; "
            f"allowed placeholders: {allowed}"
        ) from None
    used: set[str] = set()
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(f"unknown placeholder {shown} in the template; allowed: {allowed}")
        used.add(name)
    return used


def render_prompt(
    mode: str,
    *,
    language: str,
    text: str,
    error: str = "",
    source_language: str | None = None,
    template: str | None = None,
) -> str:
    """The prompt for `mode` in `language`, from the mode's template or the user's edited `template`."""
    spec = MODES.get(mode)
    if spec is None:
        raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    target = _lookup(language)
    # A blank source (an empty dropdown) means none was chosen.
    source = _lookup(source_language) if source_language and source_language.strip() else None
    if spec.id == "translate":
        if source is None:
            raise ValueError("translating needs a source language (the language of the pasted code)")
        if source.id == target.id:
            raise ValueError(f"source and target are both {target.label}; choose another target language")
    body = _trim(text) if isinstance(text, str) else ""
    if not body:
        raise ValueError(f"nothing to send: the '{spec.input_label}' box is empty")
    template = spec.template if template is None else template
    used = _placeholders(template)
    if "input" not in used:
        raise ValueError("the template must contain {input}, where the text goes")
    if used & {"source_language", "source_fence"} and source is None:
        raise ValueError(
            "the template uses {source_language}/{source_fence} but no source language was given"
        )
    problem = _trim(error) if isinstance(error, str) else ""
    # Pasted code may itself contain ``` lines (a README, code that writes Markdown); a longer fence
    # around it keeps the prompt's blocks intact.
    longest = max((len(run) for run in _BACKTICK_RUN.findall(body + "\n" + problem)), default=0)
    ticks = "`" * max(3, longest + 1)
    if ticks != "```":
        template = _TEMPLATE_FENCE.sub(ticks, template)
    return template.format(
        language=target.label,
        fence=target.aliases[0],
        input=body,
        error=f"It fails with this error:\n\n{ticks}\n{problem}\n{ticks}" if problem else _NO_ERROR,
        source_language=source.label if source else "",
        source_fence=source.aliases[0] if source else "",
        test_framework=target.test_framework,
    )


@dataclass(frozen=True)
class CodeBlock:
    language: str | None  # Language id for a known alias, else the raw info word lower-cased; None if none
    text: str  # without the fences and without a trailing newline
    closed: bool  # False when the answer ended inside the block (streaming or truncated)


# A line that may open or close a fence: at most 3 spaces, then >= 3 backticks or tildes. Matched with
# its leading "\n" (the text gets one in front): a literal first character lets the regex engine skip
# ahead to each line start instead of trying `^` at every character, 3-4x faster on long answers.
_FENCE_LINE = re.compile(r"\n( {0,3})(`{3,}|~{3,})([^\n]*)")
_BY_ALIAS: dict[str, str] = {alias: lang.id for lang in LANGUAGES.values() for alias in lang.aliases}
_DEDENT = {n: re.compile(rf"^ {{1,{n}}}", re.MULTILINE) for n in (1, 2, 3)}
# The Code tab asks for the blocks and then the explanation of the same answer string; one scan serves
# both. Keyed on identity (the entry keeps its string alive, so the id cannot be reused).
_last_scan: tuple[str, tuple[str, list[tuple[CodeBlock, int, int]]]] | None = None


def _scan(markdown: str) -> tuple[str, list[tuple[CodeBlock, int, int]]]:
    """(a newline + the text with line endings normalised, [(block, start, end) of each block in it])."""
    global _last_scan
    last = _last_scan
    if last is not None and last[0] is markdown:
        return last[1]
    text = "\n" + (markdown.replace("\r\n", "\n").replace("\r", "\n") if "\r" in markdown else markdown)
    found: list[tuple[CodeBlock, int, int]] = []
    opening: re.Match[str] | None = None
    char, length = "", 0  # the open fence's character and length
    # Only fence-like lines reach Python; the rest is skipped by the regex, which keeps long streamed
    # answers cheap to re-scan on every update.
    for m in _FENCE_LINE.finditer(text):
        fence = m[2]
        if opening is None:
            if fence[0] == "`" and "`" in m[3]:  # CommonMark: not a fence (inline code like ```a`b)
                continue
            opening, char, length = m, fence[0], len(fence)
        elif fence[0] == char and len(fence) >= length and not m[3].strip(" \t"):
            found.append((_block(text, opening, m.start(), True), opening.start(), m.end()))
            opening = None
    if opening is not None:
        end = len(text) - 1 if text.endswith("\n") else len(text)
        found.append((_block(text, opening, end, False), opening.start(), len(text)))
    _last_scan = (markdown, (text, found))
    return text, found


def _block(text: str, opening: re.Match[str], end: int, closed: bool) -> CodeBlock:
    body = text[opening.end() + 1 : end]
    indent = len(opening[1])
    if indent:  # CommonMark: content loses up to as many spaces as the opening fence was indented
        body = _DEDENT[indent].sub("", body)
    words = opening[3].split()
    word = words[0].lower() if words else None
    lang = _BY_ALIAS.get(word, word) if word is not None else None
    return CodeBlock(language=lang, text=body, closed=closed)


def extract_code_blocks(markdown: str) -> list[CodeBlock]:
    """Every fenced code block of `markdown`, in order; the last one may be unterminated. Never raises."""
    if not isinstance(markdown, str):
        return []
    return [block for block, _, _ in _scan(markdown)[1]]


def explanation_text(markdown: str) -> str:
    """The answer without its fenced blocks (blank lines around it removed), for the explanation pane."""
    if not isinstance(markdown, str):
        return ""
    text, found = _scan(markdown)
    pieces: list[str] = []
    last = 0
    for _, start, end in found:
        pieces.append(text[last:start])
        last = end
    pieces.append(text[last:])
    # _trim, not strip(): a first line indented 4 spaces is an indented code block, and unindented
    # it could read as a fence.
    return _trim("\n\n".join(p.strip("\n") for p in pieces if p.strip()))


def main_code(blocks: list[CodeBlock], language: str) -> str:
    """The blocks in `language`; else the unlabelled ones; else all of them; joined by a blank line."""
    try:
        wanted: str = _lookup(language).id
    except ValueError:  # a language outside LANGUAGES still matches blocks tagged with its raw name
        wanted = language.strip().lower() if isinstance(language, str) else ""
    chosen = (
        [b for b in blocks if b.language == wanted] or [b for b in blocks if b.language is None] or blocks
    )
    return "\n\n".join(b.text for b in chosen)


@dataclass(frozen=True)
class SyntaxReport:
    ok: bool
    message: str
    line: int | None


# libyaml's loader when PyYAML was built with it (2x faster here); either way a *safe* loader.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(code: str) -> None:
    # Compose, not load: the syntax, anchors and aliases of every document are checked, but no Python
    # object is built, so application tags (CloudFormation's !Ref, Home Assistant's !secret) pass, as
    # they should, and nothing a tag names is ever constructed. Also twice as fast as loading.
    for _ in yaml.compose_all(code, Loader=_YAML_LOADER):
        pass


# Parsers only: ast.parse builds a syntax tree; nothing is compiled to bytecode, evaluated or run.
_PARSERS: dict[str, Callable[[str], object]] = {"python": ast.parse, "json": json.loads, "yaml": _parse_yaml}


def syntax_check(language: str, code: str) -> SyntaxReport | None:
    """Parse `code` (never execute it); None for languages without a checker and for empty code."""
    try:
        lang = _lookup(language)
    except ValueError:
        return None
    parse = _PARSERS.get(lang.id)
    if parse is None or not isinstance(code, str) or not code.strip():
        return None
    line: int | None = None
    try:
        parse(code)
    except SyntaxError as exc:
        line, problem = exc.lineno, exc.msg
    except json.JSONDecodeError as exc:
        line, problem = exc.lineno, exc.msg
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
    except (RecursionError, MemoryError):  # CPython's own parsers give up too: the code could not run
        problem = "too deeply nested to parse"
    except Exception as exc:  # never raise into the UI, whatever a parser makes of odd input
        problem = str(exc).strip() or type(exc).__name__
    else:
        unknown = undefined_names(code) if lang.id == "python" else []
        if not unknown:
            return SyntaxReport(ok=True, message=f"{lang.label} syntax OK", line=None)
        # Valid syntax that fails on its first run is no "OK": a misspelt or never imported name.
        line, name = unknown[0]
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        problem = f"undefined name {name!r}{more}"
    where = f"line {line}: " if line is not None else ""
    return SyntaxReport(ok=False, message=f"{where}{problem} ({lang.label})", line=line)


# Names every module has without defining them.
_MODULE_NAMES = frozenset(dir(builtins)) | {
    "__file__", "__name__", "__doc__", "__builtins__", "__spec__", "__loader__", "__package__", "__path__",
    "__annotations__", "__dict__", "__module__", "__qualname__", "__class__",
}  # fmt: skip


def undefined_names(code: str) -> list[tuple[int | None, str]]:
    """(line, name) of each name Python code reads but never defines, in order: the pyflakes check that
    catches most "runs, then fails" answers. From the compiler's symbol table; nothing is run.

    A star import defines unknown names, so code that has one is not checked."""
    try:
        table = symtable.symtable(code, "<answer>", "exec")
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    defined = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    if any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in ast.walk(tree)):
        return []
    read: set[str] = set()
    pending = [table]
    while pending:
        scope = pending.pop()
        pending.extend(scope.get_children())
        for symbol in scope.get_symbols():
            # Module-level names are implicit globals in functions, plain locals at the top.
            implicit = symbol.is_global() if scope.get_type() != "module" else not symbol.is_assigned()
            if symbol.is_referenced() and implicit and not symbol.is_declared_global():
                read.add(symbol.get_name())
    missing = read - defined - _MODULE_NAMES
    lines: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in missing:
            lines[node.id] = min(lines.get(node.id, node.lineno), node.lineno)
    return sorted(((lines.get(name), name) for name in missing), key=lambda item: (item[0] or 0, item[1]))
