"""The Library's part of the service: find, reopen, re-run and delete past generations; votes with reasons;
A/B comparisons; the leaderboard; RLHF exports.

Owns: validating those requests (ids that exist and belong to the user, vote reasons, dates, formats),
deleting rows together with their media files, running the two sides of an A/B comparison through
`Studio.generate` (so every tab, the Audio tab included, compares the same way) and turning storage rows
into export files (studio/export/). Ignores: Gradio, SQL (storage) and models.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from studio import export, storage
from studio.errors import StudioError
from studio.export import files as export_files
from studio.service import ranking
from studio.service.checks import prompt_text
from studio.service.core import StudioCore
from studio.service.types import GenerationResult

log = logging.getLogger(__name__)

FORMATS = export.FORMATS  # the export formats, for the UI (which imports only the service)
REASONS = ("inaccurate", "unsafe", "off-topic", "low quality", "other")
MAX_COMMENT = 2000
PER_PAGE_MAX = 200


@dataclass
class LibraryPage:
    items: list[dict[str, Any]]
    total: int  # counted up to storage.COUNT_CAP + 1
    page: int
    pages: int

    @property
    def total_text(self) -> str:
        return f"more than {storage.COUNT_CAP}" if self.total > storage.COUNT_CAP else str(self.total)


def parse_date(value: str | date | datetime | None, what: str = "date") -> datetime | None:
    """'2026-11-01' (or an ISO date-time, or a date) -> an aware UTC datetime; blank -> None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise StudioError(f"{what} {value!r} is not a date like 2026-11-29") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def feedback_fields(reason: Any, comment: Any) -> tuple[str | None, str | None]:
    """Check a vote's reason tags (comma-separated, from REASONS) and comment; blank -> None."""
    tags: list[str] = []
    if reason not in (None, "", []):
        items = reason if isinstance(reason, list) else str(reason).split(",")
        tags = [str(item).strip().lower() for item in items if str(item).strip()]
        unknown = [tag for tag in tags if tag not in REASONS]
        if unknown:
            raise StudioError(f"unknown reason {unknown[0]!r}; reasons: {', '.join(REASONS)}")
    if comment is not None and not isinstance(comment, str):
        raise StudioError("a comment must be text")
    text = (comment or "").replace("\x00", "").strip()
    if len(text) > MAX_COMMENT:
        raise StudioError(f"the comment is {len(text)} characters long; the limit is {MAX_COMMENT}")
    return (",".join(dict.fromkeys(tags)) or None), (text or None)


