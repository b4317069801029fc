"""The Audio tab in a real browser: speak with the bundled voice, make music with a tiny MusicGen, play, vote.

Speech runs the real hibari "heart" voice (installed with hibari-tts, offline); music runs the real musicgen
backend on a random-weight checkpoint (see conftest.py). Each test checks what the page shows (a player
whose <audio> has a source and a duration, a waveform picture) against what the studio stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import TIMEOUT_MS, ChatPage, Server, _screenshot_if_failed
from .shared import BROWSER, expect

pytestmark = BROWSER

# The player's <audio> (Gradio's waveform player keeps it in WaveSurfer's shadow root, fed a blob of the
# clip): its source, duration, position and whether it is playing, once the browser has decoded the file.
_AUDIO_JS = """sel => {
    const find = root => {
        for (const el of root.querySelectorAll('*')) {
            if (el.tagName === 'AUDIO' && el.src) return el;
            const inner = el.shadowRoot && find(el.shadowRoot);
            if (inner) return inner;
        }
        return null;
    };
    const box = document.querySelector(sel);
    const audio = box && find(box);
    return audio && isFinite(audio.duration) && audio.duration > 0
        ? {src: audio.src, duration: audio.duration, time: audio.currentTime, paused: audio.paused} : null;
}"""


class AudioPage(ChatPage):
    """The Audio tab (opened from the Chat tab the page starts on)."""

    def _loaded(self) -> None:
        super()._loaded()
        self.page.get_by_role("tab", name="Audio", exact=True).click()
        self.page.locator("#speech-prompt textarea").wait_for()

    def open_section(self, name: str) -> None:
        self.page.get_by_role("tab", name=name, exact=True).click()
        self.page.locator(f"#{name.lower()}-prompt textarea").wait_for()

    def rows(self, tab: str) -> list[Any]:
        from sqlmodel import Session

        from studio import storage

        with Session(self.studio.engine) as session:
            return sorted(storage.list_generations(session, tab=tab, limit=1000), key=lambda r: r.id)

    def generate(self, tab: str, prompt: str) -> Any:
        before = len(self.rows(tab))
        self.page.locator(f"#{tab}-prompt textarea").fill(prompt)
        self.page.locator(f"#{tab}-generate").click()
        self.wait_until(lambda: len(self.rows(tab)) > before, f"the {tab} row")
        row = self.rows(tab)[-1]
        assert row.status == "ok", row.error
        expect(self.page.locator(f"#{tab}-notice")).to_contain_text(f"seed {row.seed}")
        return row

    def player(self, tab: str) -> dict[str, Any]:
        """{src, duration, time, paused} of the player's audio element, once it has loaded the clip."""
        handle = self.page.wait_for_function(_AUDIO_JS, arg=f"#{tab}-player", timeout=TIMEOUT_MS)
        return dict(handle.json_value())

    def play(self, tab: str) -> dict[str, Any]:
        """Press the player's Play button; the element's state once its clock has moved."""
        self.page.locator(f"#{tab}-player button[aria-label='Play']").first.click()
        moving = f"sel => {{ const a = ({_AUDIO_JS})(sel); return a && a.time > 0 ? a : null; }}"
        handle = self.page.wait_for_function(moving, arg=f"#{tab}-player", timeout=TIMEOUT_MS)
        return dict(handle.json_value())

    def download_name(self, tab: str) -> str:
        return str(self.page.locator(f"#{tab}-player a[data-testid=download-link]").get_attribute("download"))


@pytest.fixture
def audio_page(browser_context: Any, server: Server, request: pytest.FixtureRequest) -> Iterator[AudioPage]:
    page = browser_context.new_page()
    audio = AudioPage(page, server)
    try:
        audio.open()
        yield audio
    finally:
        _screenshot_if_failed(page, request)
        page.close()


