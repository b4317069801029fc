"""The Image tab's service with a fake painter: rows per picture, PNG metadata, votes, reuse, bad input."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from sqlmodel import Session, select

from studio import storage
from studio.cli import main
from studio.formats import png
from studio.service import Studio, StudioError
from tests.conftest import write_models

MODELS = """
models:
  - id: painter
    tabs: [image]
    backend: fake-image
    source: fake/painter
    defaults: {steps: 3, width: 64, height: 64, guidance: 5.0}
    loras:
      - {id: ink, source: ./ink-lora, scale: 0.8}
  - id: chatty
    tabs: [chat]
    backend: fake-chat
    source: fake/chatty
"""


@pytest.fixture
def studio(make_studio) -> Studio:
    return make_studio(MODELS)


def rows(studio: Studio) -> list[storage.Generation]:
    with Session(studio.engine) as s:
        return list(s.exec(select(storage.Generation).order_by(storage.Generation.id)))


def png_bytes(size: tuple[int, int] = (32, 32), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "red" if mode == "RGB" else None).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_job_streams_progress_and_stores_one_row_and_png_per_picture(studio: Studio) -> None:
    updates = list(studio.image(model_id="painter", prompt="a red fox", params={"num_images": 2, "seed": 40}))
    steps = [(u.step, u.total) for u in updates if not u.done and u.status == "running"]
    assert steps == [(1, 3), (2, 3), (3, 3)]
    final = updates[-1]
    assert final.done and final.status == "ok" and final.seeds == [40, 41] and len(final.files) == 2
    stored = rows(studio)
    assert [r.seed for r in stored] == [40, 41] and [r.params["index"] for r in stored] == [0, 1]
    assert stored[0].params["batch"] == stored[1].params["batch"] and stored[0].params["steps"] == 3
    for row, path in zip(stored, final.files, strict=True):
        assert studio.media_path(row.files[0]) == path and path.exists()
        chunks = png.read_png_parameters(path)
        assert chunks["studio_generation_id"] == str(row.id)
        parsed = png.parse_parameters(chunks["parameters"])
        assert parsed["prompt"] == "a red fox" and parsed["Seed"] == str(row.seed) and parsed["Steps"] == "3"
    assert [gid for gid, _, _ in studio.recent_images()] == [stored[1].id, stored[0].id]


def test_same_seed_same_picture_and_reuse_settings(studio: Studio) -> None:
    first = list(
        studio.image(model_id="painter", prompt="sea", params={"seed": 7, "negative_prompt": "fog"})
    )[-1]
    again = list(
        studio.image(model_id="painter", prompt="sea", params={"seed": 7, "negative_prompt": "fog"})
    )[-1]
    assert Image.open(first.files[0]).tobytes() == Image.open(again.files[0]).tobytes()
    settings = studio.generation_settings(first.generation_ids[0])
    assert settings["model"] == "painter" and settings["prompt"] == "sea"
    assert settings["params"]["seed"] == 7 and settings["params"]["negative_prompt"] == "fog"
    with pytest.raises(StudioError, match="does not exist"):
        studio.generation_settings(first.generation_ids[0], user="someone-else")


def test_votes_are_per_picture(studio: Studio) -> None:
    final = list(studio.image(model_id="painter", prompt="two", params={"num_images": 2}))[-1]
    a, b = final.generation_ids
    studio.rate(a, "up")
    studio.rate(b, "down")
    assert (studio.rating(a), studio.rating(b)) == (1, -1)
    studio.rate(a, None)
    assert studio.rating(a) is None


def test_image_to_image_uses_the_init_picture_and_records_it(studio: Studio, tmp_path: Path) -> None:
    source = tmp_path / "init.png"
    source.write_bytes(png_bytes())
    final = list(studio.image(model_id="painter", prompt="p", params={"seed": 1}, init_image=source))[-1]
    assert Image.open(final.files[0]).getpixel((0, 0))[2] == 7, "the backend received the init image"
    assert rows(studio)[-1].params["img2img"] is True
    parsed = png.parse_parameters(png.read_png_parameters(final.files[0])["parameters"])
    assert "Denoising strength" in parsed
    generated = studio.generation_file(final.generation_ids[0])
    again = list(studio.image(model_id="painter", prompt="p", init_image=generated))[-1]
    assert again.status == "ok", "a gallery picture can be the next init image"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"prompt": "  "}, "empty"),
        ({"params": {"width": 100}}, "multiple of 8"),
        ({"params": {"width": 4096}}, "width=4096"),
        ({"params": {"steps": 0}}, "steps=0"),
        ({"params": {"guidance": float("nan")}}, "finite"),
        ({"params": {"num_images": 9}}, "num_images=9"),
        ({"params": {"scheduler": "warp"}}, "scheduler"),
        ({"params": {"lora": "nope"}}, "has no LoRA 'nope'; its LoRAs: ink"),
        ({"model_id": "chatty"}, "does not serve the image tab"),
        ({"init_image": b"not an image"}, "could not be read"),
        ({"init_image": b""}, "init image"),
    ],
)
def test_bad_input_is_refused_and_stores_nothing(studio: Studio, kwargs: dict, expected: str) -> None:
    call = {"model_id": "painter", "prompt": "a cat", **kwargs}
    with pytest.raises(StudioError, match=expected if expected != "init image" else "init image"):
        list(studio.image(**call))
    assert rows(studio) == []
    assert not (studio.settings.media_dir / "images").exists() or not any(
        (studio.settings.media_dir / "images").rglob("*.png")
    )


def test_failures_and_stops_are_stored_with_their_reason(studio: Studio) -> None:
    failed = list(studio.image(model_id="painter", prompt="FAIL please"))[-1]
    assert failed.status == "error" and "on purpose" in (failed.error or "") and failed.files == []
    done: list = []
    worker = threading.Thread(
        target=lambda: done.extend(studio.image(model_id="painter", prompt="SLOW", run_key="k"))
    )
    worker.start()
    deadline = time.time() + 5
    while not studio.cancel("k"):
        assert time.time() < deadline
        time.sleep(0.002)
    worker.join(5)
    assert done[-1].status == "stopped" and done[-1].files == []
    assert [(r.status, r.files) for r in rows(studio)] == [("error", []), ("stopped", [])]


def test_a_save_failure_leaves_no_half_written_job(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    real = png.save_png
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(png, "save_png", flaky)
    final = list(studio.image(model_id="painter", prompt="x", params={"num_images": 3}))[-1]
    assert final.status == "error" and "disk full" in (final.error or "")
    assert [(r.status, r.files) for r in rows(studio)] == [("error", [])]
    assert not any((studio.settings.media_dir / "images").rglob("*.png")), "the first picture was removed too"


def test_media_paths_cannot_escape_the_media_folder(studio: Studio) -> None:
    with pytest.raises(StudioError):
        studio.media_path("../studio.db")
    with pytest.raises(StudioError):
        studio.media_path("/etc/passwd")


def test_cli_generate_image(capsys, tmp_path: Path) -> None:
    args = ["--models", str(write_models(tmp_path, MODELS)), "--data-dir", str(tmp_path / "d")]
    code = main(
        ["generate", "image", "a lighthouse", *args, "--param", "num_images=2", "--param", "seed=5", "--json"]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["tab"] == "image" and out["seeds"] == [5, 6] and len(out["files"]) == 2
    assert all(Path(f).exists() for f in out["files"]) and out["params"]["seed"] == 5
    code = main(["generate", "image", "plain", *args])
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(printed) == 1 and printed[0].endswith(".png")
    code = main(["generate", "image", "x", *args, "--param", "width=100"])
    assert code == 2 and "multiple of 8" in capsys.readouterr().err


def test_image_endpoint_over_http(make_studio) -> None:
    """The /image API: pictures back and stored; server-side validation for API callers (NaN included)."""
    import httpx
    from gradio_client import Client

    from tests.helpers.served import serving

    studio = make_studio(MODELS)
    with serving(studio) as server:
        client = Client(server.url, verbose=False)
        # prompt, model, init image, strength, lora, lora scale, then IMAGE_PARAMS
        values = ["", 0.5, "", 1.0, "", 2, 5.0, 64, 64, 2, 11, "default"]
        gallery, _notice = client.predict("a boat", "painter", None, *values[1:], api_name="/image")
        assert len(gallery) == 2 and [r.seed for r in rows(studio)] == [11, 12]
        with pytest.raises(Exception, match="multiple of 8"):
            client.predict(
                "a boat",
                "painter",
                None,
                0.5,
                "",
                1.0,
                "",
                2,
                5.0,
                100,
                64,
                1,
                1,
                "default",
                api_name="/image",
            )
        body = '{"data": ["x", "painter", null, 0.5, "", 1.0, "", 2, NaN, 64, 64, 1, 1, "default"]}'
        with httpx.Client(base_url=server.url, timeout=30) as http:
            event = http.post(
                "gradio_api/call/image", content=body, headers={"content-type": "application/json"}
            )
            stream = http.get(f"gradio_api/call/image/{event.json()['event_id']}").text
        assert "event: error" in stream and len(rows(studio)) == 2
        picture = rows(studio)[0].files[0]
        with httpx.Client(base_url=server.url, timeout=30) as http:
            served = http.get(f"gradio_api/file={studio.settings.data_dir / picture}")
            blocked = http.get(f"gradio_api/file={studio.settings.data_dir / 'studio.db'}")
        assert served.status_code == 200 and served.content[:4] == b"\x89PNG"
        assert blocked.status_code in (403, 404)
