"""The safety layer's admin part of the service: the policy an admin sees and changes, checks run by hand,
and the audit log of every flag, block and checker fault.

Owns: `SafetyAdmin` (`safety_policy`, `set_safety_policy`, `set_exposed`, `safety_check`, `safety_log`).
Only admins change the policy or read the log (the one local user is an admin); checks by hand are open to
anyone who may generate.
Ignores: the checks of runs (service/safety.py, called by runs.py) and how the UI or CLI shows the answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import Session

from studio import storage
from studio.errors import StudioError
from studio.formats import png
from studio.service.core import StudioCore

MAX_CHECK_CHARS = 100_000


class SafetyAdmin(StudioCore):
    """`Studio.safety_*`: the policy, checks by hand, the audit log."""

    def _require_admin(self, user: str | None, what: str) -> None:
        if not self.is_admin(user):
            raise StudioError(f"only an admin may {what}")

    def safety_policy(self) -> dict[str, Any]:
        """Each tab's mode, each category's threshold, the checkers and whether the studio is exposed."""
        return self.safety.policy()

    def set_exposed(self, exposed: bool) -> None:
        """Set by `launch`: tabs without a policy in models.yaml block (not flag) when exposed."""
        self.safety.exposed = bool(exposed)

    def set_safety_policy(
        self,
        *,
        modes: dict[str, str] | None = None,
        thresholds: dict[str, Any] | None = None,
        user: str | None = None,
    ) -> dict[str, Any]:
        """An admin's change, until the server stops (models.yaml's `safety:` keeps it for good)."""
        self._require_admin(user, "change the safety policy")
        for tab, mode in (modes or {}).items():
            self.safety.set_mode(tab, mode)
        for category, value in (thresholds or {}).items():
            self.safety.set_threshold(category, value)
        return self.safety.policy()

    def safety_check(
        self, *, text: str | None = None, image: str | Path | None = None, tab: str = "chat"
    ) -> dict[str, Any]:
        """Run the configured checkers by hand: every score, the checkers that failed, and the verdict under
        `tab`'s mode (or `flag` when that tab's mode is off)."""
        if (text is None) == (image is None):
            raise StudioError("give a text or a picture to check (one of them)")
        if text is not None:
            if not isinstance(text, str) or not text.strip():
                raise StudioError("the text to check is empty")
            if len(text) > MAX_CHECK_CHARS:
                raise StudioError(f"the text is {len(text)} characters long; the limit is {MAX_CHECK_CHARS}")
            scored, media = self.safety.score_texts([text])[0], "text"
        else:
            try:
                picture = png.load_init_image(str(image))
            except ValueError as exc:
                raise StudioError(str(exc).replace("the init image", "the picture")) from None
            scored, media = self.safety.score_image(picture), "image"
        mode = self.safety.mode(tab)
        verdict = self.safety.judge(scored, "flag" if mode == "off" else mode)
        return {
            "media": media,
            "checkers": self.safety.checkers(media),
            "scores": [
                {
                    "checker": checker,
                    "category": s.category,
                    "score": round(s.score, 4),
                    "threshold": self.safety.threshold(s.category),
                }
                for checker, s in scored.scores
            ],
            "faults": [{"checker": checker, "reason": reason} for checker, reason in scored.faults],
            "mode": mode,
            "verdict": verdict.action,
            "category": verdict.category,
        }

    def safety_log(
        self, *, limit: int = 200, tab: str | None = None, user: str | None = None
    ) -> list[dict[str, Any]]:
        """The latest flags, blocks and faults, newest first: user, tab, stage, action, category, score,
        checker, time (admins only)."""
        self._require_admin(user, "read the safety log")
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise StudioError("the limit must be a whole number from 1 to 10000")
        with Session(self.engine) as session:
            rows = storage.list_safety_events(session, limit=limit, tab=tab or None)
        for row in rows:
            row["created_at"] = row["created_at"].isoformat(timespec="seconds")
        return rows
