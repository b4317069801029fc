"""Code tab logic: languages, prompts per mode, fenced-block extraction (property-based) and syntax checks."""

from __future__ import annotations

import ast
import builtins
import os
import re
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from studio.formats import code as code_format
from studio.formats.code import (
    LANGUAGES,
    MODES,
    PLACEHOLDERS,
    CodeBlock,
    explanation_text,
    extract_code_blocks,
    language,
    main_code,
    render_prompt,
    syntax_check,
)

try:  # markdown-it-py comes with gradio: a reference CommonMark parser to compare against
    from markdown_it import MarkdownIt
except ImportError:  # pragma: no cover
    MarkdownIt = None  # type: ignore[assignment,misc]

# Modest example counts keep this file at a few seconds; no deadline, so a busy machine cannot fail it.
FAST = settings(max_examples=200, deadline=None)

# --- languages -------------------------------------------------------------------------------------


def test_languages_in_dropdown_order() -> None:
    order = [
        "python",
        "javascript",
        "typescript",
        "java",
        "c",
        "cpp",
        "go",
        "rust",
        "sql",
        "bash",
        "json",
        "yaml",
    ]
    assert list(LANGUAGES)[: len(order)] == order


def test_language_metadata_is_consistent() -> None:
    gradio_grammars = {"python", "c", "cpp", "javascript", "typescript", "sql", "shell", "json", "yaml"}
    seen: set[str] = set()
    for lang in LANGUAGES.values():
        assert lang.extension.startswith(".") and lang.test_framework
        assert lang.highlight is None or lang.highlight in gradio_grammars
        assert all(a == a.lower() and " " not in a for a in lang.aliases)
        assert lang.label.lower() in lang.aliases  # so ```Python and ```C++ fences resolve too
        assert not seen & set(lang.aliases), "an alias names two languages"
        seen |= set(lang.aliases)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("python", "python"),
        ("PY", "python"),
        ("python3", "python"),
        ("Python", "python"),
        ("js", "javascript"),
        ("TypeScript", "typescript"),
        ("c++", "cpp"),
        ("C++", "cpp"),
        ("golang", "go"),
        ("rs", "rust"),
        ("sh", "bash"),
        ("shell", "bash"),
        ("yml", "yaml"),
        (" JSON ", "json"),
    ],
)
def test_language_lookup_by_id_alias_or_label(name: str, expected: str) -> None:
    assert language(name).id == expected


def test_unknown_language_lists_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown language 'cobol'; known: Python, JavaScript, TypeScript, "
    ):
        language("cobol")


# --- prompts ---------------------------------------------------------------------------------------

CODE = "def add(a, b):\n    return a - b"


def test_every_mode_has_a_label_an_input_label_and_a_valid_template() -> None:
    assert list(MODES) == ["write", "explain", "fix", "translate", "tests", "follow-up"]
    for mode in MODES.values():
        assert mode.label and mode.input_label and "{input}" in mode.template
        fields = {name for _, name, _, _ in string.Formatter().parse(mode.template) if name}
        assert fields <= set(PLACEHOLDERS)


def test_write_prompt() -> None:
    prompt = render_prompt("write", language="rust", text="  a function that reverses a string\n")
    assert "Write Rust code" in prompt and "a function that reverses a string" in prompt
    assert "one fenced code block tagged ```rust" in prompt and "explanation" in prompt


def test_explain_prompt_fences_the_code() -> None:
    prompt = render_prompt("explain", language="Python", text=CODE)
    assert "Explain" in prompt and "Python" in prompt
    assert f"```python\n{CODE}\n```" in prompt


def test_fix_prompt_with_an_error() -> None:
    error = "AssertionError: add(1, 2) == -1"
    prompt = render_prompt("fix", language="py", text=CODE, error=error)
    assert f"```python\n{CODE}\n```" in prompt and f"```\n{error}\n```" in prompt
    assert "tagged ```python" in prompt and "Python" in prompt


def test_fix_prompt_without_an_error_reads_well() -> None:
    prompt = render_prompt("fix", language="python", text=CODE, error="   \n")
    assert "It does not work as expected." in prompt and "error:" not in prompt
    assert "{" not in prompt and "\n\n\n" not in prompt


