"""studio.formats.png: the A1111 parameters text, atomic PNG saving with text chunks, init-image checks."""

from __future__ import annotations

import io
import random
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from studio.formats import png
from studio.formats.png import (
    MAX_INIT_BYTES,
    a1111_parameters,
    load_init_image,
    media_name,
    parse_parameters,
    read_png_parameters,
    save_png,
    split_lora_tags,
)

BASE: dict[str, Any] = dict(
    steps=4, guidance=7.0, seed=123, width=512, height=512, scheduler="euler_a", model="sd-turbo"
)


# -- the parameters text ---------------------------------------------------------------------------------


def test_txt2img_text_is_exactly_what_a1111_writes() -> None:
    text = a1111_parameters(prompt="a red fox in snow", negative_prompt="blurry, low quality", **BASE)
    assert text == (
        "a red fox in snow\n"
        "Negative prompt: blurry, low quality\n"
        "Steps: 4, Sampler: Euler a, CFG scale: 7.0, Seed: 123, Size: 512x512, Model: sd-turbo"
    )


def test_img2img_with_lora_and_generation_id() -> None:
    text = a1111_parameters(
        prompt="a castle",
        negative_prompt="",
        **{**BASE, "scheduler": "dpmpp_2m", "guidance": 4.5, "width": 768},
        strength=0.75,
        lora="pixel-art",
        lora_scale=0.8,
        generation_id=42,
    )
    assert text == (
        "a castle <lora:pixel-art:0.8>\n"
        "Steps: 4, Sampler: DPM++ 2M, CFG scale: 4.5, Seed: 123, Size: 768x512, Model: sd-turbo, "
        "Denoising strength: 0.75, Studio generation: 42"
    )
    assert split_lora_tags(parse_parameters(text)["prompt"]) == ("a castle", [("pixel-art", 0.8)])


@pytest.mark.parametrize(
    ("scheduler", "name"),
    [
        ("default", "Default"),
        ("euler", "Euler"),
        ("euler_a", "Euler a"),
        ("dpmpp_2m", "DPM++ 2M"),
        ("ddim", "DDIM"),
        ("unipc", "UniPC"),
        ("lcm", "LCM"),
    ],
)
def test_sampler_names(scheduler: str, name: str) -> None:
    text = a1111_parameters(prompt="x", negative_prompt="", **{**BASE, "scheduler": scheduler})
    assert parse_parameters(text)["Sampler"] == name


def test_lora_without_scale_and_with_empty_prompt() -> None:
    text = a1111_parameters(prompt="", negative_prompt="", **BASE, lora="ink")
    assert text.startswith("<lora:ink:1.0>\nSteps: 4,")
    assert split_lora_tags("<lora:a:0.5> a cat <lora:b> <lora:c:1.2:0.4>") == (
        " a cat",
        [("a", 0.5), ("b", 1.0), ("c", 1.2)],
    )
    assert split_lora_tags("see <lora:x:oops>") == ("see <lora:x:oops>", [])


def test_float_noise_is_rounded_and_values_with_commas_or_quotes_are_json_strings() -> None:
    text = a1111_parameters(
        prompt="p", negative_prompt="", **{**BASE, "model": 'my "best", v2'}, strength=0.1 + 0.2
    )
    line = text.splitlines()[-1]
    assert 'Model: "my \\"best\\", v2"' in line
    assert "Denoising strength: 0.3," not in line and line.endswith("Denoising strength: 0.3")
    assert parse_parameters(text)["Model"] == 'my "best", v2'


@pytest.mark.parametrize(
    ("model", "written"),
    [
        ("sd-turbo", "sd-turbo"),
        ("org/model v2", "org/model v2"),
        ("a:b", '"a:b"'),  # A1111 quotes colons too
        ('"x"', '"\\"x\\""'),  # bare, it would read back as x
        (" padded ", '" padded "'),
        ("", ""),
        ("back\\slash", "back\\slash"),
    ],
)
def test_values_are_quoted_only_when_they_must_be(model: str, written: str) -> None:
    text = a1111_parameters(prompt="p", negative_prompt="", **{**BASE, "model": model})
    assert text.endswith(f", Model: {written}")
    assert parse_parameters(text)["Model"] == model


def test_parse_multi_line_prompts_and_no_negative() -> None:
    text = a1111_parameters(prompt="line one,\n\nline: three ", negative_prompt="", **BASE)
    parsed = parse_parameters(text)
    assert parsed["prompt"] == "line one,\n\nline: three "
    assert parsed["negative_prompt"] == ""
    assert parsed["Steps"] == "4" and parsed["Size"] == "512x512"


