"""The Image tab in a real browser: what a user clicks, checked against what the studio stored.

Every test runs the real diffusers backend on `tiny-sd` (see conftest.py), a random-weight Stable Diffusion
pipeline: 64x64 pictures of noise in well under a second, so the tests check structure, seeds and pixels
(same settings, same seed: the same picture), never what a picture shows. The server is shared, so the
gallery holds the pictures of earlier tests too: each test finds its own by generation id.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from .conftest import ImagePage
from .shared import BROWSER, expect, expect_no_error_overlay

pytestmark = BROWSER

SCREENSHOT = Path("/tmp/studio_image.png")
ERRORS = ".toast-body.error [data-testid=toast-text]"
# True when the first `n` pictures of the gallery grid have been fetched and decoded (later ones may be
# lazy-loaded, below the fold).
_GRID_LOADED_JS = """n => {
    const imgs = Array.from(document.querySelectorAll('#image-gallery .grid-container img')).slice(0, n);
    return imgs.length === n && imgs.every(img => img.complete && img.naturalWidth === 64);
}"""


def _caption(row: Any) -> str:
    return f"#{row.id} seed {row.seed}"


def _pixels(path: Path) -> Image.Image:
    with Image.open(path) as picture:
        return picture.convert("RGB")


def _same_pixels(a: Path, b: Path) -> bool:
    first, second = _pixels(a), _pixels(b)
    return first.size == second.size and ImageChops.difference(first, second).getbbox() is None


def _assert_ok(image: ImagePage, row: Any, prompt: str) -> None:
    assert (row.tab, row.model_id, row.status, row.error) == ("image", "tiny-sd", "ok", None)
    assert row.prompt == prompt and row.params["seed"] == row.seed
    path = image.file_of(row)
    assert path.is_file() and path.suffix == ".png", path
    with Image.open(path) as picture:
        assert picture.size == (row.params["width"], row.params["height"])
        assert picture.text["studio_generation_id"] == str(row.id)  # type: ignore[attr-defined]


@pytest.mark.browser
def test_generate_shows_progress_and_the_new_pictures(image: ImagePage) -> None:
    page = image.page
    expect(page.locator("#image-model input")).to_have_value(re.compile(r"^tiny-sd \((ready|loaded)\)$"))
    expect(image.slider("Steps")).to_have_value("3")  # models.yaml defaults
    expect(image.slider("Width")).to_have_value("64")
    expect(image.slider("Height")).to_have_value("64")
    expect(image.slider("Guidance")).to_have_value("5")
    expect(image.slider("Images")).to_have_value("1")
    expect(page.locator("#image-seed input")).to_have_value("")

    prompt = "a lighthouse at dusk, oil painting"
    page.locator("#image-prompt textarea").fill(prompt)
    image.set_slider("Images", 2)
    image.set_slider("Steps", 30)  # about 3 s here: time to see the steps go by
    last = image.last_image_id()
    page.locator("#image-generate").click()
    expect(page.locator("#image-notice")).to_contain_text(re.compile(r"Step \d+/30"))
    image.wait_until(lambda: image.last_image_id() > last, "the image generation rows")
    image.wait_idle()

    rows = image.image_rows(after=last)
    assert len(rows) == 2, [(r.id, r.status, r.error) for r in rows]
    seed = rows[0].seed
    assert [r.seed for r in rows] == [seed, seed + 1]
    assert [r.params["index"] for r in rows] == [0, 1]
    assert rows[0].params["batch"] == rows[1].params["batch"]
    for row in rows:
        _assert_ok(image, row, prompt)
        assert row.params["steps"] == 30 and row.params["num_images"] == 2 and row.params["img2img"] is False
        assert (row.params["width"], row.params["height"], row.params["guidance"]) == (64, 64, 5.0)
    assert image.file_of(rows[0]) != image.file_of(rows[1])
    assert not _same_pixels(image.file_of(rows[0]), image.file_of(rows[1])), "two seeds, two pictures"
    expect(page.locator("#image-notice")).to_have_text(f"2 picture(s), seed {seed}, {seed + 1}")

    # The gallery starts with the two new pictures, newest first, and shows them.
    assert image.grid_captions()[:2] == [_caption(rows[1]), _caption(rows[0])]
    page.wait_for_function(_GRID_LOADED_JS, arg=2)
    expect(page.locator("#image-info")).to_have_text("Select a picture to see how it was made.")
    page.screenshot(path=str(SCREENSHOT), full_page=True)


@pytest.mark.browser
def test_select_shows_the_settings_and_votes_on_that_picture(image: ImagePage) -> None:
    info = image.page.locator("#image-info")
    first, second = image.generate("a bowl of cherries", Images=2)
    assert first.seed is not None and second.seed == first.seed + 1

    image.select(second.id)
    expect(info).to_contain_text(f"seed {second.seed}")
    expect(info).to_contain_text("Prompt: a bowl of cherries")
    expect(info).to_contain_text("tiny-sd · 64x64 · 3 steps · guidance 5.0")
    expect(info).to_contain_text("no vote")

    image.page.locator("#image-like").click()
    image.wait_until(lambda: image.studio.rating(second.id) == 1, "the 👍 on the selected picture")
    expect(info).to_contain_text("👍")
    assert image.studio.rating(first.id) is None, "only the selected picture is rated"

    image.page.locator("#image-dislike").click()
    image.wait_until(lambda: image.studio.rating(second.id) == -1, "the 👎 replacing the 👍")
    expect(info).to_contain_text("👎")
    expect(info).not_to_contain_text("👍")
    assert image.studio.rating(first.id) is None

    # Selecting the other picture shows its own settings, and no vote.
    image.select(first.id)
    expect(info).to_contain_text(f"seed {first.seed}")
    expect(info).to_contain_text("no vote")


@pytest.mark.browser
def test_reuse_settings_reproduces_the_picture(image: ImagePage) -> None:
    page = image.page
    prompt = "a red bicycle"
    (original,) = image.generate(prompt, Steps=4)

    # Other settings on the controls, then back to the picture's.
    page.locator("#image-prompt textarea").fill("something else entirely")
    image.set_slider("Steps", 9)
    image.set_slider("Width", 72)
    image.set_slider("Images", 3)
    page.locator("#image-seed input").fill("12345")
    image.select(original.id)
    page.locator("#image-reuse").click()
    expect(page.locator("#image-prompt textarea")).to_have_value(prompt)
    expect(image.slider("Steps")).to_have_value("4")
    expect(image.slider("Width")).to_have_value("64")
    expect(image.slider("Height")).to_have_value("64")
    expect(image.slider("Images")).to_have_value("1")
    expect(page.locator("#image-seed input")).to_have_value(str(original.seed))

    (again,) = image.generate()
    _assert_ok(image, again, prompt)
    assert again.seed == original.seed and again.params["steps"] == 4 and again.params["num_images"] == 1
    assert _same_pixels(image.file_of(again), image.file_of(original)), "same settings, same picture"

    # A batch's second picture has its own seed (the batch seed + 1), and reuse takes that one. Alone, it
    # comes back up to rounding: a batch of 2 runs the convolutions on other shapes, which moves a few
    # 8-bit values by 1 on the CPU.
    _, second = image.generate("a yellow bicycle", Images=2)
    image.select(second.id)
    page.locator("#image-reuse").click()
    expect(page.locator("#image-seed input")).to_have_value(str(second.seed))
    expect(image.slider("Images")).to_have_value("1")
    (alone,) = image.generate()
    assert (alone.seed, alone.prompt, alone.params["num_images"]) == (second.seed, "a yellow bicycle", 1)
    difference = ImageChops.difference(_pixels(image.file_of(alone)), _pixels(image.file_of(second)))
    assert max(high for _, high in difference.getextrema()) <= 2, "the same picture, up to rounding"


@pytest.mark.browser
def test_use_as_init_image_runs_image_to_image(image: ImagePage) -> None:
    page = image.page
    (source,) = image.generate("a blue door")
    image.select(source.id)
    page.locator("#image-use-init").click()
    page.get_by_text("Image to image", exact=True).click()
    shown = page.locator("#image-init img")
    expect(shown).to_be_visible()
    expect(shown).to_have_attribute("src", re.compile(re.escape(image.file_of(source).name) + "$"))
    expect(shown).to_have_js_property("naturalWidth", 64)  # fetched and decoded

    (result,) = image.generate("a green door")
    _assert_ok(image, result, "a green door")
    assert result.params["img2img"] is True and result.params["strength"] == 0.75
    assert not _same_pixels(image.file_of(result), image.file_of(source))
    expect(page.locator("#image-notice")).to_have_text(f"1 picture(s), seed {result.seed}")


@pytest.mark.browser
def test_stop_stores_a_stopped_row_without_pictures(image: ImagePage) -> None:
    page = image.page
    shown = image.grid_captions()
    page.locator("#image-prompt textarea").fill("a very slow picture")
    image.set_slider("Steps", 150)  # about 8 s: Stop comes long before the end
    last = image.last_image_id()
    page.locator("#image-generate").click()
    expect(page.locator("#image-notice")).to_contain_text(re.compile(r"Step \d+/150"))
    page.locator("#image-stop").click()
    image.wait_until(lambda: image.last_image_id() > last, "the stopped generation row")
    image.wait_idle()

    (row,) = image.image_rows(after=last)
    assert (row.tab, row.status, row.files) == ("image", "stopped", []), (row.status, row.error, row.files)
    assert row.params["steps"] == 150 and row.prompt == "a very slow picture"
    expect(page.locator("#image-notice")).to_have_text("Stopped.")
    assert image.grid_captions() == shown, "a stopped job adds no picture"


@pytest.mark.browser
def test_bad_input_shows_an_error_and_stores_nothing(image: ImagePage) -> None:
    page = image.page
    errors = page.locator(ERRORS)
    image.generate("a picture to keep in view")
    shown = image.grid_captions()
    before = image.generation_count()

    for count, text in enumerate(("", "   \n  "), start=1):
        page.locator("#image-prompt textarea").fill(text)
        page.locator("#image-generate").click()
        expect(errors.filter(has_text="the message is empty")).to_have_count(count)

    # Width and height sliders move in steps of 8; the seed box takes any number.
    page.locator("#image-prompt textarea").fill("a fine prompt")
    page.locator("#image-seed input").fill("-5")
    page.locator("#image-generate").click()
    expect(errors.filter(has_text="seed")).to_have_count(1)
    expect(errors.filter(has_text="greater than or equal to 0")).to_have_count(1)

    # Only the toasts report it: no "Error" overlay hides the gallery or the notice.
    expect_no_error_overlay(
        page, ("image-gallery", "image-notice", "image-prompt", "image-seed"), "a refused run"
    )
    page.wait_for_timeout(300)  # a refused run must not start late either
    image.wait_idle()
    assert image.generation_count() == before
    assert image.grid_captions() == shown
    page.wait_for_function(_GRID_LOADED_JS, arg=1)


@pytest.mark.browser
def test_reload_keeps_the_gallery_newest_first(image: ImagePage) -> None:
    rows = image.generate("a stack of pancakes", Images=2)
    stored = image.studio.recent_images()
    captions = [caption for _, _, caption in stored]
    assert captions[:2] == [_caption(rows[1]), _caption(rows[0])]
    ids = [gid for gid, _, _ in stored]
    assert ids == sorted(ids, reverse=True), "newest first"

    image.reload()  # waits for the load event: as many pictures as are stored
    assert image.grid_captions() == captions
    image.page.wait_for_function(_GRID_LOADED_JS, arg=2)
    expect(image.page.locator("#image-seed input")).to_have_value("")
    # The reloaded gallery still knows which generation each picture is.
    image.select(rows[0].id)
    expect(image.page.locator("#image-info")).to_contain_text("Prompt: a stack of pancakes")


def test_png_info_reads_an_a1111_picture_and_applies_it(image: ImagePage, tmp_path: Path) -> None:
    """Issue 14, item 9: drop an AUTOMATIC1111 PNG on PNG Info, read its settings, apply them in one click."""
    from PIL import PngImagePlugin

    text = (
        "a lighthouse at dusk\nNegative prompt: blurry, lowres\n"
        "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 4242, Size: 96x80, "
        "Model hash: 6ce0161689, Version: v1.10.1"
    )
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    picture = tmp_path / "a1111.png"
    Image.new("RGB", (8, 8), "blue").save(picture, format="PNG", pnginfo=info)
    page = image.page
    page.get_by_text("PNG Info: read a picture's settings").click()
    expect(page.locator("#image-png-apply")).to_be_disabled()
    page.locator("#image-png-info-file input[type=file]").set_input_files(str(picture))
    shown = page.locator("#image-png-info")
    expect(shown).to_contain_text("Made with AUTOMATIC1111 / Forge.")
    expect(shown).to_contain_text("Schedule type: Karras")
    expect(page.locator("#image-png-apply")).to_be_enabled()
    page.locator("#image-png-apply").click()
    expect(page.locator("#image-prompt textarea")).to_have_value("a lighthouse at dusk")
    expect(page.locator("#image-negative textarea")).to_have_value("blurry, lowres")
    expect(page.locator("#image-seed input")).to_have_value("4242")
    expect(image.slider("Steps")).to_have_value("28")
    expect(image.slider("Width")).to_have_value("96")
    expect(image.slider("Height")).to_have_value("80")
    expect(image.slider("Guidance")).to_have_value("6.5")
