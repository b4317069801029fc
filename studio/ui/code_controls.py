"""The Code tab's controls that follow its mode, and how a Code turn reads back.

Owns: the Mode and Language choices, what each mode shows (the input box's label, lines and keys, the error
box, the source language, the template), the Code settings the controls stand for, the syntax check's line,
and a stored turn as the tab shows it (the message as typed). Ignores: the tab's layout and events
(studio/ui/code.py) and prompt building (the service's).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gradio as gr

from studio.service import ChatTurn
from studio.service.code import LANGUAGES, MODES
from studio.ui.turns import ENTER_SENDS

LANGUAGE_CHOICES = [(lang.label, lang.id) for lang in LANGUAGES.values()]
MODE_CHOICES = [(mode.label, mode.id) for mode in MODES.values()]


def input_box(mode: str) -> dict[str, Any]:
    """The input box's settings in a mode. A follow-up is a chat message: one line that grows, Enter sends
    and Shift+Enter adds a line (Gradio 6 sends on Enter only when `lines=1`). The other modes take pasted
    code, where Enter must add a line: six lines, and Gradio's Shift+Enter runs."""
    if mode == "follow-up":
        return {"lines": 1, "max_lines": 12, "placeholder": ENTER_SENDS}
    return {"lines": 6, "max_lines": 30, "placeholder": "Enter for a new line, Shift+Enter to run"}


def mode_controls(mode: str) -> tuple[Any, Any, Any, Any]:
    """Input label, error box, source-language box and template for a mode."""
    spec = MODES[mode]
    return (
        gr.Textbox(label=spec.input_label, **input_box(mode)),
        gr.Textbox(visible=mode == "fix"),
        gr.Dropdown(visible=mode == "translate"),
        spec.template,
    )


def run_settings(mode_id: str, lang: str, source: str, error_text: str, template_text: str) -> dict[str, Any]:
    """The Code settings the controls show, for `Studio.code`."""
    return {
        "mode": mode_id,
        "language": lang,
        "source_language": source if mode_id == "translate" else None,
        "error": error_text or "",
        # Blank or unchanged means the mode's own template (API callers may send "").
        "template": template_text
        if (template_text or "").strip() and template_text != MODES.get(mode_id, MODES["write"]).template
        else None,
    }


def check_text(result: Any) -> str:
    if result.check is None:
        return ""
    return ("✅ " if result.check.ok else "❌ ") + result.check.message


def as_typed(turn: ChatTurn) -> ChatTurn:
    """A turn as the Code tab shows it: its user message as typed (the model saw it inside the mode's
    template), and no `‹ n/m ›` in its footer (the tab has no pager to browse kept answers; Chat does)."""
    typed = (turn.params.get("code") or {}).get("input") or turn.prompt
    return dataclasses.replace(turn, prompt=typed, answer=1, answers=1)