@pytest.mark.browser
def test_speech_generates_plays_and_takes_votes(audio_page: AudioPage) -> None:
    page = audio_page.page
    expect(page.locator("#speech-model input")).to_have_value(
        re.compile(r"^hibari-heart \((ready|loaded)\)$")
    )
    # hibari has one voice per model: no voice preset to fill in (Bark's control), speed and seed remain.
    expect(page.locator("#speech-voice")).to_be_hidden()
    expect(page.locator("#speech-speed")).to_be_visible()
    expect(page.locator("#speech-seed")).to_be_visible()
    row = audio_page.generate("speech", "Hello from the studio. This voice runs offline.")
    assert row.model_id == "hibari-heart" and row.params["sample_rate"] == 24_000
    played = audio_page.player("speech")
    assert played["duration"] == pytest.approx(row.params["duration_s"], abs=0.05)
    # The player draws the clip's waveform; the stored picture is not shown a second time.
    expect(page.locator("#speech-waveform")).to_be_hidden()
    expect(page.locator("#speech-info")).to_contain_text(f"#{row.id} hibari-heart")

    assert played["src"].startswith("blob:")
    playing = audio_page.play("speech")  # the browser really plays it
    assert playing["time"] > 0
    stored = audio_page.studio.media_path(row.files[0])
    assert audio_page.download_name("speech") == stored.name  # the download button gives the stored WAV

    page.locator("#speech-like").click()
    audio_page.wait_until(lambda: audio_page.studio.rating(row.id) == 1, "the 👍 vote")
    expect(page.locator("#speech-info")).to_contain_text("👍")
    page.locator("#speech-dislike").click()
    audio_page.wait_until(lambda: audio_page.studio.rating(row.id) == -1, "the 👎 vote")


@pytest.mark.browser
def test_music_generates_plays_lists_and_reuses(audio_page: AudioPage) -> None:
    page = audio_page.page
    audio_page.open_section("Music")
    expect(page.locator("#music-model input")).to_have_value(
        re.compile(r"^tiny-musicgen \((ready|loaded)\)$")
    )
    page.locator("#music-seed input").fill("42")
    row = audio_page.generate("music", "calm piano with soft strings")
    assert (row.model_id, row.seed, row.params["duration"], row.params["sample_rate"]) == (
        "tiny-musicgen",
        42,
        1.5,
        8000,
    )
    played = audio_page.player("music")
    assert played["duration"] == pytest.approx(1.5, abs=0.05)
    assert audio_page.play("music")["time"] > 0
    page.locator("#music-like").click()
    audio_page.wait_until(lambda: audio_page.studio.rating(row.id) == 1, "the 👍 vote")

    # Reuse settings puts the prompt back (after the prompt box was changed), and the clip is in the list.
    page.locator("#music-prompt textarea").fill("something else")
    page.locator("#music-reuse").click()
    expect(page.locator("#music-prompt textarea")).to_have_value("calm piano with soft strings")
    expect(page.locator("#music-seed input")).to_have_value("42")
    expect(page.locator("#music-clips input")).to_have_value(re.compile(rf"^#{row.id} 1\.5 s"))


@pytest.mark.browser
def test_stop_ends_a_long_music_generation(audio_page: AudioPage) -> None:
    """300 s of music (about 24,000 frames, far beyond the tiny model's 0.7 s window): Stop ends it early."""
    page = audio_page.page
    audio_page.open_section("Music")
    before = len(audio_page.rows("music"))
    duration = page.locator("#music-duration input[type=number]")
    duration.fill("300")
    duration.press("Enter")
    page.locator("#music-prompt textarea").fill("an endless drone")
    page.locator("#music-generate").click()
    expect(page.locator("#music-notice p")).to_have_text(re.compile(r"^\d+/24000$"))  # frames are being made
    page.locator("#music-stop").click()
    audio_page.wait_until(lambda: len(audio_page.rows("music")) > before, "the stopped music row")
    row = audio_page.rows("music")[-1]
    assert row.status == "stopped" and row.files == [] and row.params["duration"] == 300
    expect(page.locator("#music-notice p")).to_have_text("Stopped.")
    # The queue is free again: a short clip runs right after.
    duration.fill("1.5")
    duration.press("Enter")
    assert audio_page.generate("music", "calm piano").params["duration"] == 1.5


@pytest.mark.browser
def test_empty_text_is_refused_with_a_message(audio_page: AudioPage) -> None:
    before = len(audio_page.rows("speech"))
    audio_page.page.locator("#speech-prompt textarea").fill("   ")
    audio_page.page.locator("#speech-generate").click()
    expect(audio_page.page.locator(".toast-body.error")).to_contain_text("the text to speak is empty")
    assert len(audio_page.rows("speech")) == before