def test_parse_text_written_by_a1111() -> None:
    text = (
        "masterpiece, a cat\nwearing a hat\nNegative prompt: ugly,\nbad hands\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x768, "
        'Model hash: abc123, Model: v1-5, Lora hashes: "ink: 0f1e", Version: v1.10.1\n'
    )
    parsed = parse_parameters(text)
    assert parsed["prompt"] == "masterpiece, a cat\nwearing a hat"
    assert parsed["negative_prompt"] == "ugly,\nbad hands"
    assert parsed["Lora hashes"] == "ink: 0f1e"
    assert parsed["Schedule type"] == "Karras" and parsed["Version"] == "v1.10.1"


def test_parse_a_bare_prompt() -> None:
    assert parse_parameters("just a prompt: nothing else") == {
        "prompt": "just a prompt: nothing else",
        "negative_prompt": "",
    }


# Text that stresses the format: separators, quotes, escapes, tags, and lines that look like settings.
_CHUNKS = [",", ":", '"', "\\", "\n", "\r", " ", "<lora:x:1>", "Steps: 1, Sampler: a, Seed: 2", '\\"', "\t"]
_TEXT = st.lists(st.sampled_from(_CHUNKS) | st.text(max_size=8), max_size=12).map("".join)


def _no_negative_line(prompt: str) -> bool:
    return not any(line.startswith("Negative prompt:") for line in prompt.split("\n"))


@given(
    prompt=_TEXT.filter(_no_negative_line),
    negative=_TEXT | st.just("Negative prompt: again"),
    model=_TEXT,
    scheduler=st.sampled_from(sorted(png.SAMPLER_NAMES)),
    seed=st.integers(0, 2**32 - 1),
    strength=st.none() | st.floats(0.01, 1.0),
    generation_id=st.none() | st.integers(1, 10**9),
)
def test_round_trip(
    prompt: str,
    negative: str,
    model: str,
    scheduler: str,
    seed: int,
    strength: float | None,
    generation_id: int | None,
) -> None:
    text = a1111_parameters(
        prompt=prompt,
        negative_prompt=negative,
        **{**BASE, "model": model, "scheduler": scheduler, "seed": seed},
        strength=strength,
        generation_id=generation_id,
    )
    parsed = parse_parameters(text)
    assert parsed["prompt"] == prompt
    assert parsed["negative_prompt"] == negative
    assert parsed["Model"] == model
    assert parsed["Seed"] == str(seed)
    assert parsed["Sampler"] == png.SAMPLER_NAMES[scheduler]
    assert ("Denoising strength" in parsed) == (strength is not None)
    assert parsed.get("Studio generation") == (None if generation_id is None else str(generation_id))


# -- saving and reading PNGs ----------------------------------------------------------------------------


def _noise(size: tuple[int, int] = (48, 32), mode: str = "RGB") -> Image.Image:
    rng = random.Random(0)
    return Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * len(mode)))


def test_save_png_writes_chunks_and_pixels_and_leaves_no_temp_file(tmp_path: Path) -> None:
    image = _noise()
    text = a1111_parameters(prompt="猫 on a mat, “quoted”", negative_prompt="", **BASE)  # not Latin-1: iTXt
    path = save_png(image, tmp_path / "new" / "day" / "7-0-abc.png", parameters=text, generation_id=7)
    assert path == tmp_path / "new" / "day" / "7-0-abc.png"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    with Image.open(path) as back:
        assert back.format == "PNG"
        assert back.text["parameters"] == text  # type: ignore[attr-defined]
        assert back.tobytes() == image.tobytes()
    assert read_png_parameters(path) == {"parameters": text, "studio_generation_id": "7"}
    save_png(image, tmp_path / "plain.png", parameters="latin-1 text")
    assert read_png_parameters(tmp_path / "plain.png") == {"parameters": "latin-1 text"}


def test_a_failed_save_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Image.Image, fp: io.BufferedWriter, *args: object, **kwargs: object) -> None:
        fp.write(b"\x89PNG\r\n\x1a\nhalf a picture")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(OSError, match="No space"):
        save_png(_noise(), tmp_path / "a.png", parameters="p")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "b.png").write_bytes(b"the old file")
    with pytest.raises(OSError):
        save_png(_noise(), tmp_path / "b.png", parameters="p")
    assert [p.name for p in tmp_path.iterdir()] == ["b.png"]
    assert (tmp_path / "b.png").read_bytes() == b"the old file"