class LibraryTab(StudioCore):
    """The Library tab and the CLI's history/export/prefer: search, reopen, delete, vote, compare, export."""

    # A/B compare runs each side as one complete generation of its tab: the `Studio` facade's `generate`.
    generate: Callable[..., GenerationResult]

    def _owned(self, session: Session, generation_id: Any, uid: int) -> storage.Generation:
        if isinstance(generation_id, bool) or not isinstance(generation_id, int | float | str):
            raise StudioError(f"generation {generation_id!r} does not exist")
        try:
            gid = int(generation_id)
        except ValueError:
            raise StudioError(f"generation {generation_id!r} does not exist") from None
        row = storage.get_generation(session, generation_id=gid)
        if row is None or row.user_id != uid:
            raise StudioError(f"generation {gid} does not exist")
        return row

    def library(
        self,
        *,
        search: str | None = None,
        tab: str | None = None,
        model: str | None = None,
        rating: str | None = None,
        since: str | date | datetime | None = None,
        until: str | date | datetime | None = None,
        page: int = 1,
        per_page: int = 20,
        user: str | None = None,
    ) -> LibraryPage:
        """One page of the user's generations, newest first, matching every filter given."""
        if rating not in (None, "", "any", "up", "down", "unrated"):
            raise StudioError(f"rating filter is up, down, unrated or any, not {rating!r}")
        if search is not None and not isinstance(search, str):
            raise StudioError("search must be text")
        try:
            per_page = max(1, min(int(per_page), PER_PAGE_MAX))
            page = max(1, int(page))
        except (TypeError, ValueError):
            raise StudioError("page and per_page must be whole numbers") from None
        uid = self.user_id(user)
        filters = storage.Filters(
            user_id=uid,
            search=search,
            tab=tab or None,
            model_id=model or None,
            rating=rating if rating not in ("", "any") else None,
            since=parse_date(since, "since"),
            until=parse_date(until, "until"),
        )
        with Session(self.engine) as session:
            rows, total = storage.find_generations(
                session, filters=filters, offset=(page - 1) * per_page, limit=per_page
            )
            votes = storage.ratings_for(session, generation_ids=[r.id for r in rows if r.id], user_id=uid)
            items = [self._item(row, votes.get(row.id or 0)) for row in rows]
        return LibraryPage(items, total, page, max(1, -(-total // per_page)))

    def library_item(self, generation_id: int, *, user: str | None = None) -> dict[str, Any]:
        """One generation as the Library lists it (files: the media still on disk, absolute paths)."""
        uid = self.user_id(user)
        with Session(self.engine) as session:
            row = self._owned(session, generation_id, uid)
            votes = storage.ratings_for(session, generation_ids=[row.id or 0], user_id=uid)
            return self._item(row, votes.get(row.id or 0)) | {"params": dict(row.params)}

    def _item(self, row: storage.Generation, vote: int | None) -> dict[str, Any]:
        files = []
        for relative in row.files:
            try:
                path = self.media_path(relative)
            except StudioError:
                continue
            if path.exists():  # deleted by hand: the row stays, without a preview
                files.append(str(path))
        return {
            "generation_id": row.id,
            "created_at": row.created_at.isoformat(timespec="seconds"),
            "tab": row.tab,
            "model": row.model_id,
            "status": row.status,
            "prompt": row.prompt,
            "text": row.output_text,
            "error": row.error,
            "files": files,
            "rating": vote,
            "conversation_id": row.conversation_id,
            "seed": row.seed,
        }

    def vote_detail(self, generation_id: int, *, user: str | None = None) -> dict[str, Any]:
        """The user's vote on one of their generations: {"vote": 1, -1 or None, "reasons", "comment"}."""
        uid = self.user_id(user)
        with Session(self.engine) as session:
            row = self._owned(session, generation_id, uid)
            vote = storage.rating_detail(session, generation_id=row.id or 0, user_id=uid)
        if vote is None:
            return {"vote": None, "reasons": [], "comment": ""}
        reasons = [tag for tag in (vote.reason or "").split(",") if tag]
        return {"vote": vote.value, "reasons": reasons, "comment": vote.comment or ""}

    def rerun_settings(self, generation_id: int, *, user: str | None = None) -> dict[str, Any]:
        """What a past generation ran with, for its tab to fill in: tab, model, prompt, params, history."""
        with Session(self.engine) as session:
            row = self._owned(session, generation_id, self.user_id(user))
            return {
                "generation_id": row.id,
                "tab": row.tab,
                "model": row.model_id,
                "prompt": row.prompt,
                "params": dict(row.params),
                "conversation_id": row.conversation_id,
            }

    def delete_generations(self, generation_ids: list[int], *, user: str | None = None) -> int:
        """Delete the user's generations with their votes and media files; returns how many went."""
        uid = self.user_id(user)
        with Session(self.engine) as session:
            ids = [self._owned(session, gid, uid).id or 0 for gid in generation_ids]
            deleted = storage.delete_generations(session, generation_ids=ids)
        for row in deleted:  # after the commit: a file without its row is harmless, a row without it is not
            for relative in row.files:
                try:
                    self.media_path(relative).unlink(missing_ok=True)
                except (StudioError, OSError) as exc:
                    log.warning("could not delete %s: %s", relative, exc)
        return len(deleted)

    # -- A/B -----------------------------------------------------------------------------------------
    def prefer(self, generation_a: int, generation_b: int, choice: str, *, user: str | None = None) -> str:
        """Record which of two answers to the same prompt won: a, b, tie or both_bad (the latest vote on a
        pair wins, whichever order it is named in). Returns the choice stored for (a, b)."""
        choice = {"both bad": "both_bad", "A": "a", "B": "b"}.get(choice, choice)
        if choice not in storage.CHOICES:
            raise StudioError(f"a choice is one of {', '.join(storage.CHOICES)}, not {choice!r}")
        uid = self.user_id(user)
        with Session(self.engine) as session:
            a, b = self._owned(session, generation_a, uid), self._owned(session, generation_b, uid)
            if a.id == b.id:
                raise StudioError("compare two different generations")
            if a.tab != b.tab or a.prompt != b.prompt or a.history != b.history:
                raise StudioError(
                    f"generations {a.id} and {b.id} answer different prompts; A/B votes compare answers "
                    "to the same prompt"
                )
            storage.set_preference(
                session,
                user_id=uid,
                tab=a.tab,
                generation_a_id=a.id or 0,
                generation_b_id=b.id or 0,
                choice=choice,
            )
        return choice

    def compare(
        self,
        *,
        tab: str,
        prompt: str,
        a: dict[str, Any],
        b: dict[str, Any],
        user: str | None = None,
    ) -> tuple[GenerationResult, GenerationResult]:
        """Generate two candidates for one prompt: two models, or one model with two seeds or settings.
        `a` and `b` are {"model": id, "params": {...}}; each side is stored as an ordinary generation."""
        sides = []
        for side in (a, b):
            if not isinstance(side, dict) or not side.get("model"):
                raise StudioError("each side of a comparison needs a model")
            params = dict(side.get("params") or {})
            if tab == "image":
                params["num_images"] = 1  # one picture a side: the vote is about that picture
            sides.append((str(side["model"]), params))
        prompt_text(prompt)
        results = tuple(
            self.generate(tab=tab, model_id=model, prompt=prompt, params=params, user=user)
            for model, params in sides
        )
        return results[0], results[1]

    def leaderboard(self, *, tab: str | None = None, user: str | None = None) -> list[dict[str, Any]]:
        """Per tab and model: Elo, battles, win rate (A/B votes), thumbs up/down and thumbs-up rate.
        Everyone's votes count (user=None), or one user's."""
        uid = None if user is None else self.user_id(user)
        with Session(self.engine) as session:
            prefs = storage.preference_rows(session, user_id=uid, tab=tab)
            thumbs = storage.rating_counts(session, user_id=uid, tab=tab)
        battles = [(p["tab"], p["a"]["model_id"], p["b"]["model_id"], p["choice"]) for p in prefs]
        counts = [(t["tab"], t["model_id"], int(t["up"] or 0), int(t["down"] or 0)) for t in thumbs]
        return [s.as_dict() for s in ranking.leaderboard(battles, counts)]

    # -- export --------------------------------------------------------------------------------------
    def export(
        self,
        fmt: str,
        out: str | Path,
        *,
        parquet: bool = False,
        tab: str | None = None,
        since: str | date | datetime | None = None,
        split: float = 0.0,
        all_users: bool = False,
        user: str | None = None,
    ) -> export_files.ExportResult:
        """Write the user's (or everyone's) ratings and A/B votes as a TRL dataset folder."""
        if fmt not in export.FORMATS:
            raise StudioError(f"unknown export format {fmt!r}; formats: {', '.join(export.FORMATS)}")
        try:
            fraction = float(split)
        except (TypeError, ValueError):
            raise StudioError(f"the test split must be a number, not {split!r}") from None
        when = parse_date(since, "since")
        if all_users and not self.is_admin(user):
            raise StudioError("only an admin may export every user's data")
        uid = None if all_users else self.user_id(user)
        with export.paused_gc():
            return self._export(fmt, out, uid, tab, when, parquet=parquet, fraction=fraction)

    def _export(
        self,
        fmt: str,
        out: str | Path,
        uid: int | None,
        tab: str | None,
        when: datetime | None,
        *,
        parquet: bool,
        fraction: float,
    ) -> export_files.ExportResult:
        with Session(self.engine) as session:
            rated = storage.rated_rows(session, user_id=uid, tab=tab or None, since=when)
            prefs = (
                storage.preference_rows(session, user_id=uid, tab=tab or None, since=when)
                if fmt in ("dpo", "reward", "pickapic")  # sft and kto use votes only
                else []
            )
        data_dir = self.settings.data_dir

        def exists(relative: str) -> bool:
            try:
                return bool(self.media_path(relative).is_file())
            except StudioError:
                return False

        data = export.build(fmt, rated, prefs, exists=exists)
        filters = "".join([f", tab {tab}" if tab else "", f", since {when:%Y-%m-%d}" if when else ""])
        return export_files.write(
            data,
            out,
            media_root=data_dir,
            parquet=parquet,
            test_fraction=fraction,
            filters=f" ({filters[2:]})" if filters else "",
        )

    def export_archive(self, fmt: str, **options: Any) -> tuple[Path, str]:
        """Export into a fresh temporary folder and zip it, for a browser download: (zip file, summary)."""
        folder = Path(tempfile.mkdtemp(prefix="studio-export-")) / f"studio-{fmt}"
        result = self.export(fmt, folder, **options)
        archive = shutil.make_archive(str(folder), "zip", root_dir=folder)
        shutil.rmtree(folder, ignore_errors=True)  # the zip holds it all; the folder would pile up in /tmp
        return Path(archive), result.summary().replace(str(folder), f"studio-{fmt}.zip")
