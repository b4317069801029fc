"""Audio files of the Audio tab: sentence pieces for speech, WAV files, waveform pictures, melody uploads.

Owns: `split_sentences()` (long text -> pieces a speech model takes at once, cut at sentence, then clause,
then word boundaries), `join_pieces()` (pieces -> one clip with a short pause between them), `save_wav()`
(atomic, 16-bit PCM via soundfile; `write_wav()` is its write + fsync step), `waveform_png()` (a picture of
a clip), `load_melody()` (every check an uploaded melody passes before a model sees it), `melody_chroma()`
(MusicGen-Melody's chroma features, in numpy: transformers' extractor for them needs torchaudio) and
`media_name()`. Pure: numpy, soundfile and Pillow, imported when
used so that importing the backends stays light; no torch, gradio or storage.
"""

from __future__ import annotations

import io
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_MELODY_BYTES = 20 * 1024 * 1024  # an uploaded melody larger than this is refused unread
MAX_MELODY_SECONDS = 60.0  # melody models look at the first 30 s; a longer clip is refused, not cut silently
PAUSE_SECONDS = 0.12  # silence between spoken pieces, so joined sentences do not run into each other

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"”’)\]]*\s+|\n\s*")
_CLAUSE_END = re.compile(r"(?<=[,;:—])\s+")


def _cut(text: str, pattern: re.Pattern[str]) -> list[str]:
    return [part.strip() for part in pattern.split(text) if part and part.strip()]


def split_sentences(text: str, max_chars: int = 300) -> list[str]:
    """Pieces of at most `max_chars` characters, cut at sentence ends, else clauses, else spaces.

    Consecutive short sentences are packed into one piece (fewer model calls, natural prosody across them);
    a word longer than `max_chars` is cut where it must be.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    atoms: list[str] = []
    for sentence in _cut(text, _SENTENCE_END):
        if len(sentence) <= max_chars:
            atoms.append(sentence)
            continue
        for clause in _cut(sentence, _CLAUSE_END):
            atoms.extend(_pack(clause.split(), max_chars) if len(clause) > max_chars else [clause])
    return _pack(atoms, max_chars)


def _pack(parts: list[str], max_chars: int) -> list[str]:
    pieces: list[str] = []
    current = ""
    for part in parts:
        while len(part) > max_chars:  # one enormous "word": no boundary to respect
            if current:
                pieces.append(current)
                current = ""
            pieces.append(part[:max_chars])
            part = part[max_chars:]
        if current and len(current) + 1 + len(part) > max_chars:
            pieces.append(current)
            current = part
        else:
            current = f"{current} {part}" if current else part
    if current:
        pieces.append(current)
    return pieces


def as_mono_float(audio: Any) -> Any:
    """Any array-like of samples -> a 1-D float32 numpy array (channels averaged)."""
    import numpy as np

    data = np.asarray(audio, dtype=np.float32)
    data = np.squeeze(data)
    if data.ndim == 2:  # (channels, n) from the models; (n, channels) from files is handled by the caller
        data = data.mean(axis=0) if data.shape[0] < data.shape[1] else data.mean(axis=1)
    if data.ndim != 1:
        raise ValueError(f"expected audio samples, got an array of shape {data.shape}")
    return data


def join_pieces(pieces: list[Any], sample_rate: int, pause: float = PAUSE_SECONDS) -> Any:
    """Concatenate spoken pieces with `pause` seconds of silence between them (none at the ends)."""
    import numpy as np

    arrays = [as_mono_float(p) for p in pieces if np.asarray(p).size]
    if not arrays:
        return np.zeros(0, dtype=np.float32)
    gap = np.zeros(round(pause * sample_rate), dtype=np.float32)
    out: list[Any] = []
    for i, arr in enumerate(arrays):
        if i:
            out.append(gap)
        out.append(arr)
    return np.concatenate(out)


def duration_seconds(audio: Any, sample_rate: int) -> float:
    import numpy as np

    data = np.asarray(audio)
    return float(data.shape[-1] / sample_rate) if data.size else 0.0


def save_wav(audio: Any, sample_rate: int, path: Path) -> Path:
    """Write 16-bit PCM WAV with soundfile; atomic (temp file + rename), so no half-written clip is seen."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write_wav(audio, sample_rate, temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def write_wav(audio: Any, sample_rate: int, path: Path) -> Path:
    """Write 16-bit PCM WAV with soundfile to a new file `path` and fsync it (the caller renames it into
    place); refuses samples that are not finite. Fit for a worker thread: the fsync waits without the GIL.
    """
    import numpy as np
    import soundfile as sf

    data = np.asarray(audio, dtype=np.float32)
    if data.ndim == 2:  # (channels, n) -> soundfile's (n, channels)
        data = data.T if data.shape[0] < data.shape[1] else data
    if not np.all(np.isfinite(data)):
        raise ValueError("the model produced samples that are not finite numbers")
    # To 16-bit here rather than in libsndfile: numpy's conversion is about 2.5x faster (1.3 -> 0.5 ms for 5 s
    # at 24 kHz, benchmarks/audio.py); the samples differ from libsndfile's by at most one step of rounding.
    pcm = np.rint(np.clip(data, -1.0, 1.0) * 32767.0).astype(np.int16)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:  # owner only
        sf.write(file, pcm, int(sample_rate), format="WAV", subtype="PCM_16")
        file.flush()
        os.fsync(file.fileno())
    return path


