"""The Train commands: `studio train` (a run, progress on stderr), `studio train list`, `studio train show`.

Owns: their sub-parsers (`add_parsers`), turning flags into the run's hyperparameters, printing progress
lines to stderr while a run trains (Ctrl-C stops it within one optimizer step: status stopped, no
variant), and the results for people (text) and scripts (`--json`). Ignores: everything the service
decides (validation, data, training, storage).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from studio.train import METHODS

# flag -> hyperparameter name (the rest go through --param KEY=VALUE)
_FLAGS = {
    "epochs": "epochs",
    "max_steps": "max_steps",
    "lr": "learning_rate",
    "beta": "beta",
    "lora_r": "lora_r",
    "resolution": "resolution",
}


def add_parsers(sub: Any, common: argparse.ArgumentParser, param_type: Any) -> None:
    run = sub.add_parser(
        "train",
        help="train a LoRA variant on your votes (or: train list, train show RUN)",
        parents=[common],
        description="Train a LoRA variant of a chat model on your votes; it is then a model like any other.",
    )
    run.add_argument(
        "--method",
        choices=METHODS,
        help="sft: liked answers; dpo: A/B winners; kto: every thumb; diffusion-dpo: the Image tab's A/B "
        "winners (an image model); reward: a scorer for Best of n",
    )
    run.add_argument("--model", help="the base model id (a local chat model; diffusion-dpo: a diffusers one)")
    run.add_argument("--epochs", type=int)
    run.add_argument(
        "--max-steps", type=int, help="stop after this many optimizer steps (wins over --epochs)"
    )
    run.add_argument("--lr", type=float, help="learning rate")
    run.add_argument("--beta", type=float, help="DPO/KTO: how far the variant may move from its base")
    run.add_argument("--lora-r", type=int, help="LoRA rank (alpha follows as 2 r unless given)")
    run.add_argument(
        "--resolution", type=int, help="diffusion-dpo: picture size trained on (default: the model's)"
    )
    run.add_argument(
        "--param",
        action="append",
        type=param_type,
        default=[],
        metavar="KEY=VALUE",
        help="other settings: batch_size, grad_accum, max_length, lora_alpha, lora_dropout, "
        "target_modules, seed, eval_fraction; diffusion-dpo: beta_dpo (default 2500 for SD 1.x/2.x, "
        "5000 for SDXL)",
    )
    run.add_argument("--since", help="only votes from this date on (2026-11-01)")
    run.add_argument(
        "--tab",
        choices=["chat", "code", "image"],
        help="only this tab's votes (default: both; image for diffusion-dpo)",
    )
    run.add_argument("--all-users", action="store_true", help="everyone's votes (admins only)")
    run.add_argument("--json", action="store_true")
    more = run.add_subparsers(dest="train_command")
    listing = more.add_parser("list", help="past runs, newest first", parents=[common])
    listing.add_argument("--all-users", action="store_true", help="everyone's runs (admins only)")
    listing.add_argument("--json", action="store_true")
    show = more.add_parser("show", help="one run: settings, data, metrics, curve", parents=[common])
    show.add_argument("run_id", type=int)
    show.add_argument("--json", action="store_true")


def run(studio: Any, args: argparse.Namespace) -> int:
    """Run one Train command; StudioError propagates to the caller (exit code 2 there)."""
    if args.train_command == "list":
        return _list(studio, args)
    if args.train_command == "show":
        found = studio.train_run(args.run_id)
        print(json.dumps(found, indent=2) if args.json else _describe(found))
        return 0
    if not args.method or not args.model:
        print(
            "error: studio train needs --method and --model (or: train list, train show RUN)", file=sys.stderr
        )
        return 2
    params: dict[str, Any] = dict(args.param)
    params.update(
        {name: getattr(args, flag) for flag, name in _FLAGS.items() if getattr(args, flag) is not None}
    )
    updates = studio.train(
        method=args.method,
        model_id=args.model,
        params=params,
        tab=args.tab,
        since=args.since,
        all_users=args.all_users,
    )
    final = None
    try:
        for update in updates:
            _progress(update)
            final = update
    except KeyboardInterrupt:
        print("stopping after the current step...", file=sys.stderr)
        updates.close()  # the run stops within one optimizer step and is stored as stopped
        return 130
    assert final is not None and final.done
    if args.json:
        print(json.dumps(final.as_dict(), indent=2))
    elif final.variant:
        print(
            f"{final.variant}: {final.method} LoRA of {final.base} (run {final.run_id}), "
            f"adapter {final.adapter}"
        )
    if final.status != "ok":
        print(f"run {final.run_id} {final.status}: {final.error or 'no variant registered'}", file=sys.stderr)
        return 1
    return 0


_LAST: dict[str, Any] = {}


def _progress(update: Any) -> None:
    """One stderr line per change of phase or step."""
    key = (update.run_id, update.phase, update.step, tuple(update.notices))
    if _LAST.get("key") == key:
        return
    _LAST["key"] = key
    if update.notices:
        line = update.notices[0]
    elif update.phase == "training" and update.total:
        loss = update.metrics.get("loss")
        eta = f", about {update.eta_s:.0f} s left" if update.eta_s is not None else ""
        line = f"step {update.step}/{update.total}" + (f", loss {loss:.4f}" if loss is not None else "") + eta
    elif update.done:
        line = f"run {update.run_id}: {update.status} in {update.elapsed_s:.1f} s"
    else:
        line = f"run {update.run_id}: {update.phase}"
    print(line, file=sys.stderr, flush=True)


def _list(studio: Any, args: argparse.Namespace) -> int:
    runs = studio.train_runs(all_users=args.all_users)
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    for r in runs:
        data = f"{r['train_records']}+{r['eval_records']} records"
        outcome = r["variant"] or r["error"] or ""
        print(
            f"{r['run_id']:>5} {r['created_at']} {r['method']:<4} {r['base']:<24} {r['status']:<11} "
            f"{data:<16} {outcome}"
        )
    if not runs:
        print("no training runs yet: studio train --method dpo --model MODEL")
    return 0


def _describe(run: dict[str, Any]) -> str:
    lines = [f"run {run['run_id']}: {run['method']} of {run['base']}, {run['status']}"]
    if run["error"]:
        lines.append(f"  error: {run['error']}")
    if run["variant"]:
        gone = " (deleted)" if run["variant_deleted"] else ""
        lines.append(
            f"  variant: {run['variant']}{gone}" + (f", adapter {run['adapter']}" if run["adapter"] else "")
        )
    lines.append(
        f"  records: {run['train_records']} train, {run['eval_records']} held out; "
        f"hash {run['dataset_hash'][:16]}"
    )
    lines.append(f"  steps: {run['steps']} of {run['total_steps']}; {run['duration_s'] or 0:.1f} s")
    lines.append("  settings: " + ", ".join(f"{k}={v}" for k, v in run["params"].items()))
    for name, values in (("metrics", run["metrics"]), ("held out", run["eval_metrics"])):
        shown = {k: v for k, v in values.items() if "runtime" not in k and "per_second" not in k}
        if shown:
            lines.append(f"  {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items()))
    losses = [h["loss"] for h in run["history"] if "loss" in h]
    if losses:
        lines.append(f"  loss: {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} step(s)")
    return "\n".join(lines)
