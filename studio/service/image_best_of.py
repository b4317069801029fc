"""Best of n in the Image tab: a job's pictures scored by an image scorer (CLIP-style), the best first.

Owns: the `scorer` parameter of `image` (a model of the `scorer` tab that scores pictures: backend
`transformers-clip`; a text scorer is refused), scoring the job's saved pictures against its prompt in the
scorer's turn on its device, storing each score and the round (`best_of_round`: chosen, candidates) with
the rows, and putting the best picture first in the job's result with a notice. n is the job's
`num_images` (1-8, each picture with its own recorded seed). A scorer that fails leaves the pictures in
their order, with a notice.
Ignores: drawing and saving the pictures (image.py) and what the scorer computes (backends/clip_scorer.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from sqlmodel import Session

from studio import storage
from studio.backends import backend_class, short_error
from studio.errors import StudioError
from studio.service.checks import require_weights
from studio.service.image import ImageTab
from studio.service.types import ImageUpdate, Status

log = logging.getLogger(__name__)


def scorer_judges(spec: Any) -> str:
    """What a scorer's backend scores: "text" (reward models) or "image" (CLIP)."""
    return str(getattr(backend_class(spec.backend), "judges", "text"))


class ImageBestOf(ImageTab):
    """`image` with `params={"num_images": n, "scorer": id}`."""

    def _image_scorer(self, scorer: Any) -> str:
        try:
            spec = self.config.model(str(scorer))
        except KeyError as exc:
            raise StudioError(exc.args[0]) from None
        if "scorer" not in spec.tabs or scorer_judges(spec) != "image":
            what = (
                "answers (text)"
                if "scorer" in spec.tabs
                else f"nothing: it serves the {', '.join(spec.tabs)} tab"
            )
            raise StudioError(
                f"model {spec.id!r} scores {what}; the Image tab needs an image scorer "
                "(backend transformers-clip)"
            )
        require_weights(spec, cache=self.settings.model_cache, base_dir=self.config.path.parent)
        return spec.id

    def image(self, *, params: dict[str, Any] | None = None, **kwargs: Any) -> Iterator[ImageUpdate]:
        if not isinstance(params, dict) or params.get("scorer") in (None, ""):
            rest = {k: v for k, v in params.items() if k != "scorer"} if isinstance(params, dict) else params
            return super().image(params=rest, **kwargs)
        rest = dict(params)
        scorer = self._image_scorer(rest.pop("scorer"))
        return self._scored(scorer, super().image(params=rest, **kwargs), str(kwargs.get("prompt", "")))

    def _scored(self, scorer: str, job: Iterator[ImageUpdate], prompt: str) -> Iterator[ImageUpdate]:
        final = None
        for update in job:
            if update.done:
                final = update
                break
            yield update
        assert final is not None
        if final.status != Status.OK or not final.files:
            yield final
            return
        began = time.perf_counter()
        yield ImageUpdate(notices=[f"scoring {len(final.files)} picture(s) with {scorer}"])
        ids, files, seeds = list(final.generation_ids), list(final.files), list(final.seeds)
        scores: list[float | None] = [None] * len(ids)
        try:
            from PIL import Image

            with self.manager.use(scorer) as backend:
                score = getattr(backend, "score_images", None)
                if score is None:
                    raise StudioError(f"model {scorer!r} cannot score pictures")
                pictures = [Image.open(path) for path in files]
                scores = [float(v) for v in score(prompt, pictures)]
            order = sorted(range(len(ids)), key=lambda i: -(scores[i] or 0.0))
            note = (
                f"best of {len(ids)} by {scorer}: picture {order[0] + 1} (score {scores[order[0]]:.3g}) first"
            )
        except Exception as exc:
            log.warning("image scorer %s failed", scorer, exc_info=True)
            order = list(range(len(ids)))
            note = (
                f"the scorer {scorer} failed ({short_error(exc)}); the pictures stay in their order, unscored"
            )
        candidates = [
            {"generation_id": i, "score": s, "seed": seed}
            for i, s, seed in zip(ids, scores, seeds, strict=False)
        ]
        with Session(self.engine) as session:
            storage.record_scores(
                session,
                scores=dict(zip(ids, scores, strict=True)),
                best_of={"chosen": ids[order[0]], "candidates": candidates, "scorer": scorer,
                         "seconds": time.perf_counter() - began},
            )  # fmt: skip
        final.generation_ids = [ids[i] for i in order]
        final.files = [files[i] for i in order]
        final.seeds = [seeds[i] for i in order] if len(seeds) == len(ids) else seeds
        final.notices = [note, *final.notices]
        yield final
