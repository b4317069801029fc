"""The safety layer's admin and data part of the service: the policy an admin sees and changes, checks run
by hand, the audit log of every flag, block and checker fault, and what the other parts do with the marks.

Owns: `SafetyAdmin` (`safety_policy`, `set_safety_policy`, `set_exposed`, `safety_check`, `safety_log`);
what the rest of the service does with the stage's marks: `withheld_placeholder` (the picture shown instead
of a withheld one) and `without_moderated` (exports and training runs leave flagged and blocked rows out).
Only admins change the policy or read the log (the one local user is an admin); checks by hand are open to
anyone who may generate.
Ignores: the checks of runs (service/safety.py, called by runs.py) and how the UI or CLI shows the answers.
"""

from __future__ import annotations

import os
import tempfile
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


def withheld_placeholder() -> Path:
    """The picture shown instead of a withheld one: a blurred grey field, the same for every picture (made
    from nothing of the withheld picture, so it gives nothing away), in the temporary folder Gradio serves."""
    path = Path(tempfile.gettempdir()) / "studio-withheld.png"
    if not path.exists():
        from PIL import Image, ImageDraw, ImageFilter

        picture = Image.new("RGB", (256, 256), (150, 150, 155))
        draw = ImageDraw.Draw(picture)
        for i in range(0, 256, 32):
            top = (i * 7) % 256
            draw.ellipse((i - 40, top - 40, i + 60, top + 60), fill=(120 + i // 4, 125, 140))
        picture = picture.filter(ImageFilter.GaussianBlur(24))
        ImageDraw.Draw(picture).text((58, 122), "withheld by the safety check", fill=(30, 30, 30))
        partial = path.with_suffix(f".{os.getpid()}.tmp.png")
        picture.save(partial)
        os.replace(partial, path)
    return path


def without_moderated(
    rated: list[dict[str, Any]],
    prefs: list[dict[str, Any]],
    marks: dict[int, str],
    *,
    keep_flagged: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """Rated rows and A/B votes without the generations the safety check flagged or blocked (`marks`:
    `storage.moderated_generations`), and how many of each were left out, for exports and training runs."""
    dropped = {gid for gid, mark in marks.items() if not (keep_flagged and mark == "flag")}
    if not dropped:
        return rated, prefs, {}
    present = {r["id"] for r in rated} | {p[k]["id"] for p in prefs for k in ("a", "b")}
    left_out: dict[str, int] = {}
    for gid in present & dropped:
        why = f"{'flagged' if marks[gid] == 'flag' else 'blocked'} by the safety check"
        left_out[why] = left_out.get(why, 0) + 1
    rated = [r for r in rated if r["id"] not in dropped]
    prefs = [p for p in prefs if p["a"]["id"] not in dropped and p["b"]["id"] not in dropped]
    return rated, prefs, left_out
