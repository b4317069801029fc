"""Pure file formats: what a stored picture, clip or code answer looks like on disk and in text.

Owns: `png` (A1111 `parameters` chunk, media file names, init images), `wav` (16-bit WAV, waveform
pictures, melody loading and chroma, sentence splitting for speech) and `code` (fenced code blocks,
languages, prompt templates, parse-only syntax checks).
Ignores: torch, gradio, storage and the service: these modules take and return plain values, so
backends, the service and tests can all use them.
"""