# Background, centre line and wave colours of the waveform picture (a 3-colour palette PNG).
_PALETTE = [250, 250, 252, 210, 210, 220, 79, 70, 229]


def waveform_png(audio: Any, path: Path, *, width: int = 800, height: int = 120) -> Path:
    """A waveform picture (min/max per pixel column) of a clip, written atomically as PNG.

    Drawn with numpy into a palette image, not with a draw call per column: about 1 ms instead of 4 for a
    5 s clip (benchmarks/audio.py), which matters next to a fast voice.
    """
    import numpy as np
    from PIL import Image

    data = as_mono_float(audio) if np.asarray(audio).size else np.zeros(1, dtype=np.float32)
    columns = min(width, data.size)
    usable = data[: data.size - data.size % columns].reshape(columns, -1)  # the tail (< 1 column) is left out
    scale = (height / 2 - 1) / max(1e-9, float(np.abs(usable).max()), 1.0)
    middle = (height - 1) / 2
    top = np.floor(middle - usable.max(axis=1) * scale)
    bottom = np.ceil(middle - usable.min(axis=1) * scale)
    rows = np.arange(height)[:, None]
    pixels = np.zeros((height, columns), dtype=np.uint8)
    pixels[round(middle), :] = 1
    pixels[(rows >= top[None, :]) & (rows <= bottom[None, :])] = 2
    image = Image.fromarray(pixels, mode="P")
    image.putpalette(_PALETTE)
    if columns != width:
        image = image.resize((width, height), Image.Resampling.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = io.BytesIO()  # encoded in memory and written at once: Pillow's many small file writes cost
    image.save(encoded, format="PNG", compress_level=1)  # about 0.3 ms more for this picture
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        temp.write_bytes(encoded.getbuffer())
        os.chmod(temp, 0o600)  # a user's media are theirs, not every local account's
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def load_melody(data: bytes | str | Path) -> tuple[Any, int]:
    """An uploaded melody clip (bytes or a path) as (float32 mono samples, sample rate).

    Raises ValueError with a message for the user when it is empty, too large, not an audio file soundfile
    reads (WAV, FLAC, OGG, MP3), corrupt, empty of samples, too long or not finite.
    """
    import numpy as np
    import soundfile as sf

    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
    else:
        try:
            with open(data, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size > MAX_MELODY_BYTES:
                    raise ValueError(_too_big(size))
                raw = file.read(MAX_MELODY_BYTES + 1)
        except OSError as exc:
            raise ValueError(f"the melody clip could not be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_MELODY_BYTES:
        raise ValueError(_too_big(len(raw)))
    if not raw:
        raise ValueError("the melody clip could not be read: the file is empty")
    seconds = 0.0
    samples: Any = None
    try:
        with sf.SoundFile(io.BytesIO(raw)) as clip:
            rate = int(clip.samplerate)
            seconds = clip.frames / rate if rate else 0.0
            if seconds <= MAX_MELODY_SECONDS:  # the header says how long it is: decode only if allowed
                samples = clip.read(dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError (a RuntimeError) on unknown or corrupt data
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"the melody clip could not be read (WAV, FLAC, OGG or MP3 expected): {detail}"
        ) from None
    if samples is None:
        raise ValueError(f"the melody clip is {seconds:.1f} s long; the limit is {MAX_MELODY_SECONDS:g} s")
    if samples.shape[0] == 0:
        raise ValueError("the melody clip has no samples")
    if not np.all(np.isfinite(samples)):
        raise ValueError("the melody clip contains samples that are not finite numbers")
    return samples.mean(axis=1).astype(np.float32), rate


def resample(samples: Any, rate: int, target: int) -> Any:
    """Mono samples from `rate` to `target` Hz, band-limited (FFT; content above either Nyquist is cut)."""
    import numpy as np

    data = np.asarray(samples, dtype=np.float64)
    if rate == target or not data.size:
        return data.astype(np.float32)
    size = max(1, round(data.size * target / rate))
    spectrum = np.fft.rfft(data)
    kept = np.zeros(size // 2 + 1, dtype=spectrum.dtype)
    common = min(spectrum.size, kept.size)
    kept[:common] = spectrum[:common]
    return (np.fft.irfft(kept, size) * (size / data.size)).astype(np.float32)


def melody_chroma(
    samples: Any,
    rate: int,
    *,
    filter_bank: Callable[..., Any],
    sampling_rate: int = 32_000,
    n_fft: int = 16_384,
    hop_length: int = 4096,
    chunk_length: int = 30,
    num_chroma: int = 12,
) -> Any:
    """One-hot chroma frames, shape (frames, num_chroma), as MusicgenMelodyFeatureExtractor computes them.

    transformers' extractor (5.24) needs torchaudio for two steps only, its resampler and its Spectrogram;
    here they are numpy: `resample()`, and a centred, reflect-padded periodic-Hann STFT whose power is divided
    by the window's energy (torchaudio's `normalized=True`). The chroma filters come from `filter_bank` (the
    caller passes transformers' numpy `chroma_filter_bank`: this module imports no model library); each frame
    keeps only its strongest pitch class, so the small numeric differences from torchaudio's resampler can
    only matter where two pitch classes are almost equally strong. The keyword defaults are Meta's extractor
    settings.
    """
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    wav = resample(as_mono_float(samples), rate, sampling_rate)[: chunk_length * sampling_rate]
    if wav.size < n_fft:  # as the extractor does: centre the short clip in n_fft samples of silence
        pad = n_fft - wav.size
        wav = np.pad(wav, (pad // 2, pad - pad // 2))
    padded = np.pad(wav, n_fft // 2, mode="reflect")
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    frames = sliding_window_view(padded, n_fft)[::hop_length]
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2 / float(np.sum(window.astype(np.float64) ** 2))
    filters = filter_bank(num_frequency_bins=n_fft, num_chroma=num_chroma, sampling_rate=sampling_rate)
    chroma = power @ filters.T  # (frames, num_chroma)
    onehot = np.zeros(chroma.shape, dtype=np.float32)
    onehot[np.arange(chroma.shape[0]), chroma.argmax(axis=1)] = 1.0
    return onehot


def _too_big(size: int) -> str:
    return f"the melody clip is {size / 2**20:.1f} MB; the limit is {MAX_MELODY_BYTES / 2**20:g} MB"


def media_name(generation_id: int, suffix: str) -> str:
    """An unguessable file name for a generated clip (or its picture): knowing one gives away no other."""
    return f"{generation_id}-{secrets.token_hex(8)}{suffix}"
