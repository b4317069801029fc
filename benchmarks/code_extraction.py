"""What reading code out of a Code-tab answer costs: extraction, main code, explanation and syntax check.

Per answer it times what the Code tab does with a finished answer, in one go:
`extract_code_blocks` + `main_code` + `explanation_text` (the "extract" columns, which the tab also pays on
every streamed update) and then `syntax_check` on the main code (the "check" columns, paid once, at the
end). Answers are built in code, for Python, JSON and YAML:

  short         a sentence, 1 block of 10 lines, a sentence
  typical       an explanation of about 15 lines of prose and 1 block of 60 lines
  long          3 blocks of 400 lines together (the main code, a shell snippet, more main code), with prose;
                (for JSON the two main blocks joined are not one JSON document: the check stops at the 2nd)
  pathological  2000 lines of nested fences (```` around ``` lines), tilde fences holding backtick ones,
                lines that look like fences but are not (indented 4 spaces, an info string with a
                backtick, a closing fence with text after it), and an unterminated block at the end

Every case runs `--reps` times (interleaved round-robin across cases, so slow drifts of the machine's load
hit every case alike); the table shows medians and 95th percentiles in microseconds. Target: the whole
thing at most 1 ms per answer (median).

    .venv/bin/python benchmarks/code_extraction.py [--reps 2000]
    .venv/bin/python benchmarks/code_extraction.py --smoke      # 5 reps
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable

import yaml
from _common import add_smoke, load_note, median, pct, print_targets, table

from studio.formats.code import explanation_text, extract_code_blocks, main_code, syntax_check

TARGET_MS = 1.0
LANGS = ("python", "json", "yaml")
PROSE = (
    "The function walks the list once and keeps a running total, so it runs in linear time. "
    "Edge cases: an empty list gives 0, and negative numbers are handled like any other value."
)


def python_code(lines: int, seed: int = 0) -> str:
    """Exactly `lines` lines of valid Python: whole functions, then constants to make up the count."""
    out: list[str] = []
    i = seed
    while len(out) + 9 <= lines:
        out += [
            f"def step_{i}(items: list[int], limit: int = {i + 3}) -> dict[str, int]:",
            f'    """Count and sum the items below {i + 3}."""',
            "    total, count = 0, 0",
            "    for item in items:",
            "        if item < limit:  # skip the large ones",
            "            total += item * 2 if item % 2 else item",
            "            count += 1",
            '    return {"total": total, "count": count}',
            "",
        ]
        i += 1
    out += [f"LIMIT_{i}_{k} = {k} * 2  # a constant" for k in range(lines - len(out))]
    return "\n".join(out)


def data(lines: int) -> list[dict[str, object]]:
    # About 9 lines per record once dumped; a few more records than needed, trimmed by the caller.
    return [
        {"id": i, "name": f"item {i}", "tags": ["a", "b"], "price": i * 1.5, "stock": {"shop": i, "web": 2}}
        for i in range(lines // 6 + 1)
    ]


def json_code(lines: int, seed: int = 0) -> str:
    records = data(lines)
    while len(text := json.dumps(records, indent=2).splitlines()) > lines and len(records) > 1:
        records.pop()
    return "\n".join(text)


def yaml_code(lines: int, seed: int = 0) -> str:
    records = data(lines)
    while len(text := yaml.safe_dump(records, sort_keys=False).splitlines()) > lines and len(records) > 1:
        records.pop()
    return "\n".join(text)


CODE: dict[str, Callable[..., str]] = {"python": python_code, "json": json_code, "yaml": yaml_code}


def block(lang: str, body: str) -> str:
    return f"```{lang}\n{body}\n```"


def answers(lang: str) -> dict[str, str]:
    code = CODE[lang]
    shell = "\n".join(f"echo step {i} && ./run --verbose --item {i}" for i in range(40))
    pathological: list[str] = []
    while sum(part.count("\n") + 1 for part in pathological) < 1990:
        pathological += [
            "Here is a README that shows a fence:",
            "````markdown",
            "```" + lang,
            code(6),
            "```",
            "````",
            "~~~text",
            "```not closed by tildes",
            "~~~",
            "    ```indented four spaces: not a fence",
            "``` a`b is inline code, not a fence",
            "```" + lang,
            code(8),
            "``` trailing text: not a closing fence",
            "```",
        ]
    pathological += ["And the answer was cut off here:", "```" + lang, code(5)]
    return {
        "short": f"Here you go:\n\n{block(lang, code(10))}\n\nThat is all.",
        "typical": "\n".join([PROSE] * 8) + f"\n\n{block(lang, code(60))}\n\n" + "\n".join([PROSE] * 7),
        "long": f"{PROSE}\n\n{block(lang, code(240))}\n\nRun it:\n\n{block('bash', shell)}\n\n"
        f"And the rest:\n\n{block(lang, code(120, seed=50))}\n\n{PROSE}",
        "pathological": "\n".join(pathological),
    }


def run_once(markdown: str, lang: str) -> tuple[float, float]:
    """(extract ms, check ms) for one answer."""
    t0 = time.perf_counter()
    blocks = extract_code_blocks(markdown)
    code = main_code(blocks, lang)
    explanation_text(markdown)
    t1 = time.perf_counter()
    syntax_check(lang, code)
    t2 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=2000, help="timed runs per case (default 2000)")
    add_smoke(ap)
    args = ap.parse_args()
    if args.smoke:
        args.reps = 5
    print(f"start: {load_note()}", flush=True)

    cases = [(name, lang, md) for lang in LANGS for name, md in answers(lang).items()]
    for name, lang, md in cases:  # what each case holds, and one warm-up run
        blocks = extract_code_blocks(md)
        report = syntax_check(lang, main_code(blocks, lang))
        print(
            f"  {name:12} {lang:6} {md.count(chr(10)) + 1:5} lines {len(md):7} chars {len(blocks):4} blocks, "
            f"last closed: {blocks[-1].closed!s:5}, check: {report.message if report else '-'}"
        )
    timings: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(cases))}
    gc.collect()
    for _ in range(args.reps):
        for i, (_, lang, md) in enumerate(cases):
            timings[i].append(run_once(md, lang))

    rows = []
    checks: dict[str, bool | None] = {}
    worst_extract = 0.0
    for i, (name, lang, md) in enumerate(cases):
        extract = [e for e, _ in timings[i]]
        check = [c for _, c in timings[i]]
        total = [e + c for e, c in timings[i]]
        stats = [f(xs) * 1e3 for xs in (extract, check, total) for f in (median, lambda v: pct(v, 0.95))]
        rows.append([f"{name} ({lang})", md.count("\n") + 1, *stats])
        label = f"{name} ({lang}): median <= {TARGET_MS:g} ms per answer ({median(total):.3f} ms)"
        checks[label] = median(total) <= TARGET_MS
        worst_extract = max(worst_extract, median(extract))
    label = f"extract alone, every case (paid per streamed update): median <= {TARGET_MS:g} ms"
    checks[f"{label} (worst {worst_extract:.3f} ms)"] = worst_extract <= TARGET_MS
    headers = ["answer", "lines", "extract µs", "p95", "check µs", "p95", "total µs", "p95"]
    print()
    print(table(headers, rows, f"== per answer, {args.reps} reps each =="))
    print(
        "\nextract = extract_code_blocks + main_code + explanation_text (also paid per streamed update);"
        "\ncheck = syntax_check of the main code (ast.parse, json.loads or a YAML safe loader), once."
    )
    print(f"\nend: {load_note()}")
    print_targets(checks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
