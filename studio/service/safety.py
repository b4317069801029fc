"""The safety stage: checks on every prompt before generation and on every output before it is shown.

Owns: `SafetyStage` (one per Studio: the policy of each tab, off | flag | block, from models.yaml's
`safety:` section, the default that follows exposure (flag for one local user, block behind --share,
--listen or a non-loopback host), an admin's changes, the checker models loaded on first use and kept,
scoring text and pictures), `Moderation` (one run's checks: the prompt, the streamed text at sentence
boundaries under `block` and the whole text when the turn ends, each picture; the notices and the audit
events it leaves) and `Verdict`.
Faults: a checker that fails or is not downloaded refuses the run under `block` (fail closed) and lets it
go on with a notice under `flag`. Audio has no offline classifier: only its text is checked.
Ignores: the run lifecycle (runs.py calls `Moderation` at its hooks), what a tab shows, and storage
details (the events go through `studio.storage`).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Engine
from sqlmodel import Session

from studio import storage
from studio.backends import BackendContext, BackendError, backend_class, short_error
from studio.backends.safety_base import SafetyChecker, Score
from studio.config import SAFETY_CATEGORIES, TABS, Settings, StudioConfig
from studio.errors import StudioError

log = logging.getLogger(__name__)

Mode = Literal["off", "flag", "block"]
MODES: tuple[str, ...] = ("off", "flag", "block")
FLAG = "⚑"
# A sentence ends at . ! or ? before a space, or at a line break (code: each line).
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


@dataclass
class Verdict:
    """What the stage decided about one input: "ok", "flag", "block" or "fault" (a checker failed)."""

    action: str = "ok"
    category: str = ""
    score: float = 0.0
    checker: str = ""
    detail: str = ""

    def words(self) -> str:
        if self.action == "fault":
            return f"the safety check could not run ({self.detail})"
        return f"{self.category} ({self.score:.2f}, checker {self.checker})"


@dataclass
class Scored:
    """Every checker's scores for one input, and the checkers that failed."""

    scores: list[tuple[str, Score]] = field(default_factory=list)  # (checker id, score)
    faults: list[tuple[str, str]] = field(default_factory=list)  # (checker id, reason)