def test_read_png_parameters_of_other_files(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(_jpeg(_noise()))
    assert read_png_parameters(tmp_path / "a.jpg") == {}
    (tmp_path / "b.png").write_bytes(b"not a picture")
    with pytest.raises(ValueError, match="not an image"):
        read_png_parameters(tmp_path / "b.png")


def test_media_names_are_unguessable() -> None:
    name = media_name(42, 3)
    assert name.startswith("42-3-") and name.endswith(".png") and len(name) == len("42-3-") + 16 + 4
    assert media_name(42, 3) != name


# -- init images ----------------------------------------------------------------------------------------


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(image: Image.Image, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95, **kwargs)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header says width x height (CRC fixed): no pixels are ever allocated."""
    data = bytearray(_png(Image.new("L", (1, 1))))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_valid_png_and_jpeg_as_bytes_and_paths(tmp_path: Path) -> None:
    image = _noise()
    got = load_init_image(_png(image))
    assert got.mode == "RGB" and got.tobytes() == image.tobytes()
    (tmp_path / "i.png").write_bytes(_png(image))
    assert load_init_image(tmp_path / "i.png").tobytes() == image.tobytes()
    assert load_init_image(str(tmp_path / "i.png")).size == (48, 32)
    (tmp_path / "i.jpg").write_bytes(_jpeg(image))
    assert load_init_image(tmp_path / "i.jpg").size == (48, 32)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "1", "CMYK", "I;16"])
def test_every_mode_comes_back_rgb(mode: str) -> None:
    image = Image.new(mode, (8, 8))
    assert load_init_image(_png(image) if mode != "CMYK" else _jpeg(image)).mode == "RGB"


def test_transparency_is_flattened_onto_white() -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # black, fully transparent
    image.putpixel((0, 0), (255, 0, 0, 255))
    got = load_init_image(_png(image))
    assert got.getpixel((0, 0)) == (255, 0, 0)
    assert got.getpixel((3, 3)) == (255, 255, 255)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    assert load_init_image(_png(Image.new("I;16", (2, 2), 0x8000))).getpixel((0, 0)) == (128, 128, 128)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    got = load_init_image(_jpeg(image, exif=exif.tobytes()))
    assert got.size == (20, 40)
    top, bottom = got.getpixel((10, 5)), got.getpixel((10, 35))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60  # the left edge went to the top
    assert bottom[2] > 200 and bottom[0] < 60


def test_too_many_bytes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^the init image is 31\.2 MB; the limit is 20 MB$"):
        load_init_image(b"\0" * int(31.2 * 2**20))
    big = tmp_path / "big.png"
    with big.open("wb") as file:
        file.truncate(MAX_INIT_BYTES + 1)  # sparse: refused from its size, never read
    with pytest.raises(ValueError, match=r"^the init image is 20\.0 MB; the limit is 20 MB$"):
        load_init_image(big)


@pytest.mark.parametrize(
    ("side", "message"),
    [
        (5000, r"^the init image is 5000x5000 pixels \(25\.0 megapixels\); the limit is 16\.8 megapixels "),
        (10000, r"far too many pixels"),  # past Pillow's warning
        (20000, r"far too many pixels"),  # past Pillow's error
    ],
)
def test_too_many_pixels_is_refused_from_the_header(side: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_init_image(_png_claiming(side, side))


def test_the_pixel_limit_itself_reaches_decoding() -> None:
    # The header passes, the (missing) pixels do not: the check did not stop an allowed size.
    with pytest.raises(ValueError, match="could not be read: image file is truncated"):
        load_init_image(_png_claiming(4096, 4096))


NOT_AN_IMAGE = "it is not a PNG, JPEG, WebP, BMP, GIF or TIFF image"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_png(_noise((64, 64)))[:1500], "image file is truncated"),  # cut in the middle of the pixels
        (_jpeg(_noise((64, 64)))[:600], "Truncated File Read"),
        (random.Random(1).randbytes(1000), NOT_AN_IMAGE),
        (b"", "the file is empty"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", NOT_AN_IMAGE),  # never to Ghostscript
        (_png_claiming(0, 5), NOT_AN_IMAGE),
    ],
    ids=["truncated-png", "truncated-jpeg", "random", "empty", "eps", "zero-width"],
)
def test_unreadable_files(data: bytes, reason: str, tmp_path: Path) -> None:
    expected = f"^the init image could not be read: {re.escape(reason)}"
    with pytest.raises(ValueError, match=expected):
        load_init_image(data)
    (tmp_path / "f").write_bytes(data)
    with pytest.raises(ValueError, match=expected):
        load_init_image(tmp_path / "f")


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "GIF", "TIFF"])
def test_other_allowed_formats(fmt: str) -> None:
    buf = io.BytesIO()
    _noise().save(buf, format=fmt)
    assert load_init_image(buf.getvalue()).size == (48, 32)


def test_a_missing_file() -> None:
    with pytest.raises(ValueError, match="could not be read: No such file"):
        load_init_image("/nonexistent/upload.png")
