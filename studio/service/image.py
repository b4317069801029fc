"""The Image tab's part of the service: run a text-to-image or image-to-image job, save PNGs, write rows.

Owns: validating an image request (prompt, parameters, LoRA, init image), streaming progress, saving each
picture as a PNG under the media folder with its parameters embedded (A1111 `parameters` chunk + the
studio's generation id), and writing one generation row per picture (so each can be rated, reused and
exported on its own) in one transaction when the job ends: failures and stops get one row with the reason;
PNG Info (the settings any PNG carries, for the tab's drop zone).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from studio import storage
from studio.backends import ImageOutput, Progress, Request
from studio.config import VariantSpec
from studio.errors import StudioError, quote, reason
from studio.formats import png
from studio.service.audit import withheld_placeholder
from studio.service.checks import model_for, params_for, prompt_text, require_weights
from studio.service.core import StudioCore
from studio.service.runs import Loading, Run, Waiting, remove_quietly
from studio.service.types import GenerationResult, ImageUpdate, Status

log = logging.getLogger(__name__)


def _fill(row: storage.Generation, common: dict[str, Any], **values: Any) -> None:
    for name, value in {**common, **values}.items():
        setattr(row, name, value)


class ImageTab(StudioCore):
    """`Studio.image`: text-to-image and image-to-image jobs, their PNGs and rows; the picture gallery."""

    def image(
        self,
        *,
        model_id: str,
        prompt: str,
        params: dict[str, Any] | None = None,
        init_image: bytes | str | Path | None = None,
        user: str | None = None,
        run_key: str | None = None,
    ) -> Iterator[ImageUpdate]:
        """Generate pictures. Bad input raises StudioError before anything runs or is stored."""
        spec = model_for(self.config, model_id, "image")
        require_weights(spec, cache=self.settings.model_cache, base_dir=self.config.path.parent)
        validated: Any = params_for(spec, params, "image")
        text = prompt_text(prompt)
        lora = getattr(validated, "lora", None)
        if lora and lora not in {item.id for item in spec.loras}:
            known = ", ".join(item.id for item in spec.loras) or "none"
            raise StudioError(f"model {quote(model_id)} has no LoRA {quote(lora)}; its LoRAs: {known}")
        init = None
        if init_image is not None and init_image != "":
            try:
                init = png.load_init_image(init_image)
            except ValueError as exc:
                raise StudioError(str(exc)) from None
        request = Request(prompt=text, params=validated, init_image=init)
        # The job's first row; each further picture gets a row of its own when the job is saved.
        begun = storage.Generation(
            user_id=self.user_id(user),
            tab="image",
            model_id=spec.id,
            prompt=text,
            params=validated.model_dump(),
        )
        outputs: list[ImageOutput] = []

        def save(run: Run[list[tuple[int, Path]]]) -> list[tuple[int, Path]]:
            job = (begun, spec.id, text, validated, init is not None)
            try:
                saved = self._save_images(*job, outputs, run.status, run.error, run.notices, run.seconds)
            except Exception as exc:  # e.g. a full disk: the job is still recorded, with the reason
                log.warning("could not save the pictures: %s", reason(exc))
                run.status, run.error = Status.ERROR, f"the pictures could not be saved: {reason(exc)}"
                outputs.clear()
                return self._save_images(*job, outputs, run.status, run.error, run.notices, run.seconds)
            self._mark_withheld(run, outputs, saved)
            return saved

        run = Run(self, model_id=spec.id, request=request, row=begun, save=save, run_key=run_key)
        with closing(run.events()) as events:
            for event in events:
                if isinstance(event, Waiting):
                    yield ImageUpdate(notices=[*run.notices, event.text])
                elif isinstance(event, Loading):
                    yield ImageUpdate(status=Status.LOADING)
                elif isinstance(event, Progress):
                    yield ImageUpdate(step=event.step, total=event.total, notices=run.notices)
                elif isinstance(event, ImageOutput):
                    outputs.append(event)
        saved = run.result or []
        shown = [  # a picture the safety check withheld is not served: a blurred placeholder stands in
            withheld_placeholder() if run.moderation.picture_blocked(out.index) else path
            for (_, path), out in zip(saved, outputs, strict=False)
        ]
        withheld = sum(run.moderation.picture_blocked(out.index) for out in outputs[: len(saved)])
        if saved and withheld == len(saved):
            run.status, run.error = Status.BLOCKED, run.error or self._withheld_message(run)
        elif withheld:
            run.notices.append(f"{withheld} of {len(saved)} pictures withheld: {self._withheld_message(run)}")
        yield ImageUpdate(
            status=run.status,
            done=True,
            files=shown,
            generation_ids=[gid for gid, _ in saved],
            seeds=[out.seed for out in outputs],
            error=run.error,
            notices=run.notices,
        )

    def _save_images(
        self,
        begun: storage.Generation,
        model_id: str,
        prompt: str,
        params: Any,
        img2img: bool,
        outputs: list[ImageOutput],
        status: Status,
        error: str | None,
        notices: list[str],
        seconds: float,
    ) -> list[tuple[int, Path]]:
        """One row per picture (the first is the begun row), PNGs named after their rows; all or nothing
        in one transaction."""
        batch = secrets.token_hex(6)
        base = {**params.model_dump(), "img2img": img2img, "batch": batch}
        folder = self.settings.media_dir / "images" / datetime.now(UTC).strftime("%Y-%m-%d")
        common: dict[str, Any] = {"user_id": begun.user_id, "tab": "image", "model_id": model_id}
        common |= {"prompt": prompt, "notices": notices, "status": status.value, "error": error}
        written: list[Path] = []
        with Session(self.engine, expire_on_commit=False) as session:
            first = session.get(storage.Generation, begun.id)
            assert first is not None, "the begun row is gone"
            if not outputs:  # a failure or a stop before any picture: still one row with the reason
                _fill(first, common, params=base, seed=params.seed, duration_ms=seconds * 1000, files=[])
                storage.finish_generation(session, generation=first)
                return []
            rows = [first] + [storage.Generation(**common) for _ in outputs[1:]]
            for row, out in zip(rows, outputs, strict=True):
                extra = {"params": {**base, "seed": out.seed, "index": out.index}, "seed": out.seed}
                _fill(row, common, **extra, duration_ms=seconds * 1000 / len(outputs), active=True)
            session.add_all(rows)
            session.flush()  # ids for the file names and the PNG chunk
            try:
                for row, out in zip(rows, outputs, strict=True):
                    path = folder / png.media_name(row.id or 0, out.index)
                    text = png.a1111_parameters(
                        prompt=prompt,
                        negative_prompt=params.negative_prompt,
                        steps=params.steps,
                        guidance=params.guidance,
                        seed=out.seed,
                        width=params.width,
                        height=params.height,
                        scheduler=params.scheduler,
                        model=model_id,
                        strength=params.strength if img2img else None,
                        lora=params.lora,
                        lora_scale=params.lora_scale if params.lora else None,
                        generation_id=row.id,
                        extra=self._variant_settings(model_id),
                    )
                    png.save_png(out.image, path, parameters=text, generation_id=row.id)
                    written.append(path)
                    row.files = [str(path.relative_to(self.settings.data_dir))]
                session.commit()
            except Exception:
                session.rollback()
                # Nothing half-written: no rows without files, no files without rows. A failing disk makes
                # the clean-up fail too; that is logged, and the caller still finishes the row.
                remove_quietly(written)
                raise
            return [(row.id or 0, path) for row, path in zip(rows, written, strict=True)]

    def _mark_withheld(
        self, run: Run[list[tuple[int, Path]]], outputs: list[ImageOutput], saved: list[tuple[int, Path]]
    ) -> None:
        """Link each picture's safety verdict to its row, and mark the withheld ones blocked (their files
        stay, for admins only: `media_access`)."""
        moderation = run.moderation
        for out, (generation_id, _) in zip(outputs, saved, strict=False):
            moderation.picture_ids[out.index] = generation_id
        pairs = zip(outputs, saved, strict=False)
        withheld = [gid for out, (gid, _) in pairs if moderation.picture_blocked(out.index)]
        if not withheld:
            return
        with Session(self.engine) as session:
            for generation_id in withheld:
                row = session.get(storage.Generation, generation_id)
                if row is not None:
                    row.status, row.error = Status.BLOCKED.value, self._withheld_message(run)
                    session.add(row)
            session.commit()

    @staticmethod
    def _withheld_message(run: Run[Any]) -> str:
        verdicts = [v for i, v in run.moderation.pictures.items() if run.moderation.picture_blocked(i)]
        what = ", ".join(sorted({v.category for v in verdicts})) or "unsafe"
        return f"Blocked by the safety check: the picture was classed as {what}; it is kept for admins only."

    def _variant_settings(self, model_id: str) -> dict[str, str]:
        """A trained variant's PNG settings: its base and its LoRA (the adapter folder, data-dir relative)."""
        spec = self.config.model(model_id)
        if not isinstance(spec, VariantSpec):
            return {}
        folder = Path(spec.source)
        where = (
            folder.relative_to(self.settings.data_dir)
            if folder.is_relative_to(self.settings.data_dir)
            else folder
        )
        return {
            "Base model": spec.base,
            "Variant LoRA": f"{where.as_posix()} ({spec.method}, run {spec.run_id})",
        }

    def media_access(self, user: str | None, path: Path) -> bool:
        """May this user fetch this file through the web server's file route?

        A generated media file (its name starts with its generation id) only by its owner, wherever it
        lies (the media folder or Gradio's cache of outputs); other files in the media folder by nobody;
        uploads and export zips (`claim_file`) only by whoever made them; anything else is left to Gradio's
        checks (outputs under hash-named folders).
        """
        owner = self.file_owner(path)
        if owner is not None:  # an upload or an export: its owner's alone
            return owner == (user or "local")
        in_media = path.is_relative_to(self.settings.media_dir.resolve())
        generation_id = png.media_generation_id(path.name)
        if generation_id is None:
            return not in_media
        with Session(self.engine) as session:
            row = storage.get_generation(session, generation_id=generation_id)
        if row is None or not any(Path(f).name == path.name for f in row.files):
            return not in_media
        if row.status == Status.BLOCKED:  # withheld by the safety check: admins only (the audit)
            return self.is_admin(user)
        return row.user_id == self.user_id(user)

    def recent_images(self, *, user: str | None = None, limit: int = 48) -> list[tuple[int, Path, str]]:
        """(generation id, file, caption) of the user's latest pictures, newest first, for the gallery."""
        with Session(self.engine) as session:
            rows = storage.list_generations(session, user_id=self.user_id(user), tab="image", limit=limit)
            ids = [row.id for row in rows if row.id is not None]
            flags = storage.moderated_generations(session, generation_ids=ids) if ids else {}
            found = []
            for row in rows:
                if row.files and row.status == Status.BLOCKED:  # withheld: a blurred placeholder instead
                    found.append(
                        (row.id or 0, withheld_placeholder(), f"#{row.id} withheld by the safety check")
                    )
                elif row.files and row.status == Status.OK:
                    path = self.media_path(row.files[0])
                    flag = "⚑ flagged by the safety check, " if flags.get(row.id or 0) == "flag" else ""
                    if path.exists():
                        found.append((row.id or 0, path, f"{flag}#{row.id} seed {row.seed}"))
            return found

    def generation_file(self, generation_id: int, *, user: str | None = None) -> Path:
        """The picture of an image generation (for 'use as init image' and downloads)."""
        with Session(self.engine) as session:
            row = storage.get_generation(session, generation_id=generation_id)
            if row is None or row.user_id != self.user_id(user) or not row.files:
                raise StudioError(f"picture {generation_id} does not exist")
            if row.status == Status.BLOCKED and not self.is_admin(user):
                raise StudioError(f"picture {generation_id} was withheld by the safety check")
            return self.media_path(row.files[0])

    def image_info(self, file: str | Path) -> dict[str, Any]:
        """PNG Info: the generation settings a picture carries (the studio's or A1111/Forge's, see
        `png.png_info`), plus "settings": them as Image parameters, for the tab's one-click apply."""
        try:
            info = png.png_info(Path(file))
        except (OSError, ValueError) as exc:
            raise StudioError(
                f"the picture could not be read: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        return {**info, "settings": png.image_settings(info)}

    def generate_image_result(
        self, *, model_id: str, prompt: str, params: dict[str, Any] | None, user: str | None
    ) -> GenerationResult:
        """One complete image job for scripts (the CLI): the stored result, files as absolute paths."""
        params = dict(params or {})
        init = params.pop("init_image", None)  # a path, for the CLI
        *_, final = self.image(model_id=model_id, prompt=prompt, params=params, init_image=init, user=user)
        first = final.generation_ids[0] if final.generation_ids else None
        return GenerationResult(
            generation_id=first,
            tab="image",
            model=model_id,
            status=final.status,
            error=final.error,
            files=[str(path) for path in final.files],
            params=self.generation_settings(first, user=user)["params"] if first else {},
            notices=final.notices,
            fields={"generation_ids": final.generation_ids, "seeds": final.seeds},
        )