def test_translate_prompt_names_both_languages() -> None:
    prompt = render_prompt("translate", language="go", text=CODE, source_language="Python")
    assert "Translate this Python code to idiomatic Go" in prompt
    assert f"```python\n{CODE}\n```" in prompt and "tagged ```go" in prompt


@pytest.mark.parametrize(
    ("lang", "framework"),
    [
        ("python", "pytest"),
        ("javascript", "Jest"),
        ("java", "JUnit 5"),
        ("cpp", "GoogleTest"),
        ("go", "Go's testing package"),
        ("rust", "Rust #[test] functions"),
        ("bash", "Bats"),
    ],
)
def test_tests_prompt_asks_for_the_language_framework(lang: str, framework: str) -> None:
    prompt = render_prompt("tests", language=lang, text=CODE)
    fence = LANGUAGES[lang].aliases[0]
    assert f"using {framework}" in prompt and f"```{fence}\n{CODE}\n```" in prompt
    assert LANGUAGES[lang].label in prompt


def test_follow_up_is_the_message_as_typed() -> None:
    assert render_prompt("follow-up", language="python", text="make it iterative\n") == "make it iterative"


def test_code_indentation_and_windows_line_ends() -> None:
    prompt = render_prompt("explain", language="python", text="\r\n\r\n    x = 1\r\n    y = 2\r\n\r\n")
    assert "```python\n    x = 1\n    y = 2\n```" in prompt and "\r" not in prompt


def test_code_containing_fences_gets_a_longer_fence() -> None:
    readme = "Install:\n```bash\npip install x\n```"
    prompt = render_prompt("explain", language="yaml", text=readme)
    assert f"````yaml\n{readme}\n````" in prompt
    error = "````\nbad\n````"
    prompt = render_prompt("fix", language="python", text=CODE, error=error)
    assert f"`````python\n{CODE}\n`````" in prompt and f"`````\n{error}\n`````" in prompt
    assert "tagged ```python" in prompt  # the instruction about the answer's fence is unchanged


def test_edited_templates() -> None:
    template = "In {language} ({fence}), using {test_framework}:\n{input}\n{{literal braces}}"
    prompt = render_prompt("tests", language="ts", text="f()", template=template)
    assert prompt == "In TypeScript (typescript), using Jest:\nf()\n{literal braces}"
    prompt = render_prompt(
        "translate",
        language="java",
        text="x",
        source_language="js",
        template="{source_language}->{language}: {input} {source_fence}",
    )
    assert prompt == "JavaScript->Java: x javascript"
    assert render_prompt("fix", language="c", text="x", template="{input}\n{error}").endswith("as expected.")
    # The UI may send a blank source language outside Translate: it means none.
    assert render_prompt("write", language="c", text="x", source_language="") == render_prompt(
        "write", language="c", text="x"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"mode": "refactor"},
            r"unknown mode 'refactor'; modes: write, explain, fix, translate, tests, follow-up",
        ),
        ({"language": "cobol"}, r"unknown language 'cobol'; known: Python"),
        ({"mode": "translate", "source_language": "cobol"}, r"unknown language 'cobol'"),
        ({"mode": "translate"}, r"translating needs a source language"),
        ({"mode": "translate", "source_language": " "}, r"translating needs a source language"),
        ({"mode": "translate", "source_language": "py"}, r"source and target are both Python"),
        ({"text": ""}, r"nothing to send: the 'Code to explain' box is empty"),
        ({"text": " \n\t\r\n"}, r"the 'Code to explain' box is empty"),
        ({"mode": "follow-up", "text": "  "}, r"box is empty"),
        (
            {"template": "Explain {code}: {input}"},
            r"unknown placeholder \{code\}.*allowed: \{language\}, \{fence\}",
        ),
        ({"template": "{input.upper}"}, r"unknown placeholder \{input.upper\}"),
        ({"template": "{input!r}"}, r"unknown placeholder \{input!r\}"),
        ({"template": "{input:>10}"}, r"unknown placeholder \{input:>10\}"),
        ({"template": "{}{input}"}, r"unknown placeholder \{\}"),
        ({"template": "{input} {"}, r"broken braces.*allowed placeholders: \{language\}"),
        ({"template": "{input} }"}, r"broken braces"),
        ({"template": "Explain this code"}, r"must contain \{input\}"),
        ({"template": "{source_language}: {input}"}, r"no source language was given"),
    ],
)
def test_prompt_errors_are_clear(kwargs: dict, message: str) -> None:
    args = {"mode": "explain", "language": "python", "text": CODE} | kwargs
    with pytest.raises(ValueError, match=message):
        render_prompt(args.pop("mode"), **args)


