"""The Library's commands: `studio history`, `studio export`, `studio prefer`, `studio leaderboard`.

Owns: their sub-parsers (`add_parsers`) and running them against a `Studio` (`run`); output for people
(text) and scripts (`--json`). Ignores: everything the service decides (validation, storage, formats).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from studio.export import FORMATS

COMMANDS = ("history", "export", "prefer", "leaderboard")
LEADERBOARD_HEADER = (
    f"{'TAB':<6} {'RANK':>4} {'MODEL':<24} {'BT':>7} {'95% CI':>15} {'ELO':>7} {'BATTLES':>7}"
)
LEADERBOARD_HEADER += f" {'WIN%':>5} UP/DOWN"
# The columns of `studio history`'s lines (widths as in `_history`).
HISTORY_HEADER = f"{'ID':>6} {'CREATED':<25} {'TAB':<5} {'MODEL':<20} {'STATUS':<7} {'VOTE':<4} PROMPT"


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    hist = sub.add_parser("history", help="past generations, newest first", parents=[common])
    hist.add_argument("--search", help="only generations whose prompt or text contains these words")
    hist.add_argument("--tab")
    hist.add_argument("--model")
    hist.add_argument("--rating", choices=["up", "down", "unrated"])
    hist.add_argument("--since", help="a date like 2026-11-01")
    hist.add_argument("--limit", type=int, default=20)
    hist.add_argument("--json", action="store_true")

    exp = sub.add_parser("export", help="write ratings and A/B votes as a TRL dataset", parents=[common])
    exp.add_argument("--format", required=True, choices=FORMATS)
    exp.add_argument("--out", required=True, help="folder to write (created)")
    exp.add_argument("--parquet", action="store_true", help="Parquet instead of JSONL")
    exp.add_argument("--tab")
    exp.add_argument("--since", help="only generations from this date on (2026-11-01)")
    exp.add_argument("--split", type=float, default=0.0, help="fraction for a test split, e.g. 0.1")
    exp.add_argument("--all-users", action="store_true", help="everyone's votes, not only yours")
    exp.add_argument(
        "--include-flagged", action="store_true", help="keep generations the safety check flagged"
    )
    exp.add_argument("--json", action="store_true")

    prefer = sub.add_parser("prefer", help="record an A/B vote: GEN_A beat GEN_B", parents=[common])
    prefer.add_argument("generation_a", type=int)
    prefer.add_argument("generation_b", type=int)
    verdict = prefer.add_mutually_exclusive_group()
    verdict.add_argument("--tie", action="store_true", help="equally good")
    verdict.add_argument("--both-bad", action="store_true", help="neither is acceptable")

    board = sub.add_parser(
        "leaderboard", help="models ranked by A/B votes (Bradley-Terry, 95 %% intervals)", parents=[common]
    )
    board.add_argument("--tab", help="one tab only (chat, code, image, ...)")
    board.add_argument("--votes-of", help="one user's votes (an admin may name anyone); default everyone's")
    board.add_argument("--json", action="store_true")


def run(studio: Any, args: argparse.Namespace) -> int:
    """Run one Library command; StudioError propagates to the caller (exit code 2 there)."""
    if args.command == "history":
        return _history(studio, args)
    if args.command == "leaderboard":
        return _leaderboard(studio, args)
    if args.command == "export":
        result = studio.export(
            args.format,
            args.out,
            parquet=args.parquet,
            tab=args.tab,
            since=args.since,
            split=args.split,
            all_users=args.all_users,
            include_flagged=args.include_flagged,
        )
        if args.json:
            print(
                json.dumps(
                    {
                        "format": result.format,
                        "folder": str(result.folder),
                        "counts": result.counts,
                        "files": [str(p) for p in result.files],
                        "skipped": result.skipped,
                    },
                    indent=2,
                )
            )
        else:
            print(result.summary())
        return 0
    choice = "tie" if args.tie else "both_bad" if args.both_bad else "a"
    studio.prefer(args.generation_a, args.generation_b, choice)
    words = {"a": f"{args.generation_a} preferred over {args.generation_b}", "tie": "a tie"}
    print(f"recorded: {words.get(choice, 'both bad')}")
    return 0


def _history(studio: Any, args: argparse.Namespace) -> int:
    page = studio.library(
        search=args.search,
        tab=args.tab,
        model=args.model,
        rating=args.rating,
        since=args.since,
        per_page=max(1, args.limit),
    )
    if args.json:
        print(json.dumps(page.items, indent=2, ensure_ascii=False))
        return 0
    if page.items:
        print(HISTORY_HEADER)
    for r in page.items:
        vote = {1: "+1", -1: "-1"}.get(r["rating"], "  ")
        text = " ".join(r["prompt"].split())[:60]
        head = f"{r['generation_id']:>6} {r['created_at']} {r['tab']:<5} {r['model']:<20}"
        print(f"{head} {r['status']:<7} {vote:<4} {text}")
    if page.total > len(page.items):
        print(f"({len(page.items)} of {page.total_text}; --limit shows more)")
    return 0


def _leaderboard(studio: Any, args: argparse.Namespace) -> int:
    rows = studio.leaderboard(tab=args.tab, votes_of=args.votes_of)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no votes yet: A/B votes and thumbs fill the leaderboard")
        return 0
    print(LEADERBOARD_HEADER)
    for r in rows:
        ci = "" if r["bt"] is None else f"{r['ci_low']:.0f}-{r['ci_high']:.0f}"
        bt = "" if r["bt"] is None else f"{r['bt']:.0f}"
        win = "" if r["win_rate"] is None else f"{100 * r['win_rate']:.0f}"
        rank = "" if r["rank"] is None else str(r["rank"])
        print(
            f"{r['tab']:<6} {rank:>4} {r['model']:<24} {bt:>7} {ci:>15} {r['elo']:>7.0f} {r['battles']:>7} "
            f"{win:>5} {r['thumbs_up']}/{r['thumbs_down']}"
        )
    return 0
