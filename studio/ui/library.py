"""The Library tab: every generation of every tab, searched and filtered, reopened, re-run, voted on,
deleted; the leaderboard; exports for training.

Owns: wiring those controls to `Studio.library`, `rerun_settings`, `rate`, `delete_generations`,
`leaderboard` and `export_archive`. "Re-run with these settings" and "Open conversation" fill the other
tabs' controls, found by their elem ids (`<tab>-model`, `<tab>-prompt` and the ids in RERUN below are the
contract a tab keeps with the Library) and switch to that tab. `gr.State` keeps generation ids only.
Ignores: queries, files and validation (the service's).
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from studio.service import Studio, StudioError
from studio.service.library import FORMATS, REASONS
from studio.ui.conversation import PARAM_NAMES, conversation_choices, render, user_of
from studio.ui.leaderboard import leaderboard_panel

COLUMNS = ["#", "when", "tab", "model", "status", "vote", "prompt", "output"]
# A row's status in words: a failed or stopped run must not look like an answer.
STATUS_WORDS = {
    "ok": "done",
    "error": "failed",
    "stopped": "stopped",
    "interrupted": "interrupted",
    "blocked": "blocked (safety)",
}
VOTE_WORDS = {1: "👍 liked", -1: "👎 disliked"}  # the emoji with words, for screen readers and search
TAB_IDS = {"speech": "audio", "music": "audio"}  # generation tabs shown inside another UI tab
IMAGE_NAMES = ("negative_prompt", "steps", "guidance", "width", "height", "seed", "scheduler", "strength")
AUDIO_NAMES = {
    "speech": ("speed", "voice", "seed"),
    "music": ("duration", "guidance", "temperature", "top_k", "seed"),
}
CONVERSATION_IDS = {"chat": ("conversation", "chatbot"), "code": ("code-conversation", "code-chatbot")}


def _short(text: str, limit: int = 80) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def status_text(item: dict[str, Any]) -> str:
    """'done', 'failed', ...; a turn regenerated, edited or continued away says 'replaced' too."""
    word = STATUS_WORDS.get(item["status"], item["status"])
    return word if item.get("active", True) else f"{word}, replaced"


def details_text(item: dict[str, Any]) -> str:
    """A row in full (Markdown): what it made or why it failed, then how it ran: seed, every parameter,
    tokens, time and speed."""
    vote = VOTE_WORDS.get(item["rating"], "no vote")
    lines = [
        f"**#{item['generation_id']}** · {item['tab']} · {item['model']} · {status_text(item)} · {vote}",
        f"**Prompt:** {item['prompt']}",
    ]
    if not item.get("active", True):
        lines.append("*Replaced: this answer was regenerated, edited or continued; the conversation shows "
                     "the newer one.*")  # fmt: skip
    if item["text"]:
        lines.append(f"**Output:**\n\n{item['text']}")
    if item["error"]:
        lines.append(f"**Error:** {item['error']}")
    run = [f"seed {item['seed']}" if item.get("seed") is not None else "no seed"]
    tokens = item.get("prompt_tokens"), item.get("completion_tokens")
    if tokens != (None, None):
        run.append(f"{tokens[0] or 0} prompt + {tokens[1] or 0} new tokens")
    if item.get("duration_s") is not None:
        first = item.get("first_token_s")
        run.append(f"{item['duration_s']:.2f} s" + (f" (first token after {first:.2f} s)" if first else ""))
    if item.get("tokens_per_s"):
        run.append(f"{item['tokens_per_s']} tokens/s")
    lines.append("**Run:** " + " · ".join(run))
    params = {k: v for k, v in (item.get("params") or {}).items() if v not in (None, "", {}, [])}
    if params:
        lines.append("**Parameters:** " + " · ".join(f"{k} `{v}`" for k, v in sorted(params.items())))
    return "\n\n".join(lines)


def rerun_values(settings: dict[str, Any]) -> dict[str, Any]:
    """elem id -> value that makes a tab ready to run a past generation again (a fresh conversation)."""
    tab, p = settings["tab"], settings["params"]
    if tab in ("chat", "code"):
        values: dict[str, Any] = {f"{tab}-{name}": p[name] for name in PARAM_NAMES if name in p}
        if tab == "chat":
            values |= {"model": settings["model"], "message": settings["prompt"], "conversation": None}
            values |= {"system-prompt": p.get("system_prompt", ""), "chatbot": []}
        else:
            code = p.get("code") or {}
            values |= {"code-model": settings["model"], "code-input": code.get("input") or settings["prompt"]}
            values |= {"code-conversation": None, "code-chatbot": []}
            values |= {f"code-{k}": code[k] for k in ("mode", "language") if code.get(k)}
        return values
    values = {f"{tab}-model": settings["model"], f"{tab}-prompt": settings["prompt"]}
    if tab == "image":
        values |= {f"image-{n.replace('_prompt', '')}": p[n] for n in IMAGE_NAMES if n in p}
        values["image-num-images"] = 1  # the stored seed reproduces this one picture
    if tab in AUDIO_NAMES:
        values |= {f"{tab}-{n.replace('_', '-')}": p[n] for n in AUDIO_NAMES[tab] if p.get(n) is not None}
        values["audio-tabs"] = tab  # the Speech or Music section inside the Audio tab
    return values


def build_library_tab(studio: Studio, app: gr.Blocks, tabs: gr.Tabs) -> None:
    found = {b.elem_id: b for b in app.blocks.values() if getattr(b, "elem_id", None)}
    all_tabs = sorted({t for m in studio.models() for t in m.tabs})
    page_ids = gr.State([])  # generation ids of the rows shown, in order
    selected = gr.State(None)
    with gr.Row():
        search = gr.Textbox(label="Search prompts and answers", scale=3, elem_id="library-search")
        tab = gr.Dropdown([("All tabs", "")] + [(t, t) for t in all_tabs], value="", label="Tab")
        model = gr.Dropdown(
            [("All models", "")] + [(m.id, m.id) for m in studio.models()], value="", label="Model"
        )
        rating = gr.Dropdown(
            [("Any vote", ""), (VOTE_WORDS[1], "up"), (VOTE_WORDS[-1], "down"), ("No vote", "unrated")],
            value="",
            label="Vote",
        )
        since = gr.Textbox(label="Since (2026-11-01)", elem_id="library-since")
    with gr.Row():
        find_btn = gr.Button("Search", variant="primary", elem_id="library-find")
        prev_btn = gr.Button("◀ Newer", size="sm")
        page = gr.Number(value=1, precision=0, label="Page", minimum=1, elem_id="library-page")
        next_btn = gr.Button("Older ▶", size="sm")
        count = gr.Markdown(elem_id="library-count")
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="library-table")
    with gr.Row():
        with gr.Column(scale=3):
            details = gr.Markdown("Select a row to see it in full.", elem_id="library-details")
        with gr.Column(scale=2):
            picture = gr.Image(label="Picture", visible=False, interactive=False, elem_id="library-picture")
            audio = gr.Audio(label="Audio", visible=False, interactive=False, elem_id="library-audio")
    with gr.Row():
        open_btn = gr.Button("Open conversation", size="sm", elem_id="library-open")
        rerun_btn = gr.Button("Re-run with these settings", size="sm", elem_id="library-rerun")
        delete_btn = gr.Button("Delete", size="sm", variant="stop", elem_id="library-delete")
    with gr.Row():
        reasons = gr.CheckboxGroup(
            list(REASONS),
            label="Why (optional): helpful, accurate, well written and creative go with 👍 Like; "
            "inaccurate, unsafe, off-topic and low quality with 👎 Dislike",
            elem_id="library-reasons",
        )
        comment = gr.Textbox(label="Comment (optional)", max_length=2000, elem_id="library-comment")
        up_btn = gr.Button("👍 Like", size="sm", elem_id="library-up")
        down_btn = gr.Button("👎 Dislike", size="sm", elem_id="library-down")
        clear_btn = gr.Button("Clear vote", size="sm", elem_id="library-clear-vote")
    leaderboard_panel(studio)
    with gr.Accordion("Export for training", open=False, elem_id="library-export"):
        with gr.Row():
            fmt = gr.Dropdown(list(FORMATS), value="sft", label="Format (TRL)", elem_id="library-format")
            ex_tab = gr.Dropdown([("All tabs", "")] + [(t, t) for t in all_tabs], value="", label="Tab")
            ex_since = gr.Textbox(label="Since (optional)")
            split = gr.Slider(0, 0.5, value=0, step=0.05, label="Test split")
            parquet = gr.Checkbox(label="Parquet (default JSONL)")
        export_btn = gr.Button("Export", variant="primary", elem_id="library-export-run")
        export_note = gr.Markdown(elem_id="library-export-note")
        export_file = gr.File(label="Dataset (zip)", interactive=False, elem_id="library-export-file")

    filters = [search, tab, model, rating, since, page]

    def listing(request: gr.Request, *values: Any) -> tuple[Any, ...]:
        text, tab_, model_, vote, when, number = values
        try:
            result = studio.library(
                search=text, tab=tab_, model=model_, rating=vote, since=when, page=int(number or 1),
                user=user_of(request),
            )  # fmt: skip
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        rows = [
            [i["generation_id"], i["created_at"].replace("T", " ")[:16], i["tab"], i["model"], status_text(i),
             VOTE_WORDS.get(i["rating"], ""), _short(i["prompt"]),
             _short(i["text"] or ", ".join(f.rsplit("/", 1)[-1] for f in i["files"]) or (i["error"] or ""))]
            for i in result.items
        ]  # fmt: skip
        pages = str(result.pages) if result.total_text.isdigit() else f"{result.pages}+"
        note = f"{result.total_text} generation(s), page {result.page} of {pages}"
        return (
            pd.DataFrame(rows, columns=COLUMNS),
            [i["generation_id"] for i in result.items],
            note,
            result.page,
        )

    list_outputs = [table, page_ids, count, page]
    find_btn.click(lambda *a: (*a[:5], 1), filters, filters, api_visibility="private").then(
        listing, filters, list_outputs, api_name="library"
    )
    search.submit(listing, filters, list_outputs, api_visibility="private")
    for button, step in ((prev_btn, -1), (next_btn, 1)):
        button.click(
            lambda *a, step=step: (*a[:5], max(1, int(a[5] or 1) + step)),
            filters,
            filters,
            api_visibility="private",
        ).then(listing, filters, list_outputs, api_visibility="private")
    app.load(listing, filters, list_outputs, api_visibility="private")

    def show(gid: int | None, request: gr.Request) -> tuple[Any, Any, Any]:
        if gid is None:
            return "Select a row to see it in full.", gr.Image(visible=False), gr.Audio(visible=False)
        try:
            item = studio.library_item(gid, user=user_of(request))
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        files = item["files"]
        is_audio = bool(files) and files[0].rsplit(".", 1)[-1] in ("wav", "mp3", "flac", "ogg")
        return (
            details_text(item),
            gr.Image(
                value=files[0] if files and not is_audio else None, visible=bool(files) and not is_audio
            ),
            gr.Audio(value=files[0] if is_audio else None, visible=is_audio),
        )

    def select(ids: list[int], event: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
        row = event.index[0] if isinstance(event.index, list | tuple) else event.index
        gid = ids[row] if isinstance(row, int) and 0 <= row < len(ids) else None
        return (gid, *show(gid, request))

    table.select(select, page_ids, [selected, details, picture, audio], api_visibility="private")

    # Every control a re-run may fill, whatever the row's tab (the event's outputs are fixed up front).
    every: dict[str, Any] = {name: 0 for name in (*PARAM_NAMES, *IMAGE_NAMES, "system_prompt")}
    every["code"] = {"mode": "write", "language": "python"}
    fillable = {
        k for t in all_tabs for k in rerun_values({"tab": t, "model": "", "prompt": "", "params": every})
    }
    targets = [found[k] for k in sorted(fillable) if k in found]

    def rerun(gid: int | None, request: gr.Request) -> dict[Any, Any]:
        if gid is None:
            raise gr.Error("Select a row first.", print_exception=False)
        try:
            settings = studio.rerun_settings(gid, user=user_of(request))
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        values = rerun_values(settings)
        missing = [k for k in values if k not in found]
        if f"{settings['tab']}-prompt" in missing or (settings["tab"] == "chat" and "message" in missing):
            raise gr.Error(f"the {settings['tab']} tab is not available here", print_exception=False)
        gr.Info(f"Settings of #{gid} are in the {settings['tab']} tab: edit and run.")
        updates = {
            found[k]: gr.Tabs(selected=v) if isinstance(found[k], gr.Tabs) else v
            for k, v in values.items()
            if k in found
        }
        return {tabs: gr.Tabs(selected=TAB_IDS.get(settings["tab"], settings["tab"])), **updates}

    rerun_btn.click(rerun, selected, [tabs, *targets], api_visibility="private")

    conv_targets = [found[k] for pair in CONVERSATION_IDS.values() for k in pair if k in found]

    def open_conversation(gid: int | None, request: gr.Request) -> dict[Any, Any]:
        if gid is None:
            raise gr.Error("Select a row first.", print_exception=False)
        user = user_of(request)
        settings = studio.rerun_settings(gid, user=user)
        cid, tab_ = settings["conversation_id"], settings["tab"]
        if cid is None or tab_ not in CONVERSATION_IDS or CONVERSATION_IDS[tab_][0] not in found:
            raise gr.Error(
                "Only Chat and Code turns belong to a conversation (A/B comparisons do not).",
                print_exception=False,
            )
        dropdown, chatbot = (found[k] for k in CONVERSATION_IDS[tab_])
        return {
            tabs: gr.Tabs(selected=tab_),
            dropdown: gr.Dropdown(choices=conversation_choices(studio, user, tab_), value=cid),
            chatbot: render(studio.conversation(cid, user=user)),
        }

    open_btn.click(open_conversation, selected, [tabs, *conv_targets], api_visibility="private")

    def delete(request: gr.Request, gid: int | None, *values: Any) -> tuple[Any, ...]:
        if gid is None:
            raise gr.Error("Select a row first.", print_exception=False)
        try:
            studio.delete_generations([gid], user=user_of(request))
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        gr.Info(f"Deleted #{gid} and its files.")
        return (None, *show(None, request), *listing(request, *values))

    delete_btn.click(
        delete,
        [selected, *filters],
        [selected, details, picture, audio, *list_outputs],
        api_visibility="private",
    )

    def vote(value: str | None) -> Any:
        def handler(gid: int | None, why: list[str], note: str, request: gr.Request) -> Any:
            if gid is None:
                raise gr.Error("Select a row first.", print_exception=False)
            try:
                studio.rate(
                    gid,
                    value,
                    user=user_of(request),
                    reason=why if value else None,
                    comment=note if value else None,
                )
            except StudioError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            return show(gid, request)[0], [], ""

        return handler

    for button, value in ((up_btn, "up"), (down_btn, "down"), (clear_btn, None)):
        button.click(
            vote(value), [selected, reasons, comment], [details, reasons, comment], api_visibility="private"
        )

    def run_export(kind: str, tab_: str, when: str, fraction: float, as_parquet: bool, request: gr.Request):
        try:
            archive, summary = studio.export_archive(
                kind, tab=tab_ or None, since=when, split=fraction, parquet=as_parquet, user=user_of(request)
            )
        except StudioError as exc:
            return str(exc), None
        try:  # Gradio's cached copy is what the browser downloads: the studio's own is removed at once
            served = export_file.move_resource_to_block_cache(archive)
        finally:
            studio.discard_export(archive)
        return f"Exported {summary}", served

    export_btn.click(
        run_export, [fmt, ex_tab, ex_since, split, parquet], [export_note, export_file], api_name="export"
    )