# --- extraction: examples --------------------------------------------------------------------------

ANSWER = """Here is the function:

```python
def add(a, b):
    return a + b
```

Run it with:

~~~bash
python add.py
~~~

It returns the sum."""


def test_extracts_blocks_in_order() -> None:
    blocks = extract_code_blocks(ANSWER)
    assert blocks == [
        CodeBlock("python", "def add(a, b):\n    return a + b", True),
        CodeBlock("bash", "python add.py", True),
    ]
    assert main_code(blocks, "python") == "def add(a, b):\n    return a + b"
    assert main_code(blocks, "Bash") == "python add.py"
    assert explanation_text(ANSWER) == "Here is the function:\n\nRun it with:\n\nIt returns the sum."


def test_commonmark_details() -> None:
    md = "   ```` Python title='x'\n   a\n  b\n c\n    d\n  `````  \nafter"
    assert extract_code_blocks(md) == [CodeBlock("python", "a\nb\nc\n d", True)]
    assert extract_code_blocks("    ```python\n    x\n") == []  # 4 spaces: an indented block, not a fence
    assert extract_code_blocks("``` a`b\nx\n```") == [CodeBlock(None, "", False)]  # 1st line: no fence
    assert extract_code_blocks("~~~ a`b\nx\n~~~") == [CodeBlock("a`b", "x", True)]
    assert extract_code_blocks("```Kotlin\nx\n``` not a close\n```") == [
        CodeBlock("kotlin", "x\n``` not a close", True)
    ]
    assert extract_code_blocks("``\nx\n``") == [] and extract_code_blocks("") == []
    assert extract_code_blocks("```\n```\n```js\n\n```") == [
        CodeBlock(None, "", True),
        CodeBlock("javascript", "", True),
    ]


def test_streaming_answer_ends_inside_a_block() -> None:
    partial = ANSWER[: ANSWER.index("a + b") + 1]
    assert extract_code_blocks(partial) == [CodeBlock("python", "def add(a, b):\n    return a", False)]
    assert extract_code_blocks("text\n```py\n") == [CodeBlock("python", "", False)]
    assert extract_code_blocks("text\n```py") == [CodeBlock("python", "", False)]
    assert explanation_text("text\n```py\nx = 1") == "text"


def test_windows_line_ends() -> None:
    assert extract_code_blocks(ANSWER.replace("\n", "\r\n")) == extract_code_blocks(ANSWER)
    assert explanation_text(ANSWER.replace("\n", "\r\n")) == explanation_text(ANSWER)


def test_main_code_falls_back_to_unlabelled_then_all_blocks() -> None:
    py, bare, sh = CodeBlock("python", "p", True), CodeBlock(None, "u", True), CodeBlock("bash", "s", True)
    assert main_code([py, bare, sh, py], "python") == "p\n\np"
    assert main_code([py, bare, sh, bare], "go") == "u\n\nu"
    assert main_code([py, sh], "go") == "p\n\ns"
    assert main_code([CodeBlock("kotlin", "k", True), py], "Kotlin") == "k"  # outside LANGUAGES: raw name
    assert main_code([], "python") == ""


def test_non_text_input_does_not_raise() -> None:
    assert extract_code_blocks(None) == [] and explanation_text(None) == ""  # type: ignore[arg-type]


# --- extraction: properties ------------------------------------------------------------------------

ALIAS_TO_ID = {alias: lang.id for lang in LANGUAGES.values() for alias in lang.aliases}
OPENER = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")


