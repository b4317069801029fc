"""The Library's part of the service: find, reopen, re-run and delete past generations; votes with reasons;
A/B comparisons; the leaderboard; RLHF exports.

Owns: validating those requests (ids that exist and belong to the user, vote reasons, dates, formats),
deleting rows together with their media files, running the two sides of an A/B comparison through
`Studio.generate` (so every tab, the Audio tab included, compares the same way) and turning storage rows
into export files (studio/export/). Ignores: Gradio, SQL (storage) and models.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from studio import export, storage
from studio.errors import StudioError, quote
from studio.export import files as export_files
from studio.service.audit import without_moderated
from studio.service.ranking import Comparisons

log = logging.getLogger(__name__)

FORMATS = export.FORMATS  # the export formats, for the UI (which imports only the service)
# What a vote's "why?" may say: the reasons that fit a 👎, and those that fit a 👍 ("other" fits both).
NEGATIVE_REASONS = ("inaccurate", "unsafe", "off-topic", "low quality", "other")
POSITIVE_REASONS = ("helpful", "accurate", "well written", "creative", "other")
REASONS = tuple(dict.fromkeys(NEGATIVE_REASONS + POSITIVE_REASONS))  # every reason a stored vote may carry
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
        raise StudioError(f"{what} {quote(value)} is not a date like 2026-11-29") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def reasons_for(vote: int | None) -> tuple[str, ...]:
    """The reasons that can explain a vote: +1 -> POSITIVE_REASONS, -1 -> NEGATIVE_REASONS."""
    return POSITIVE_REASONS if (vote or 0) > 0 else NEGATIVE_REASONS


def feedback_fields(reason: Any, comment: Any, vote: int | None = None) -> tuple[str | None, str | None]:
    """Check a vote's reason tags (comma-separated; those of `reasons_for(vote)`, or any of REASONS when
    the vote is not given) and comment; blank -> None."""
    tags: list[str] = []
    if isinstance(reason, str) and len(reason) > MAX_COMMENT:  # by size first: never split a huge value
        raise StudioError(f"the reason is {len(reason)} characters long; the limit is {MAX_COMMENT}")
    if reason not in (None, "", []):
        items = reason if isinstance(reason, list) else str(reason).split(",")
        tags = [str(item).strip().lower() for item in items if str(item).strip()]
        allowed = REASONS if vote is None else reasons_for(vote)
        unknown = [tag for tag in tags if tag not in allowed]
        if unknown:
            # A reason for the other vote would make the stored data contradict itself ("liked: unsafe").
            which = "" if vote is None else f" for a {'👍 (up)' if vote > 0 else '👎 (down)'} vote"
            raise StudioError(f"unknown reason {quote(unknown[0])}{which}; reasons: {', '.join(allowed)}")
    if comment is not None and not isinstance(comment, str):
        raise StudioError("a comment must be text")
    text = (comment or "").replace("\x00", "").strip()
    if len(text) > MAX_COMMENT:
        raise StudioError(f"the comment is {len(text)} characters long; the limit is {MAX_COMMENT}")
    return (",".join(dict.fromkeys(tags)) or None), (text or None)


def tokens_per_second(tokens: int | None, duration_ms: float | None, first_ms: float | None) -> float | None:
    """Decoding speed: tokens after the first over the time after the first (the wait for the first token
    is loading and prompt processing, not speed); None without enough to measure."""
    if not tokens or duration_ms is None:
        return None
    span, count = duration_ms, tokens
    if first_ms is not None and tokens > 1:
        span, count = duration_ms - first_ms, tokens - 1
    return round(count / (span / 1000), 1) if span > 0 else None


class LibraryTab(Comparisons):
    """The Library tab and the CLI's history/export/prefer: search, reopen, delete, vote, compare (the A/B
    part in ranking.py), export."""

    def _owned(self, session: Session, generation_id: Any, uid: int) -> storage.Generation:
        if isinstance(generation_id, bool) or not isinstance(generation_id, int | float | str):
            raise StudioError(f"generation {quote(generation_id)} does not exist")
        try:
            gid = int(generation_id)
        except ValueError:
            raise StudioError(f"generation {quote(generation_id)} does not exist") from None
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
            raise StudioError(f"rating filter is up, down, unrated or any, not {quote(rating)}")
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
            "active": row.active,  # False: regenerated, edited or continued away (kept for preferences)
            "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens,
            "duration_s": None if row.duration_ms is None else round(row.duration_ms / 1000, 3),
            "first_token_s": None if row.first_token_ms is None else round(row.first_token_ms / 1000, 3),
            "tokens_per_s": tokens_per_second(row.completion_tokens, row.duration_ms, row.first_token_ms),
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
        include_flagged: bool = False,
        user: str | None = None,
    ) -> export_files.ExportResult:
        """Write the user's (or everyone's) ratings and A/B votes as a TRL dataset folder. Generations the
        safety check flagged or blocked are left out (and counted on the card) unless `include_flagged`;
        blocked ones hold a notice, not the output, and never make a record of the training formats."""
        if fmt not in export.FORMATS:
            raise StudioError(f"unknown export format {quote(fmt)}; formats: {', '.join(export.FORMATS)}")
        try:
            fraction = float(split)
        except (TypeError, ValueError):
            raise StudioError(f"the test split must be a number, not {quote(split)}") from None
        when = parse_date(since, "since")
        if all_users and not self.is_admin(user):
            raise StudioError("only an admin may export every user's data")
        uid = None if all_users else self.user_id(user)
        with export.paused_gc():
            return self._export(
                fmt, out, uid, tab, when, parquet=parquet, fraction=fraction, include_flagged=include_flagged
            )

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
        include_flagged: bool = False,
    ) -> export_files.ExportResult:
        blocked: list[dict[str, Any]] = []
        with Session(self.engine) as session:
            rated = storage.rated_rows(session, user_id=uid, tab=tab or None, since=when)
            prefs = (
                storage.preference_rows(session, user_id=uid, tab=tab or None, since=when)
                if fmt in ("dpo", "reward", "pickapic")  # sft and kto use votes only
                else []
            )
            if fmt == "safety":
                blocked = storage.blocked_outputs(session, user_id=uid, tab=tab or None, since=when)
                marks: dict[int, str] = {}
            else:
                marks = storage.moderated_generations(session)
        rated, prefs, left_out = without_moderated(rated, prefs, marks, keep_flagged=include_flagged)
        data_dir = self.settings.data_dir

        def exists(relative: str) -> bool:
            try:
                return bool(self.media_path(relative).is_file())
            except StudioError:
                return False

        data = export.build(fmt, rated, prefs, exists=exists, blocked=blocked)
        data.skipped.update(left_out)
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
        # In the data dir's own temp folder (swept on a schedule), removed at once when refused or failed,
        # and the zip by `discard_export` once Gradio has its copy to serve.
        exports = self.settings.temp_dir / "exports"
        exports.mkdir(parents=True, exist_ok=True)
        place = Path(tempfile.mkdtemp(prefix="studio-export-", dir=exports))
        folder = place / f"studio-{fmt}"
        try:
            result = self.export(fmt, folder, **options)
            # A name nobody can guess, by which only its maker may fetch it (also from Gradio's cached copy).
            name = place / f"studio-{fmt}-{secrets.token_hex(8)}"
            archive = shutil.make_archive(str(name), "zip", root_dir=folder)
        except BaseException:
            shutil.rmtree(place, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # the zip holds it all
        self.claim_file(options.get("user"), Path(archive).name)
        return Path(archive), result.summary().replace(str(folder), f"studio-{fmt}.zip")

    def discard_export(self, archive: str | Path | None) -> None:
        """Remove an export's zip (and its folder) from the temp folder; anything else is left alone."""
        if not archive:
            return
        place = Path(archive).resolve().parent
        exports = (self.settings.temp_dir / "exports").resolve()
        if place.parent == exports and place.name.startswith("studio-"):
            shutil.rmtree(place, ignore_errors=True)