class SafetyStage:
    """The studio's safety policy and checkers; `moderation(tab, user_id)` gives one run its checks."""

    def __init__(self, config: StudioConfig, settings: Settings, engine: Engine) -> None:
        self.config, self.engine = config, engine
        self.context = BackendContext(model_cache=settings.model_cache, base_dir=config.path.parent)
        self.exposed = False  # set by `launch`: --share, --listen or a non-loopback host
        self._modes: dict[str, str] = {}  # an admin's changes, until the server stops
        self._thresholds: dict[str, float] = {}
        self._checkers: dict[str, SafetyChecker] = {}
        self._lock = threading.Lock()

    # -- policy ------------------------------------------------------------------------------------------
    def mode(self, tab: str) -> str:
        configured = self.config.safety.policy.get(tab)  # type: ignore[call-overload]
        return self._modes.get(tab) or configured or ("block" if self.exposed else "flag")

    def threshold(self, category: str) -> float:
        return self._thresholds.get(category, self.config.safety.threshold(category))

    def policy(self) -> dict[str, Any]:
        """Every tab's mode, every category's threshold, the checkers and whether the studio is exposed."""
        return {
            "modes": {tab: self.mode(tab) for tab in TABS},
            "thresholds": {c: self.threshold(c) for c in SAFETY_CATEGORIES},
            "checkers": list(self.config.safety.checkers),
            "exposed": self.exposed,
        }

    def set_mode(self, tab: str, mode: str) -> None:
        if tab not in TABS:
            raise StudioError(f"unknown tab {tab!r}; tabs: {', '.join(TABS)}")
        if mode not in MODES:
            raise StudioError(f"unknown safety policy {mode!r}; use off, flag or block")
        self._modes[tab] = mode

    def set_threshold(self, category: str, value: Any) -> None:
        if category not in SAFETY_CATEGORIES:
            raise StudioError(f"unknown category {category!r}; categories: {', '.join(SAFETY_CATEGORIES)}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise StudioError(f"the threshold must be a number from 0 to 1, not {value!r}") from None
        if not 0.0 <= number <= 1.0:
            raise StudioError(f"the threshold must be a number from 0 to 1, not {value!r}")
        self._thresholds[category] = number

    def moderation(self, tab: str, user_id: int) -> Moderation:
        return Moderation(self, tab, self.mode(tab) if tab in TABS else "off", user_id)

    # -- checkers -----------------------------------------------------------------------------------------
    def checkers(self, media: str) -> list[str]:
        """The configured checker ids that read `media` ("text" or "image")."""
        out = []
        for checker_id in self.config.safety.checkers:
            spec = self.config.model(checker_id)
            cls = backend_class(spec.backend)
            if getattr(cls, "media", "text") == media:
                out.append(checker_id)
        return out

    def checker(self, checker_id: str) -> SafetyChecker:
        """The loaded checker (loaded on first use, then kept: the bundled ones are small)."""
        with self._lock:
            found = self._checkers.get(checker_id)
            if found is None:
                spec = self.config.model(checker_id)
                backend = backend_class(spec.backend)(spec, self.context)
                if not isinstance(backend, SafetyChecker):
                    raise BackendError(f"model {checker_id!r} is not a safety checker")
                backend.load()
                self._checkers[checker_id] = found = backend
            return found

    def score_texts(self, texts: list[str]) -> list[Scored]:
        out = [Scored() for _ in texts]
        for checker_id in self.checkers("text"):
            try:
                results = self.checker(checker_id).check_texts(texts)
            except Exception as exc:  # missing weights, a broken model: the caller's policy decides
                for scored in out:
                    scored.faults.append((checker_id, short_error(exc)))
                continue
            for scored, scores in zip(out, results, strict=True):
                scored.scores += [(checker_id, s) for s in scores]
        return out

    def score_image(self, image: Any) -> Scored:
        scored = Scored()
        for checker_id in self.checkers("image"):
            try:
                scored.scores += [(checker_id, s) for s in self.checker(checker_id).check_image(image)]
            except Exception as exc:
                scored.faults.append((checker_id, short_error(exc)))
        return scored

    def judge(self, scored: Scored, mode: str) -> Verdict:
        """The worst score over its category's threshold decides; a fault decides first under `block`."""
        if scored.faults and mode == "block":
            checker_id, reason = scored.faults[0]
            return Verdict("fault", "checker", 1.0, checker_id, reason)
        hits = [(cid, s) for cid, s in scored.scores if s.score >= self.threshold(s.category)]
        if hits:
            checker_id, worst = max(hits, key=lambda hit: hit[1].score)
            return Verdict(mode, worst.category, worst.score, checker_id, worst.label)
        if scored.faults:
            checker_id, reason = scored.faults[0]
            return Verdict("fault", "checker", 0.0, checker_id, reason)
        return Verdict()

    def unload(self) -> None:
        with self._lock:
            for checker in self._checkers.values():
                checker.unload()
            self._checkers.clear()

    def record(self, events: list[storage.SafetyEvent]) -> None:
        if events:
            with Session(self.engine) as session:
                storage.add_safety_events(session, events=events)


class Moderation:
    """One run's checks. `blocked` holds the verdict that stopped it; `notices` what the user should read."""

    def __init__(self, stage: SafetyStage, tab: str, mode: str, user_id: int) -> None:
        self.stage, self.tab, self.mode, self.user_id = stage, tab, mode, user_id
        self.blocked: Verdict | None = None
        self.blocked_stage = ""
        self.notices: list[str] = []
        self.pictures: dict[int, Verdict] = {}  # picture index -> its verdict when flagged or blocked
        self.picture_ids: dict[int, int] = {}  # picture index -> its generation row (image.py's save)
        self._events: list[tuple[str, Verdict, int | None, str | None]] = []
        self._text: list[str] = []
        self._held = ""  # text not yet released (block: until the sentence ends)

    @property
    def on(self) -> bool:
        return self.mode != "off"

    @property
    def holds_text(self) -> bool:
        """Under `block` the streamed text is released a sentence at a time, each checked first."""
        return self.mode == "block"

    def message(self) -> str:
        """The user's reason for a block: the category, or the checker's fault."""
        verdict = self.blocked or Verdict()
        what = "prompt" if self.blocked_stage == "input" else "output"
        if verdict.action == "fault":
            return f"Blocked: the safety check could not run, so the {what} was refused ({verdict.detail})."
        return f"Blocked by the safety check: the {what} was classed as {verdict.words()}."

    def withheld_notice(self) -> str:
        verdict = self.blocked or Verdict()
        category = "the checker failed" if verdict.action == "fault" else verdict.category
        return f"[withheld by the safety check: {category}]"

    def _decide(
        self, stage: str, verdict: Verdict, *, picture: int | None = None, text: str | None = None
    ) -> bool:
        """Note a verdict; True when it blocks."""
        if verdict.action == "ok":
            return False
        self._events.append((stage, verdict, picture, text if verdict.action == "block" else None))
        where = "prompt" if stage == "input" else "picture" if picture is not None else "answer"
        if verdict.action == "fault":
            if self.mode == "block":  # fail closed: the run (or only the picture) is refused
                if picture is None:
                    self.blocked, self.blocked_stage = verdict, stage
                return True
            notice = f"{FLAG} The {where} was not checked: {verdict.words()}."
            if notice not in self.notices:
                self.notices.append(notice)
            return False
        if verdict.action == "flag":
            self.notices.append(f"{FLAG} Flagged by the safety check: the {where} is {verdict.words()}.")
            return False
        if picture is None:
            self.blocked, self.blocked_stage = verdict, stage
        return True

    # -- the hooks of runs.py ------------------------------------------------------------------------------
    def check_input(self, prompt: str) -> bool:
        """Check the prompt; True when the run must not go on."""
        if not self.on:
            return False
        return self._decide("input", self.stage.judge(self.stage.score_texts([prompt])[0], self.mode))

    def feed(self, delta: str) -> str:
        """Take a streamed piece of text; return what may be shown now ("" while a sentence is held, or once
        blocked: `blocked` is then set and the run stops)."""
        self._text.append(delta)
        if not self.holds_text:
            return delta
        self._held += delta
        ends = list(_SENTENCE_END.finditer(self._held))
        if not ends:
            return ""
        cut = ends[-1].end()
        ready, self._held = self._held[:cut], self._held[cut:]
        return "" if self._check_output(ready) else ready

    def finish(self) -> str:
        """At the end of the text: check what is held and the whole text; return the rest to show."""
        if not self.on or self.blocked:
            return ""
        held, self._held = self._held, ""
        whole = "".join(self._text)
        if not whole.strip():
            return ""
        if self.holds_text and held.strip() and self._check_output(held):
            return ""
        self._check_output(whole)
        return "" if self.blocked else held

    def _check_output(self, text: str) -> bool:
        verdict = self.stage.judge(self.stage.score_texts([text])[0], self.mode)
        # A flag or fault already noted for this answer is not noted again for every sentence.
        noted = any(e[0] == "output" and e[2] is None for e in self._events)
        if verdict.action in ("flag", "fault") and noted:
            return False
        return self._decide("output", verdict, text="".join(self._text))

    def check_picture(self, image: Any, index: int) -> bool:
        """Check one picture; True when it must be withheld."""
        if not self.on:
            return False
        verdict = self.stage.judge(self.stage.score_image(image), self.mode)
        if verdict.action in ("flag", "block") or (verdict.action == "fault" and self.mode == "block"):
            self.pictures[index] = verdict
        return self._decide("output", verdict, picture=index)

    def picture_blocked(self, index: int) -> bool:
        verdict = self.pictures.get(index)
        return verdict is not None and (verdict.action == "block" or verdict.action == "fault")

    def record(self, generation_id: int | None) -> None:
        """Write the audit events, linked to the run's row (a picture's to its own row)."""
        events = [
            storage.SafetyEvent(
                user_id=self.user_id,
                generation_id=generation_id
                if picture is None
                else self.picture_ids.get(picture, generation_id),
                tab=self.tab,
                stage=stage,
                action=verdict.action,
                category=verdict.category,
                score=verdict.score,
                checker=verdict.checker,
                detail=(f"picture {picture}: " if picture is not None else "") + verdict.detail[:500],
                withheld=text,
            )
            for stage, verdict, picture, text in self._events
        ]
        try:
            self.stage.record(events)
        except Exception:  # the audit must not lose the run's own save; the log keeps the trace
            log.exception("could not store %d safety event(s)", len(events))
