"""Property-based fuzzing (hypothesis) of every validator the server runs on input from outside.

Each property: any input either passes and the result is within the documented bounds, or is refused
with the studio's own error type (a message for a person), never with a crash of another type.
Validators covered: sampling and image parameters, prompts, code settings and templates, votes,
models.yaml, init images, `--param` values, account names and passwords, logins, media file names and
the file-route guard.
"""

from __future__ import annotations

import asyncio
import io
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio import cli
from studio.backends.params import ChatParams, ImageParams
from studio.config import ConfigError, load_config
from studio.errors import StudioError
from studio.formats import png
from studio.security.accounts import UsersError, UserStore, add_user
from studio.security.guard import Guard, GuardPolicy
from studio.service import Studio
from studio.service.checks import MAX_PROMPT_CHARS, params_for, prompt_text
from studio.service.code import code_settings

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.binary(max_size=10),
)
values = st.one_of(
    scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=3)
)
chat_names = st.sampled_from([*ChatParams.model_fields, "bogus", ""])
image_names = st.sampled_from([*ImageParams.model_fields, "bogus"])


def finite_and_in_range(params: Any) -> None:
    for name, info in type(params).model_fields.items():
        value = getattr(params, name)
        if isinstance(value, float):
            assert math.isfinite(value), name
        for meta in info.metadata:
            for bound, check in (("ge", "__ge__"), ("gt", "__gt__"), ("le", "__le__"), ("lt", "__lt__")):
                limit = getattr(meta, bound, None)
                if limit is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                    assert getattr(value, check)(limit), f"{name}={value} breaks {bound} {limit}"


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from studio import Settings
    from tests.conftest import FAKE_MODELS, write_models

    folder = tmp_path_factory.mktemp("fuzz")
    image = "  - id: painter\n    tabs: [image]\n    backend: fake-image\n    source: fake/p\n"
    made = Studio.from_settings(
        Settings.from_env(models_file=write_models(folder, FAKE_MODELS + image), data_dir=folder / "d")
    )
    yield made
    made.close()


@FUZZ
@given(st.dictionaries(chat_names, values, max_size=6))
def test_chat_parameters(studio: Studio, params: dict[str, Any]) -> None:
    try:
        validated = params_for(studio.config.model("fake"), params, "chat")
    except StudioError as exc:
        assert str(exc).startswith("invalid parameters")
        return
    finite_and_in_range(validated)


@FUZZ
@given(st.dictionaries(image_names, values, max_size=6))
def test_image_parameters(studio: Studio, params: dict[str, Any]) -> None:
    try:
        validated = params_for(studio.config.model("painter"), params, "image")
    except StudioError:
        return
    finite_and_in_range(validated)
    assert validated.width % 8 == 0 and validated.height % 8 == 0


@FUZZ
@given(st.one_of(values, st.text(), st.integers(MAX_PROMPT_CHARS - 2, MAX_PROMPT_CHARS + 2).map("é".__mul__)))
def test_prompts(message: Any) -> None:
    try:
        text = prompt_text(message)
    except StudioError:
        return
    assert isinstance(text, str) and text.strip() and len(text) <= MAX_PROMPT_CHARS


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["mode", "language", "source_language", "error", "template", "other"]),
        st.one_of(values, st.sampled_from(["write", "fix", "python", "rust", "{input}", "{nope}"])),
        max_size=5,
    )
)
def test_code_settings(settings_: dict[str, Any]) -> None:
    try:
        chosen = code_settings(settings_)
    except StudioError:
        return
    assert chosen.mode and chosen.language


@FUZZ
@given(st.integers(min_value=-5, max_value=10**12), values)
def test_votes(studio: Studio, generation_id: int, vote: Any) -> None:
    try:
        studio.rate(generation_id, vote)
    except StudioError:
        return
    raise AssertionError("no generation exists, so no vote can be accepted")


