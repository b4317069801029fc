"""The safety layer's commands: `studio safety log` and `studio safety check`.

Owns: their sub-parsers (`add_parsers`) and running them against a `Studio` (`run`); output for people
(text) and scripts (`--json`). Ignores: everything the service decides (checkers, policy, who may read).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

COMMANDS = ("safety",)
LOG_HEADER = (
    f"{'TIME':<20} {'USER':<12} {'TAB':<6} {'STAGE':<6} {'ACTION':<6} {'CATEGORY':<11} {'SCORE':>5}  CHECKER"
)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    safety = sub.add_parser("safety", help="the safety checks: audit log, checks by hand", parents=[common])
    inner = safety.add_subparsers(dest="safety_command", required=True)
    log = inner.add_parser("log", help="every flag, block and checker fault, newest first", parents=[common])
    log.add_argument("--limit", type=int, default=50)
    log.add_argument("--tab", choices=["chat", "code", "image", "speech", "music"])
    log.add_argument("--json", action="store_true")
    check = inner.add_parser(
        "check", help="run the configured checkers on a text or a picture", parents=[common]
    )
    check.add_argument("text", nargs="?", help="the text to check")
    check.add_argument("--image", help="a picture file to check instead")
    check.add_argument("--tab", default="chat", help="whose policy decides the verdict (default: chat)")
    check.add_argument("--json", action="store_true")


def run(studio: Any, args: argparse.Namespace) -> int:
    """Run one safety command; StudioError propagates to the caller (exit code 2 there)."""
    if args.safety_command == "log":
        rows = studio.safety_log(limit=args.limit, tab=args.tab)
        if args.json:
            print(json.dumps(rows, indent=2, ensure_ascii=False))
            return 0
        if not rows:
            print("no flags, blocks or checker faults yet")
            return 0
        print(LOG_HEADER)
        for r in rows:
            print(
                f"{r['created_at'][:19]:<20} {r['user'][:12]:<12} {r['tab']:<6} {r['stage']:<6} "
                f"{r['action']:<6} {r['category']:<11} {r['score']:>5.2f}  {r['checker']}"
                + (f" (generation {r['generation_id']})" if r["generation_id"] else "")
            )
        return 0
    result = studio.safety_check(text=args.text, image=args.image, tab=args.tab)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        if not result["checkers"]:
            print(f"no {result['media']} checker is configured (models.yaml safety.checkers)")
        for s in result["scores"]:
            mark = "over" if s["score"] >= s["threshold"] else "under"
            print(f"{s['checker']}: {s['category']} {s['score']:.4f} ({mark} the threshold {s['threshold']})")
        for f in result["faults"]:
            print(f"{f['checker']}: could not run: {f['reason']}")
        print(f"verdict under the {args.tab} tab's policy ({result['mode']}): {result['verdict']}")
    return 1 if result["verdict"] in ("block", "fault") else 0
