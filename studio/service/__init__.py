"""The `Studio` service: what the UI and the CLI call, and nothing else does.

Owns: the facade that puts the parts together, and `generate`, one complete generation of any tab for
scripts (CLI, A/B compare). Each part owns its tab's validation, runs and rows, in its own file; every
run goes through the one lifecycle of runs.py; shared state is typed in core.py.
Ignores: Gradio types, SQL details (storage) and model internals (backends).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from studio import storage
from studio.config import Settings, load_config
from studio.errors import StudioError
from studio.service.audio import AudioTab
from studio.service.audit import SafetyAdmin
from studio.service.best_of import BestOfN, best_of_fields
from studio.service.chat import Action
from studio.service.code import CodeTab, code_fields
from studio.service.image_best_of import ImageBestOf
from studio.service.library import LibraryTab
from studio.service.models import ModelsPanel
from studio.service.train import TrainTab
from studio.service.types import (
    AudioUpdate,
    ChatTurn,
    ChatUpdate,
    GenerationResult,
    ImageUpdate,
    ModelInfo,
    Status,
    TrainUpdate,
)

__all__ = [
    "Action",
    "AudioUpdate",
    "ChatTurn",
    "ChatUpdate",
    "GenerationResult",
    "ImageUpdate",
    "ModelInfo",
    "Status",
    "Studio",
    "StudioError",
    "TrainUpdate",
]


class Studio(BestOfN, CodeTab, ImageBestOf, AudioTab, TrainTab, ModelsPanel, LibraryTab, SafetyAdmin):
    """The service. Its public methods, by the file that holds them (all under studio/service/):

    - core.py: `user_id`, `is_admin`, `require_admin`, `claim_file` / `file_owner` (uploads, export zips),
      `cancel` (Stop, closed tabs), `recover_interrupted`, `media_path`, `generation_settings`, `close`
    - chat.py: `chat` (send, regenerate, edit, continue)
    - best_of.py: `chat` with `best_of` and `scorer` (n candidates, the scorer's best shown); `rate` (a vote
      against the scorer's choice is also a preference)
    - records.py: `conversation`, `conversations`, `rename_conversation`, `delete_conversation`, `rate`,
      `rating`, `history`
    - code.py: `code`, `code_result`, `code_file`, `split_code_params`
    - image_best_of.py: `image` with a `scorer` (an image scorer puts the best picture first)
    - image.py: `image`, `recent_images`, `generation_file`, `media_access`, `generate_image_result`
    - audio.py: `speech`, `music`, `check_audio`, `recent_clips`, `generate_audio_result`
    - models.py: `models`, `model_status`, `default_params`, `model_rows`, `memory_summary`, `load_model`,
      `unload_model`
    - library.py: `library`, `library_item`, `vote_detail`, `rerun_settings`, `delete_generations`,
      `export`, `export_archive`
    - ranking.py: `compare`, `prefer`, `leaderboard`
    - train.py: `train` (a run, streamed)
    - variants.py: `variants`, `compare_with_base`, `promote_variant`, `delete_variant`, `train_runs`,
      `train_run`, `recover_interrupted` (runs too); `models` puts a promoted variant first
    - audit.py: `safety_policy`, `set_safety_policy`, `set_exposed`, `safety_check`, `safety_log` (the
      checks themselves: safety.py, called by runs.py)
    - here: `from_settings`, `check_prompt`, `generate`
    """

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Studio:
        return cls(load_config(settings.models_file), settings, **kwargs)

    @staticmethod
    def check_prompt(message: Any) -> str:
        """Raise StudioError for a message `chat` would refuse (lets the UI refuse before queueing)."""
        from studio.service.checks import prompt_text

        return prompt_text(message)

    def generate(
        self,
        *,
        tab: str,
        model_id: str,
        prompt: str,
        params: dict[str, Any] | None = None,
        user: str | None = None,
        conversation_id: int | None = None,
    ) -> GenerationResult:
        """One complete generation for scripts (CLI, API, A/B compare): the stored result. Chat and code
        turns may continue a conversation (`conversation_id`), and report their speed."""
        if tab == "image":
            return self.generate_image_result(model_id=model_id, prompt=prompt, params=params, user=user)
        if tab in ("speech", "music"):
            return self.generate_audio_result(
                tab=tab, model_id=model_id, prompt=prompt, params=params, user=user
            )
        if tab not in ("chat", "code"):
            raise StudioError(
                f"the {tab} tab is not available in this version; available: chat, code, image, speech, music"
            )
        if tab == "code":
            settings, params = self.split_code_params(params)
            updates = self.code(
                model_id=model_id,
                text=prompt,
                settings=settings,
                params=params,
                user=user,
                conversation_id=conversation_id,
            )
        else:
            updates = self.chat(
                model_id=model_id,
                message=prompt,
                params=params,
                user=user,
                tab=tab,
                conversation_id=conversation_id,
            )
        *_, final = updates
        assert final.generation_id is not None
        with Session(self.engine) as session:
            row = storage.get_generation(session, generation_id=final.generation_id)
            assert row is not None
            return GenerationResult(
                generation_id=row.id,
                tab=row.tab,
                model=row.model_id,
                status=Status(row.status),
                error=row.error,
                text=row.output_text,
                files=list(row.files),
                params=dict(row.params),
                notices=list(row.notices),
                conversation_id=row.conversation_id,
                fields=(code_fields(row) if row.tab == "code" else {})
                | best_of_fields(row.params)
                | speed_fields(row),
            )


def speed_fields(row: Any) -> dict[str, Any]:
    """A text turn's speed: ms to its first token, tokens made, and tokens a second after the first one
    (decoding speed, the prompt's prefill excluded; None when it made fewer than two tokens)."""
    ttft, tokens, total = row.first_token_ms, row.completion_tokens, row.duration_ms
    rate = None
    if ttft is not None and total is not None and tokens and tokens > 1 and total > ttft:
        rate = round((tokens - 1) / ((total - ttft) / 1000), 2)
    return {
        "ttft_ms": None if ttft is None else round(ttft, 1),
        "tokens": tokens,
        "tokens_per_s": rate,
    }