yaml_bodies = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda entries: "models:\n" + "".join(entries),
        st.lists(
            st.builds(
                "  - id: {}\n    tabs: {}\n    backend: {}\n    source: {}\n    defaults: {}\n".format,
                st.sampled_from(["m", "a b", "", "../x", "ok-1"]),
                st.sampled_from(["[chat]", "[image]", "[]", "chat", "[nope]"]),
                st.sampled_from(["fake-chat", "fake-image", "unknown"]),
                st.sampled_from(["fake/x", "''", "/tmp"]),
                st.sampled_from(["{}", "{temperature: .nan}", "{temperature: 9}", "{steps: 4}", "[1]"]),
            ),
            max_size=3,
        ),
    ),
)


@FUZZ
@given(yaml_bodies)
def test_models_yaml(tmp_path_factory: pytest.TempPathFactory, body: str) -> None:
    from studio.backends import check_models

    path = tmp_path_factory.mktemp("yaml") / "models.yaml"
    path.write_text(body, encoding="utf-8")
    try:
        config = load_config(path)
        check_models(config)
    except ConfigError as exc:
        assert str(exc)
        return
    assert config.models


@FUZZ
@given(
    st.one_of(st.binary(max_size=200), st.builds(lambda b: b"\x89PNG\r\n\x1a\n" + b, st.binary(max_size=100)))
)
def test_init_images(data: bytes) -> None:
    try:
        image = png.load_init_image(data)
    except ValueError as exc:
        assert str(exc)
        return
    assert image.size[0] > 0


def test_a_valid_init_image_passes() -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="PNG")
    assert png.load_init_image(buffer.getvalue()).size == (16, 16)


@FUZZ
@given(st.text(max_size=40))
def test_cli_params(text: str) -> None:
    import argparse

    try:
        key, value = cli.parse_param(text)
    except argparse.ArgumentTypeError:
        return
    assert key and key == key.strip() and not isinstance(value, (dict, list))


@FUZZ
@given(st.text(max_size=70), st.text(max_size=20))
def test_account_names_and_passwords(
    tmp_path_factory: pytest.TempPathFactory, name: str, password: str
) -> None:
    path = tmp_path_factory.mktemp("users") / "users.json"
    try:
        add_user(path, name, password)
    except UsersError as exc:
        assert str(exc) and not path.exists()
        return
    assert UserStore(path)(name, password)


@pytest.fixture(scope="module")
def one_account(tmp_path_factory: pytest.TempPathFactory) -> UserStore:
    path = tmp_path_factory.mktemp("login") / "users.json"
    add_user(path, "alice", "alice-password")
    return UserStore(path)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(values, st.one_of(values, st.text(max_size=2000)))
def test_logins(one_account: UserStore, name: Any, password: Any) -> None:
    assert one_account(name, password) is False


@FUZZ
@given(st.text(max_size=60))
def test_media_file_names(name: str) -> None:
    generation_id = png.media_generation_id(name)
    assert generation_id is None or (generation_id >= 0 and name.startswith(f"{generation_id}-"))


@FUZZ
@given(st.text(alphabet=st.sampled_from("./%2e5fabc-_=:~\\\x00 "), max_size=60))
def test_file_route_paths(tmp_path_factory: pytest.TempPathFactory, tail: str) -> None:
    data = Path("/tmp/fuzz-data").resolve()
    policy = GuardPolicy(auth=False, data_dir=data, media_dir=data / "media", media_allowed=lambda u, p: True)
    guard = Guard(lambda *a: None, policy)  # type: ignore[arg-type]
    for prefix in (
        "/gradio_api/file=",
        "/gradio_api/file=/tmp/fuzz-data/",
        "/gradio_api/file=/tmp/fuzz-data/media/",
    ):
        # In a thread of its own: the browser tests' Playwright keeps an event loop running in this one.
        with ThreadPoolExecutor(1) as pool:
            refusal = pool.submit(asyncio.run, guard._check_file(prefix + tail, None)).result()
        target = Path(prefix.split("=", 1)[1] + tail.replace("\x00", ""))
        if refusal is None and "\x00" not in tail:
            resolved = Path(str(target)).resolve() if str(target) else Path.cwd()
            # Nothing under the data dir but media/ is ever let through.
            assert not resolved.is_relative_to(data) or resolved.is_relative_to(data / "media"), resolved
