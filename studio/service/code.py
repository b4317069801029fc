"""The Code tab's part of the service: settings, prompts from mode templates, and checked results.

Owns: `CodeSettings` (mode, language, source language, error text, edited template), turning a user's
input into the model prompt (`Studio.code`), and reading an answer back as extracted, syntax-checked
code (`code_result`). Generated code is parsed at most, never run. Turns are stored by `Studio.chat`
(tab "code") with these settings under `params["code"]`, so history can restore them.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import Session

from studio import storage
from studio.errors import StudioError, quote
from studio.formats import code as code_format
from studio.service.chat import Action, ChatTab
from studio.service.types import ChatUpdate

# The Code tab's modes and languages, re-exported so the UI reads them through the service.
LANGUAGES, MODES = code_format.LANGUAGES, code_format.MODES
CODE_SETTING_NAMES = ("mode", "language", "source_language", "error", "template")


class CodeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: str = "write"
    language: str = "python"
    source_language: str | None = None
    error: str = Field(default="", max_length=20_000)
    template: str | None = Field(default=None, max_length=8_000)


@dataclass
class CodeResult:
    """What the Code tab shows for an answer: the code, its file type, the explanation and a check."""

    code: str
    language: str
    extension: str
    highlight: str | None
    blocks: list[code_format.CodeBlock]
    explanation: str
    check: code_format.SyntaxReport | None
    notice: str


def code_settings(values: dict[str, Any] | None) -> CodeSettings:
    try:
        settings = CodeSettings.model_validate(values or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise StudioError(f"invalid code settings: {problems}") from None
    try:  # unknown names fail here with the list of known ones
        code_format.language(settings.language)
        if settings.source_language:
            code_format.language(settings.source_language)
    except ValueError as exc:
        raise StudioError(str(exc)) from None
    if settings.mode not in code_format.MODES:
        raise StudioError(f"unknown mode {quote(settings.mode)}; modes: {', '.join(code_format.MODES)}")
    return settings


def code_prompt(text: Any, settings: CodeSettings) -> str:
    """The model prompt for a new Code message: the input filled into its mode's template (StudioError when
    the mode needs something the user has not given, e.g. Fix without the error text)."""
    try:
        return code_format.render_prompt(
            settings.mode,
            language=settings.language,
            text=text if isinstance(text, str) else "",
            error=settings.error,
            source_language=settings.source_language,
            template=settings.template,
        )
    except ValueError as exc:
        raise StudioError(str(exc)) from None


def stored_language(params: dict[str, Any]) -> str:
    """The language a stored code turn was asked in (its settings live under params["code"])."""
    return str((params.get("code") or {}).get("language") or "python")


def code_result(text: str, language: str, *, final: bool = True) -> CodeResult:
    """Extract and check the code of an answer (or of a partial answer while it streams)."""
    lang = code_format.language(language)
    blocks = code_format.extract_code_blocks(text)
    code = code_format.main_code(blocks, lang.id)
    check = code_format.syntax_check(lang.id, code) if final and code else None
    notice = ""
    if final and not blocks:
        notice = "The answer has no code block; it is shown as text."
    elif final and blocks and not blocks[-1].closed:
        notice = (
            "The answer stopped inside a code block: it may be cut off (press Continue or raise max tokens)."
        )
    explanation = code_format.explanation_text(text)
    return CodeResult(code, lang.id, lang.extension, lang.highlight, blocks, explanation, check, notice)


def code_fields(row: storage.Generation) -> dict[str, Any]:
    """The Code-tab fields of a stored answer, for `studio generate code --json`."""
    result = code_result(row.output_text, stored_language(row.params))
    return {
        "code": [{"language": b.language, "text": b.text} for b in result.blocks],
        "syntax_check": result.check.message if result.check else None,
        "code_notice": result.notice or None,
    }


class CodeTab(ChatTab):
    """`Studio.code`: the Code tab's turns, on top of `Studio.chat`."""

    code_result = staticmethod(code_result)

    def code(
        self,
        *,
        model_id: str,
        text: str | None = None,
        settings: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        conversation_id: int | None = None,
        action: Action = "send",
        turn_index: int | None = None,
        user: str | None = None,
        run_key: str | None = None,
    ) -> Iterator[ChatUpdate]:
        """Run one Code turn. A new message is filled into the mode's template; regenerate and continue
        reuse the stored prompt, and an edit replaces it as typed."""
        stored_input = text if action == "send" else None
        if action in ("regenerate", "continue") and conversation_id is not None:
            # Redoing a turn redoes it as it was asked, whatever the controls show now.
            turns = self.conversation(conversation_id, user=user)
            index = len(turns) - 1 if turn_index is None else turn_index
            if 0 <= index < len(turns) and turns[index].params.get("code"):
                settings = dict(turns[index].params["code"])
                stored_input = settings.pop("input", None)
        chosen = code_settings(settings)
        message = code_prompt(text, chosen) if action == "send" else text
        extras = {"code": {**chosen.model_dump(), "input": stored_input}}
        yield from self.chat(
            model_id=model_id,
            message=message,
            params=params,
            conversation_id=conversation_id,
            action=action,
            turn_index=turn_index,
            user=user,
            run_key=run_key,
            tab="code",
            extras=extras,
        )

    def code_file(self, generation_id: int, *, user: str | None = None) -> Path:
        """Write a Code answer's extracted code to a file named for its language, for download.

        The file goes to the system temp folder (Gradio copies it into its own cache to serve it), so
        the data directory never needs to be served.
        """
        with Session(self.engine) as session:
            row = storage.get_generation(session, generation_id=generation_id)
        if row is None or row.tab != "code" or row.user_id != self.user_id(user):
            raise StudioError(f"code answer {generation_id} does not exist")
        result = code_result(row.output_text, stored_language(row.params))
        if not result.code:
            raise StudioError("this answer has no code to download")
        folder = Path(tempfile.gettempdir()) / "studio-code" / secrets.token_hex(8)
        folder.mkdir(parents=True)
        path = folder / f"studio-{generation_id}{result.extension}"
        path.write_text(result.code + "\n", encoding="utf-8")
        return path

    @staticmethod
    def split_code_params(params: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """CLI/API parameters -> (code settings, sampling parameters)."""
        params = dict(params or {})
        settings = {k: params.pop(k) for k in CODE_SETTING_NAMES if k in params}
        return settings, params
