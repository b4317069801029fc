"""Image files of the Image tab: the parameters text inside each PNG, saving and reading PNGs, init images.

Owns: `a1111_parameters()` and `parse_parameters()` (the AUTOMATIC1111 "parameters" text that A1111,
ComfyUI readers and civitai show, and its inverse), `split_lora_tags()`, `save_png()` (atomic, with the
text chunks) and `read_png_parameters()`, `load_init_image()` (all the checks an uploaded init image
passes before any pixel reaches a pipeline) and `media_name()`. Pure: Pillow only, no torch, gradio or
storage.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import warnings
from pathlib import Path

from PIL import Image, ImageOps, PngImagePlugin

MAX_INIT_BYTES = 20 * 1024 * 1024  # an uploaded init image larger than this is refused
MAX_INIT_PIXELS = 4096 * 4096  # and so is one with more pixels than this (decompression bombs)

# Raster formats an init image may be in. Naming them keeps Pillow from trying every plugin it has on
# untrusted bytes (EPS, for one, would hand the file to Ghostscript). "JPEG" also opens phones'
# multi-picture (MPO) JPEGs; naming "MPO" itself would make Pillow raise KeyError.
INIT_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
_FORMAT_NAMES = "PNG, JPEG, WebP, BMP, GIF or TIFF"
_PIXEL_LIMIT = (
    f"{MAX_INIT_PIXELS / 1e6:.1f} megapixels ({int(MAX_INIT_PIXELS**0.5)}x{int(MAX_INIT_PIXELS**0.5)})"
)

# Our scheduler ids (ImageParams.scheduler) as A1111 names its samplers.
SAMPLER_NAMES = {
    "default": "Default",  # whatever scheduler the model's pipeline ships with
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "ddim": "DDIM",
    "unipc": "UniPC",
    "lcm": "LCM",
}

NEGATIVE_PREFIX = "Negative prompt:"
# A1111's own pattern for one `Key: value` of the last line (modules/infotext_utils.py): a value is either
# a JSON string or runs to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
# <lora:name> or <lora:name:scale>; the second (UNet) multiplier A1111 also allows is read and ignored.
_LORA_TAG = re.compile(r" ?<lora:([^:<>]+)(?::([^<>]*))?>")


def _number(value: float) -> str:
    # A1111 writes Python floats ("7.0", "0.75"); rounding hides float noise such as 0.30000000000000004.
    return str(round(float(value), 6))


def _quote(value: str) -> str:
    """A value as A1111 writes it: bare when that parses back unchanged, else a JSON string."""
    # A1111 quotes on , : and newlines; quotes and outer spaces would not survive a bare value either.
    if value != value.strip() or any(c in value for c in ',:\n"'):
        return json.dumps(value, ensure_ascii=False)
    return value


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            loaded = json.loads(value)
        except ValueError:
            return value
        if isinstance(loaded, str):
            return loaded
    return value


def a1111_parameters(
    *,
    prompt: str,
    negative_prompt: str,
    steps: int,
    guidance: float,
    seed: int,
    width: int,
    height: int,
    scheduler: str,
    model: str,
    strength: float | None = None,
    lora: str | None = None,
    lora_scale: float | None = None,
    generation_id: int | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    """The AUTOMATIC1111 "parameters" text: prompt, "Negative prompt: ..." when there is one, settings."""
    if lora:
        # A1111 has no LoRA setting: the tag in the prompt is the LoRA, so readers of its format see it.
        tag = f"<lora:{lora}:{_number(1.0 if lora_scale is None else lora_scale)}>"
        prompt = f"{prompt} {tag}" if prompt else tag
    settings: dict[str, str] = {
        "Steps": str(steps),
        "Sampler": SAMPLER_NAMES.get(scheduler, scheduler),
        "CFG scale": _number(guidance),
        "Seed": str(seed),
        "Size": f"{width}x{height}",
        "Model": model,
    }
    if strength is not None:
        settings["Denoising strength"] = _number(strength)
    settings.update(extra or {})  # e.g. a trained variant's base and LoRA
    if generation_id is not None:
        settings["Studio generation"] = str(generation_id)
    head = prompt
    if negative_prompt:
        negative = f"{NEGATIVE_PREFIX} {negative_prompt}"
        head = f"{prompt}\n{negative}" if prompt else negative
    # No "\n" before the settings when there is no head at all, so an empty prompt reads back as "" and
    # a prompt of one newline as "\n".
    line = ", ".join(f"{key}: {_quote(value)}" for key, value in settings.items())
    return f"{head}\n{line}" if head else line


def parse_parameters(text: str) -> dict[str, str]:
    """A1111 "parameters" text back into {"prompt", "negative_prompt", "Steps", "Sampler", ...}.

    Exact for `a1111_parameters` output whose prompt has no line starting "Negative prompt:". Text from
    elsewhere parses like A1111 parses it, except that lines keep their spaces.
    """
    lines = text.rstrip("\r\n").split("\n")
    last = lines[-1]
    settings: dict[str, str] = {}
    # Like A1111: the last line holds the settings only if at least three `Key: value` pairs are in it.
    found = _PARAM.findall(last.rstrip())
    if len(found) >= 3:
        lines.pop()
        settings = {key.strip(): _unquote(value) for key, value in found}
    prompt: list[str] = []
    negative: list[str] | None = None
    for line in lines:
        if negative is None and line.startswith(NEGATIVE_PREFIX):
            rest = line.removeprefix(NEGATIVE_PREFIX)
            negative = [rest.removeprefix(" ")]
        elif negative is None:
            prompt.append(line)
        else:
            negative.append(line)
    return {"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative or []), **settings}


def split_lora_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """The prompt without its <lora:ID:SCALE> tags, and the tags as (id, scale); scale 1.0 when absent."""
    loras: list[tuple[str, float]] = []

    def take(match: re.Match[str]) -> str:
        name, scale = match.group(1), (match.group(2) or "").split(":")[0]
        try:
            loras.append((name, float(scale) if scale else 1.0))
        except ValueError:
            return match.group(0)  # not a tag we understand: leave it in the prompt
        return ""

    return _LORA_TAG.sub(take, prompt), loras


def save_png(image: Image.Image, path: Path, *, parameters: str, generation_id: int | None = None) -> Path:
    """Write `image` as a PNG with text chunks "parameters" and "studio_generation_id"; atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)  # tEXt, or iTXt when the text is not Latin-1
    if generation_id is not None:
        info.add_text("studio_generation_id", str(generation_id))
    # A hidden temp name in the same folder, so os.replace is a rename on one file system: readers see
    # the old file or the whole new one, never a half-written PNG under the final name. Mode 0o600: a
    # user's pictures are theirs, not every local account's.
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            # Level 1: about 5x faster than Pillow's default 6 for ~16% bigger files (345 -> 65 ms at
            # 1024x1024, benchmarks/image_overhead.py); a generated picture is written once, read rarely.
            image.save(file, format="PNG", pnginfo=info, compress_level=1)
            file.flush()
            os.fsync(file.fileno())  # the bytes reach the disk before the rename can
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def read_png_parameters(path: Path) -> dict[str, str]:
    """The text chunks of a PNG ("parameters", "studio_generation_id", ...); {} for other images."""
    try:
        with Image.open(path) as image:
            text = getattr(image, "text", None) or {}  # only PNGs have .text; reading it loads the chunks
            return {str(key): str(value) for key, value in text.items()}
    except Image.UnidentifiedImageError:
        raise ValueError(f"{Path(path).name} is not an image") from None


