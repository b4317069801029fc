"""Best of n in Chat and Code: n candidate answers, each scored by a scorer (reward model), the best shown.

Owns: the `best_of` and `scorer` parameters of `chat` (and so of `code`): checking them (n from 1 to 8, a
model of the `scorer` tab, present here), running the n candidates as ordinary turns one after the other
(the first as asked, the others as regenerations of it, each with its own recorded seed: base, base + 1,
...), so every candidate is a stored alternative of the turn that the answer browser pages through;
scoring them in the scorer's turn on its device; making the best the active answer; storing each score
and the round (n, scorer, chosen, candidates) with the rows; the progress ("candidate k of n") and the
cost (time and tokens). A scorer that fails leaves the first finished candidate shown, with a notice.
And votes: a thumbs up on a candidate the scorer did not choose is stored as an A/B preference of that
candidate over the scorer's choice (training data for the next reward model).
Ignores: how a turn runs (chat.py), what a scorer computes (backends/transformers_reward.py).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from typing import Any

from sqlmodel import Session

from studio import storage
from studio.backends import Message, short_error
from studio.errors import StudioError
from studio.service.chat import Action, ChatTab
from studio.service.checks import require_weights
from studio.service.image_best_of import scorer_judges
from studio.service.types import ChatUpdate, Status

log = logging.getLogger(__name__)

MAX_BEST_OF = 8
SCORER_TAB = "scorer"


def best_of_fields(params: dict[str, Any]) -> dict[str, Any]:
    """What `studio generate --json` adds for a Best-of-n turn: candidates and the chosen one."""
    round_ = params.get("best_of_round") or {}
    if "candidates" not in round_:
        return {}
    return {"candidates": round_["candidates"], "chosen": round_.get("chosen")}


class BestOfN(ChatTab):
    """`chat` with `params={"best_of": n, "scorer": id}`; `rate` that turns a disagreeing vote into a
    preference."""

    def _best_of_request(
        self, params: dict[str, Any] | None, tab: str
    ) -> tuple[int, str | None, dict[str, Any]]:
        """(n, scorer id, the other parameters), checked. n = 1 with no scorer is an ordinary turn."""
        if params is not None and not isinstance(params, dict):  # the turn itself refuses it, in its words
            return 1, None, params
        rest = dict(params or {})
        n, scorer = rest.pop("best_of", None), rest.pop("scorer", None)
        if n in (None, ""):
            n = 1
        if isinstance(n, float) and n.is_integer():
            n = int(n)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_BEST_OF:
            raise StudioError(f"best_of is a whole number from 1 to {MAX_BEST_OF}, not {n!r}")
        scorer = str(scorer).strip() if scorer not in (None, "") else None
        if n > 1 and scorer is None:
            raise StudioError(
                "best of n needs a scorer: pick a reward model (`studio models list`, tab scorer)"
            )
        if scorer is not None:
            try:
                spec = self.config.model(scorer)
            except KeyError as exc:
                raise StudioError(exc.args[0]) from None
            if SCORER_TAB in spec.tabs and scorer_judges(spec) != "text":
                raise StudioError(
                    f"model {scorer!r} scores pictures (an image scorer); Chat and Code need a reward model "
                    "that scores text answers"
                )
            if SCORER_TAB not in spec.tabs:
                raise StudioError(
                    f"model {scorer!r} serves the {', '.join(spec.tabs)} tab, it is not a scorer; pick a "
                    "reward model (tab scorer) to choose the best of n"
                )
            require_weights(spec, cache=self.settings.model_cache, base_dir=self.config.path.parent)
        return n, scorer, rest

    def chat(self, *, params: dict[str, Any] | None = None, **kwargs: Any) -> Iterator[ChatUpdate]:
        n, scorer, rest = self._best_of_request(params, kwargs.get("tab", "chat"))
        if n == 1:
            return super().chat(params=rest, **kwargs)
        if kwargs.get("action", "send") == "continue":
            raise StudioError(
                "Continue extends the shown answer; best of n applies to send, regenerate and edit"
            )
        return self._best_of(n, scorer or "", rest, **kwargs)

    def _best_of(
        self,
        n: int,
        scorer: str,
        params: dict[str, Any],
        *,
        conversation_id: int | None = None,
        action: Action = "send",
        turn_index: int | None = None,
        extras: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatUpdate]:
        base_seed = params.get("seed")
        if base_seed in (None, ""):
            base_seed = random.randrange(2**31)
        elif isinstance(base_seed, bool) or not isinstance(base_seed, int) or not 0 <= base_seed <= 2**32 - n:
            raise StudioError(f"seed must be a whole number from 0 to {2**32 - n} with best of {n}")
        began = time.perf_counter()
        finals: list[ChatUpdate] = []
        for k in range(1, n + 1):
            label = f"candidate {k} of {n}"
            turn = super().chat(
                params={**params, "seed": base_seed + k - 1},
                conversation_id=conversation_id,
                action=action if k == 1 else "regenerate",
                turn_index=turn_index if k == 1 else None,
                extras={**(extras or {}), "best_of_round": {"n": n, "k": k, "scorer": scorer}},
                **kwargs,
            )
            final = None
            for update in turn:
                if update.done:
                    final = update
                    break
                notices = [label, *update.notices]
                yield ChatUpdate(
                    update.text, status=update.status, conversation_id=update.conversation_id, notices=notices
                )
            assert final is not None
            finals.append(final)
            conversation_id = final.conversation_id
            if final.status == Status.STOPPED:
                break  # Stop ends the whole round: the candidates so far are scored
        yield from self._choose(finals, scorer, n, time.perf_counter() - began)

    def _choose(self, finals: list[ChatUpdate], scorer: str, n: int, seconds: float) -> Iterator[ChatUpdate]:
        ids = [f.generation_id for f in finals if f.generation_id is not None]
        with Session(self.engine) as session:
            rows = [row for i in ids if (row := storage.get_generation(session, generation_id=i)) is not None]
        finished = [r for r in rows if r.status == Status.OK]
        notices: list[str] = []
        scores: dict[int, float | None] = {r.id or 0: None for r in rows}
        chosen = finished[0] if finished else rows[-1]
        if len(finished) > 1 or (finished and len(rows) == 1):
            scoring = f"scoring {len(finished)} candidate(s) with {scorer}"
            yield ChatUpdate(chosen.output_text, conversation_id=chosen.conversation_id, notices=[scoring])
            try:
                values = self._score(scorer, finished[0], [r.output_text for r in finished])
                scores.update({r.id or 0: v for r, v in zip(finished, values, strict=True)})
                chosen = max(finished, key=lambda r: scores[r.id or 0] or float("-inf"))
            except Exception as exc:
                log.warning("scorer %s failed", scorer, exc_info=True)
                notices.append(
                    f"the scorer {scorer} failed ({short_error(exc)}); showing the first candidate unscored"
                )
        tokens = sum(r.completion_tokens or 0 for r in rows)
        k = rows.index(chosen) + 1
        score = scores.get(chosen.id or 0)
        picked = f"candidate {k} of {len(rows)}" + (f" (score {score:.3g})" if score is not None else "")
        notices.insert(0, f"best of {n} by {scorer}: {picked}; {tokens} tokens in {seconds:.1f} s for all")
        candidates = [{"generation_id": r.id, "score": scores[r.id or 0], "seed": r.seed} for r in rows]
        with Session(self.engine) as session:
            storage.record_scores(
                session,
                scores=scores,
                best_of={"chosen": chosen.id, "candidates": candidates, "tokens": tokens, "seconds": seconds},
            )
            if chosen.conversation_id is not None and chosen.turn_index is not None:
                storage.activate_turns(
                    session,
                    conversation_id=chosen.conversation_id,
                    from_index=chosen.turn_index,
                    generation_ids=[chosen.id or 0],
                )
        yield ChatUpdate(
            chosen.output_text,
            done=True,
            status=Status(chosen.status),
            generation_id=chosen.id,
            conversation_id=chosen.conversation_id,
            error=chosen.error,
            notices=[*notices, *chosen.notices],
        )

    def _score(self, scorer: str, turn: storage.Generation, answers: list[str]) -> list[float]:
        """The scorer's scores, in its turn on its device (it may load first)."""
        history = [Message(m["role"], m["content"]) for m in turn.history]
        with self.manager.use(scorer) as backend:
            score = getattr(backend, "score", None)
            if score is None:
                raise StudioError(f"model {scorer!r} cannot score answers")
            values = [float(v) for v in score(turn.prompt, answers, history)]
        if len(values) != len(answers):
            raise StudioError(f"the scorer gave {len(values)} scores for {len(answers)} answers")
        return values

    def rate(
        self, generation_id: int, vote: str | int | None, *, user: str | None = None, **kwargs: Any
    ) -> None:
        super().rate(generation_id, vote, user=user, **kwargs)
        if vote not in ("up", 1):
            return
        uid = self.user_id(user)
        with Session(self.engine) as session:
            row = storage.get_generation(session, generation_id=generation_id)
            round_ = (row.params.get("best_of_round") or {}) if row is not None else {}
            chosen = round_.get("chosen")
            if row is None or not isinstance(chosen, int) or chosen == row.id:
                return
            other = storage.get_generation(session, generation_id=chosen)
            if other is None or other.status != Status.OK or row.status != Status.OK:
                return
            # The person liked a candidate the scorer ranked lower: that disagreement is the preference
            # the next reward model should learn.
            storage.set_preference(
                session,
                user_id=uid,
                tab=row.tab,
                generation_a_id=row.id or 0,
                generation_b_id=chosen,
                choice="a",
            )