def opens_a_fence(line: str) -> bool:
    m = OPENER.fullmatch(line)
    return m is not None and not (m[1][0] == "`" and "`" in m[2])


def fence_like(line: str) -> bool:
    return re.match(r"\s*(```|~~~)", line) is not None


LINE = st.text(st.characters(exclude_characters="\r\n", exclude_categories=("Cs",)), max_size=30)
SAFE_LINES = st.lists(LINE.filter(lambda s: not fence_like(s)), max_size=6)
LANGUAGE_WORDS = st.sampled_from([*ALIAS_TO_ID, "Python", "C++", "JavaScript", "kotlin", "Text", "zig"])
INFO = st.one_of(
    st.none(), LANGUAGE_WORDS, st.tuples(LANGUAGE_WORDS, st.sampled_from([' title="a.py"', " {x}"]))
)
FENCE = st.tuples(st.sampled_from("`~"), st.integers(3, 6))
FENCE_HEAVY = st.lists(
    st.sampled_from(
        ["```", "````", "~~~", "~~~~", "`", "~", " ", "   ", "\n", "\r\n", "\r", "py", "a`b", "x"]
    ),
    max_size=60,
).map("".join)


def expected_language(info: str | None) -> str | None:
    if not info or not info.split():
        return None
    word = info.split()[0].lower()
    return ALIAS_TO_ID.get(word, word)


def info_text(info: str | tuple[str, str] | None) -> str:
    return "" if info is None else info if isinstance(info, str) else "".join(info)


@st.composite
def documents(draw: st.DrawFn, *, last_open: bool = False) -> tuple[str, list[CodeBlock], list[str]]:
    """(markdown, the blocks it must give, its prose lines) built from prose and fenced blocks."""
    parts: list[str] = []
    blocks: list[CodeBlock] = []
    prose_lines: list[str] = []
    count = draw(st.integers(1 if last_open else 0, 4))
    for i in range(count):
        prose = draw(SAFE_LINES)
        prose_lines += prose
        parts += prose
        char, length = draw(FENCE)
        info = info_text(draw(INFO))
        indent = draw(st.integers(0, 3))
        body = draw(SAFE_LINES)
        parts.append(" " * indent + char * length + info)
        parts += body
        dedented = [line[min(indent, len(line) - len(line.lstrip(" "))) :] for line in body]
        is_open = last_open and i == count - 1
        if not is_open:
            parts.append(" " * draw(st.integers(0, 3)) + char * draw(st.integers(length, length + 2)) + "  ")
        blocks.append(CodeBlock(expected_language(info), "\n".join(dedented), not is_open))
    if not last_open:
        tail = draw(SAFE_LINES)
        prose_lines += tail
        parts += tail
    return "\n".join(parts), blocks, prose_lines


@FAST
@given(st.one_of(st.text(), FENCE_HEAVY))
def test_extraction_never_raises_and_explanation_has_no_fences(markdown: str) -> None:
    blocks = extract_code_blocks(markdown)
    main_code(blocks, "python")
    explanation = explanation_text(markdown)
    assert not any(opens_a_fence(line) for line in explanation.split("\n"))
    assert all(b.closed for b in blocks[:-1])


@FAST
@given(documents(), st.booleans())
def test_round_trip(doc: tuple[str, list[CodeBlock], list[str]], crlf: bool) -> None:
    markdown, expected, _ = doc
    assert extract_code_blocks(markdown.replace("\n", "\r\n") if crlf else markdown) == expected


@st.composite
def nested(draw: st.DrawFn) -> tuple[int, str]:
    """(outer fence length, a body of prose, shorter backtick fences and tilde fences of any length)."""
    outer = draw(st.integers(4, 7))
    line = st.one_of(
        LINE.filter(lambda s: not fence_like(s)),
        st.builds(
            lambda n, w: "`" * min(n, outer - 1) + w, st.integers(3, 9), st.sampled_from(["", "py", " js"])
        ),
        st.builds(lambda n, w: "~" * n + w, st.integers(3, 9), st.sampled_from(["", "py"])),
    )
    return outer, "\n".join(draw(st.lists(line, max_size=10)))