def _too_big(size: int) -> ValueError:
    return ValueError(f"the init image is {size / 2**20:.1f} MB; the limit is {MAX_INIT_BYTES / 2**20:g} MB")


def _read_limited(path: Path) -> bytes:
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > MAX_INIT_BYTES:  # refused before reading a byte of it
                raise _too_big(size)
            data = file.read(MAX_INIT_BYTES + 1)  # and bounded, should it grow while being read
    except OSError as exc:
        raise ValueError(f"the init image could not be read: {exc.strerror or exc}") from None
    if len(data) > MAX_INIT_BYTES:
        raise _too_big(len(data))
    return data


def _to_rgb(image: Image.Image) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        # Flatten onto white as A1111's img2img does: a bare convert("RGB") would show whatever colour
        # the transparent pixels happen to hold, often black.
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        return flat.convert("RGB")
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        # 16-bit and float greys: convert("RGB") would clip them rather than scale them to 8 bits.
        image = image.convert("I").point(lambda v: v / 256).convert("L")
    return image.convert("RGB")


def load_init_image(data: bytes | str | Path) -> Image.Image:
    """An uploaded init image (bytes or a path), checked and decoded, as an RGB image upright per EXIF.

    Raises ValueError with a message for the user when it is too large in bytes or pixels, not an image
    in a known format, or corrupt.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if len(raw) > MAX_INIT_BYTES:
            raise _too_big(len(raw))
    else:
        raw = _read_limited(Path(data))
    if not raw:
        raise ValueError("the init image could not be read: the file is empty")
    try:
        # Pillow warns about (and past twice its limit refuses) huge images while reading the header;
        # both become our ValueError. catch_warnings is process-wide before Python 3.14: a race between
        # threads can at worst leave this "error" filter in place, which is harmless here.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw), formats=INIT_FORMATS) as image:
                width, height = image.size  # from the header: no pixel has been decoded yet
                if width * height <= MAX_INIT_PIXELS:
                    image.load()  # decode everything here, so truncated and corrupt files fail here
                    try:
                        upright = ImageOps.exif_transpose(image)
                    except Exception:  # a broken EXIF block should not cost a readable picture
                        upright = image
                    return _to_rgb(upright)
    except Image.UnidentifiedImageError:
        raise ValueError(f"the init image could not be read: it is not a {_FORMAT_NAMES} image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"the init image has far too many pixels; the limit is {_PIXEL_LIMIT}") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, EOFError... on bad files
        raise ValueError(f"the init image could not be read: {str(exc) or type(exc).__name__}") from None
    raise ValueError(
        f"the init image is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels); "
        f"the limit is {_PIXEL_LIMIT}"
    )


def media_name(generation_id: int, index: int) -> str:
    """An unguessable file name for a generated picture: knowing one name gives away no other.

    64 random bits; the leading generation id lets the file route find the owner in one lookup.
    """
    return f"{generation_id}-{index}-{secrets.token_hex(8)}.png"


# Pictures are named {id}-{index}-{token}.png, audio clips {id}-{token}.wav (and .png for the waveform).
_MEDIA_NAME = re.compile(r"^(\d{1,18})(?:-\d{1,4})?-[0-9a-f]{16,64}\.[a-z0-9]{2,5}$")


def media_generation_id(name: str) -> int | None:
    """The generation id a media file name starts with, or None for a name `media_name` did not make."""
    match = _MEDIA_NAME.match(name)
    return int(match.group(1)) if match else None


# PNG Info --------------------------------------------------------------------------------------------
# A1111/Forge sampler names (also the older "DPM++ 2M Karras" style with the schedule in the name) that
# match one of our schedulers; any other sampler keeps the model's default.
_SAMPLER_IDS = {name.lower(): sid for sid, name in SAMPLER_NAMES.items()} | {
    "euler ancestral": "euler_a",
    "dpm++ 2m karras": "dpmpp_2m",
    "dpm++ 2m sde": "dpmpp_2m",
    "dpm++ 2m sde karras": "dpmpp_2m",
}
# The settings png_info names itself; every other `Key: value` pair is kept in "extra" as it was written.
_KNOWN = {"Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "Denoising strength", "Studio generation"}


def _int(value: str | None) -> int | None:
    try:
        return int(str(value).strip()) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(str(value).strip()) if value is not None else None
    except ValueError:
        return None


def png_info(path: Path) -> dict[str, object]:
    """What a PNG says about how it was made: prompt, negative prompt, steps, sampler, CFG scale, seed,
    size, model, denoising strength, LoRAs, every other `Key: value` pair ("extra") and the raw text.

    Reads the studio's PNGs and AUTOMATIC1111/Forge's (both keep an A1111 "parameters" text chunk).
    `source` is "studio", "a1111" or None (a picture with no parameters). ValueError: not an image."""
    chunks = read_png_parameters(path)
    text = chunks.get("parameters", "")
    studio_id = _int(chunks.get("studio_generation_id"))
    info: dict[str, object] = {"source": None, "parameters": text, "extra": {}}
    if not text.strip():
        return info
    fields = parse_parameters(text)
    prompt, loras = split_lora_tags(fields["prompt"])
    width, _, height = fields.get("Size", "").partition("x")
    generation = studio_id if studio_id is not None else _int(fields.get("Studio generation"))
    info.update(
        source="studio" if generation is not None else "a1111",
        prompt=prompt,
        negative_prompt=fields["negative_prompt"],
        steps=_int(fields.get("Steps")),
        sampler=fields.get("Sampler"),
        cfg_scale=_float(fields.get("CFG scale")),
        seed=_int(fields.get("Seed")),
        width=_int(width),
        height=_int(height),
        model=fields.get("Model"),
        denoising_strength=_float(fields.get("Denoising strength")),
        loras=[{"id": name, "scale": scale} for name, scale in loras],
        studio_generation_id=generation,
        extra={k: v for k, v in fields.items() if k not in _KNOWN and k not in ("prompt", "negative_prompt")},
    )
    return info


def image_settings(info: dict[str, object]) -> dict[str, object]:
    """`png_info()`'s reading as the Image tab's parameters (ImageParams names), for "apply"; only what
    the picture states: a missing setting is left out, an unknown sampler becomes the model's default."""
    settings: dict[str, object] = {}
    names = {"negative_prompt": "negative_prompt", "steps": "steps", "cfg_scale": "guidance", "seed": "seed"}
    names |= {"width": "width", "height": "height", "denoising_strength": "strength"}
    for key, name in names.items():
        if info.get(key) is not None:
            settings[name] = info[key]
    if info.get("sampler"):
        settings["scheduler"] = _SAMPLER_IDS.get(str(info["sampler"]).strip().lower(), "default")
    loras = info.get("loras")
    if isinstance(loras, list) and loras:
        settings["lora"], settings["lora_scale"] = loras[0]["id"], loras[0]["scale"]
    return settings