@FAST
@given(nested())
def test_backtick_lines_inside_a_longer_fence_come_back_verbatim(case: tuple[int, str]) -> None:
    outer, body = case
    markdown = f"Nested:\n{'`' * outer}markdown\n{body}\n{'`' * outer}\ndone"
    assert extract_code_blocks(markdown) == [CodeBlock("markdown", body, True)]
    assert explanation_text(markdown) == "Nested:\n\ndone"


@FAST
@given(documents(last_open=True), st.booleans())
@example((" ```\n\n ", [CodeBlock(None, "\n", False)], []), False)  # a last line of indentation only
def test_unterminated_last_block_keeps_its_full_text(doc: tuple, newline_at_end: bool) -> None:
    markdown, expected, _ = doc
    if not newline_at_end and markdown.endswith("\n"):
        # the document's last line break ends the line, it is not an empty last line (a last line of
        # indentation only is a line: it dedents to "" and the text keeps the line break before it)
        expected[-1] = CodeBlock(expected[-1].language, expected[-1].text.removesuffix("\n"), False)
    blocks = extract_code_blocks(markdown + ("\n" if newline_at_end else ""))
    assert blocks == expected and not blocks[-1].closed


@FAST
@given(FENCE, st.integers(3, 8), SAFE_LINES, st.booleans())
def test_tildes_and_backticks_do_not_close_each_other(
    fence: tuple[str, int], other_length: int, body: list[str], close: bool
) -> None:
    char, length = fence
    other = "~" if char == "`" else "`"
    inner = [*body, other * other_length, *body]
    markdown = "\n".join([char * length + "py", *inner, *([char * length] if close else [])]) + "\n"
    assert extract_code_blocks(markdown) == [CodeBlock("python", "\n".join(inner), close)]


@FAST
@given(documents(), LANGUAGE_WORDS)
def test_main_code_and_explanation_are_consistent(doc: tuple, chosen: str) -> None:
    markdown, expected, prose = doc
    blocks = extract_code_blocks(markdown)
    code = main_code(blocks, chosen)
    for block in blocks:
        assert all(line in markdown for line in block.text.split("\n"))
    wanted = ALIAS_TO_ID.get(chosen.lower(), chosen.lower())
    chosen_blocks = (
        [b for b in expected if b.language == wanted]
        or [b for b in expected if b.language is None]
        or expected
    )
    assert code == "\n\n".join(b.text for b in chosen_blocks)
    explanation = explanation_text(markdown)
    explanation_lines = set(explanation.split("\n"))
    fence_lines = {line for line in markdown.split("\n") if fence_like(line)}
    assert not explanation_lines & fence_lines
    assert all(line.strip() in explanation for line in prose)


def without_trailing_blank_lines(text: str) -> str:
    lines = text.split("\n")
    while lines and not lines[-1].strip(" "):
        lines.pop()
    return "\n".join(lines)


@pytest.mark.skipif(MarkdownIt is None, reason="markdown-it-py (a gradio dependency) is not installed")
@FAST
@given(FENCE_HEAVY)
def test_agrees_with_a_commonmark_parser(markdown: str) -> None:
    assert MarkdownIt is not None
    tokens = [t for t in MarkdownIt("commonmark").parse(markdown) if t.type == "fence"]
    theirs = [(expected_language(t.info), t.content.removesuffix("\n")) for t in tokens]
    blocks = extract_code_blocks(markdown)
    ours = [(b.language, b.text) for b in blocks]
    if blocks and not blocks[-1].closed:  # markdown-it drops blank lines at the end of an unclosed block
        ours[-1] = (ours[-1][0], without_trailing_blank_lines(ours[-1][1]))
        theirs[-1] = (theirs[-1][0], without_trailing_blank_lines(theirs[-1][1]))
    assert ours == theirs


# --- syntax checks ---------------------------------------------------------------------------------


def test_python_syntax() -> None:
    assert syntax_check("python", "def f(x):\n    return x\n") == code_format.SyntaxReport(
        True, "Python syntax OK", None
    )
    report = syntax_check("py", "x = 1\ny = 2\ndef f(:\n    pass\n")
    assert report is not None and not report.ok and report.line == 3
    assert report.message.startswith("line 3: ") and report.message.endswith("(Python)")
    assert syntax_check("python", "print('a'") == code_format.SyntaxReport(
        False, "line 1: '(' was never closed (Python)", 1
    )


def test_json_and_yaml_syntax() -> None:
    assert syntax_check("json", '{"a": [1, 2]}') == code_format.SyntaxReport(True, "JSON syntax OK", None)
    report = syntax_check("JSON", '{\n  "a": 1,\n}')
    assert report is not None and not report.ok and report.line == 3 and report.message.endswith("(JSON)")
    assert syntax_check("yml", "a: 1\n---\nb: [2]\n") == code_format.SyntaxReport(
        True, "YAML syntax OK", None
    )
    report = syntax_check("yaml", "a: 1\nb: [2\nc: 3\n")
    assert (
        report is not None and not report.ok and report.line is not None and report.message.endswith("(YAML)")
    )
    report = syntax_check("yaml", "a: 1\n b: 2\n")
    assert report is not None and report.line == 2 and report.message.startswith("line 2: ")


def test_yaml_is_checked_for_syntax_not_for_python_types() -> None:
    # Application tags and values that only fail when turned into Python objects are valid YAML.
    for code in ("Value: !Ref MyBucket\nName: !Sub '${AWS::StackName}-x'", "a: 2001-02-30", "? [a]\n: b"):
        assert syntax_check("yaml", code) == code_format.SyntaxReport(True, "YAML syntax OK", None)


def test_no_checker_or_no_code_gives_none() -> None:
    assert syntax_check("rust", "fn main() {") is None
    assert syntax_check("cobol", "DISPLAY 'HI'.") is None
    assert syntax_check("python", "  \n") is None


def test_odd_input_never_raises() -> None:
    for lang, code in [
        ("python", "-" * 100_000 + "1"),
        ("python", "(" * 500),
        ("python", "a\x00b"),
        ("json", "[" * 100_000),
        ("yaml", "[" * 100_000),
        ("yaml", "a: *missing"),
        ("yaml", "a: &x 1\nb: &x 2\n"),
    ]:
        report = syntax_check(lang, code)
        assert report is not None and not report.ok and report.message


@FAST
@given(st.sampled_from(["python", "json", "yaml"]), st.one_of(st.text(), FENCE_HEAVY))
def test_syntax_check_never_raises(lang: str, code: str) -> None:
    report = syntax_check(lang, code)
    assert report is None or (report.ok == (report.line is None and report.message.endswith("syntax OK")))


def test_code_is_only_parsed_never_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "pwned"
    calls: list[str] = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd) or 0)
    for name in ("exec", "eval"):
        monkeypatch.setattr(builtins, name, lambda *a, **k: calls.append("exec/eval"))
    python = f"__import__('os').system('touch {target}')\nopen({str(target)!r}, 'w').write('x')"
    assert syntax_check("python", python) == code_format.SyntaxReport(True, "Python syntax OK", None)
    # Well-formed YAML; the safe loader only composes it, so no object of any tag is ever built.
    report = syntax_check("yaml", f"!!python/object/apply:os.system ['touch {target}']")
    assert report == code_format.SyntaxReport(True, "YAML syntax OK", None)
    assert not target.exists() and calls == []


def test_module_never_calls_exec_eval_compile_or_an_unsafe_yaml_loader() -> None:
    source = Path(code_format.__file__).read_text(encoding="utf-8")
    calls = [node.func for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]
    names = {f.id for f in calls if isinstance(f, ast.Name)}
    yaml_calls = {f.attr for f in calls if isinstance(f, ast.Attribute) and ast.unparse(f.value) == "yaml"}
    assert not names & {"exec", "eval", "compile", "__import__"}
    assert yaml_calls <= {"compose_all"} and "yaml.Loader" not in source and "UnsafeLoader" not in source
    assert code_format._YAML_LOADER in {yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)}
