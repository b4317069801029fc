"""Training's pure parts, without torch: hyperparameters and their range messages, device defaults, the
record checks with their "how to get more" messages, the held-out split and the records' TRL shape."""

from __future__ import annotations

import pytest

from studio import train
from studio.errors import StudioError


def test_defaults_per_method_and_alpha_follows_rank() -> None:
    assert train.hyperparams("sft").learning_rate == train.DEFAULT_LR["sft"]
    assert train.hyperparams("dpo").learning_rate == train.DEFAULT_LR["dpo"]
    params = train.hyperparams("dpo", {"lora_r": 4, "beta": 0.2, "max_steps": None})
    assert (params.lora_r, params.lora_alpha, params.beta, params.max_steps) == (4, 8, 0.2, None)
    assert train.hyperparams("dpo", {"lora_r": 4, "lora_alpha": 5}).lora_alpha == 5
    assert train.hyperparams("sft", {"target_modules": " q_proj, v_proj "}).targets() == ["q_proj", "v_proj"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learning_rate": 1.0}, "learning_rate=1.0 is out of range: it must be from 1e-07 to 0.01"),
        ({"learning_rate": float("nan")}, "learning_rate=nan is out of range: it must be from 1e-07 to 0.01"),
        ({"beta": 0}, "beta=0 is out of range: it must be from 0.001 to 10.0"),
        ({"lora_r": 0}, "lora_r=0 is out of range: it must be from 1 to 256"),
        ({"epochs": 500}, "epochs=500 is out of range: it must be from 1 to 100"),
        ({"max_steps": 0}, "max_steps=0 is out of range: it must be from 1 to 100000"),
        ({"batch_size": 1000}, "batch_size=1000 is out of range: it must be from 1 to 64"),
        ({"max_length": 4}, "max_length=4 is out of range: it must be from 16 to 32768"),
        ({"eval_fraction": 0.9}, "eval_fraction=0.9 is out of range: it must be from 0.0 to 0.5"),
        ({"epochs": "many"}, "epochs='many': input should be a valid integer"),
        ({"target_modules": "q_proj;rm -rf"}, "must be all-linear or module names separated by commas"),
        ({"learnin_rate": 0.1}, "unknown hyperparameter 'learnin_rate'; known: learning_rate, beta"),
    ],
)
def test_a_wrong_value_names_the_valid_range(values: dict, message: str) -> None:
    with pytest.raises(StudioError, match="invalid training settings") as caught:
        train.hyperparams("dpo", values)
    assert message in str(caught.value)


def test_kto_needs_a_batch_of_two_and_unknown_methods_are_named() -> None:
    with pytest.raises(StudioError, match="KTO needs a batch of at least 2"):
        train.hyperparams("kto", {"batch_size": 1})
    assert train.hyperparams("dpo", {"batch_size": 1}).batch_size == 1
    with pytest.raises(StudioError, match="unknown training method 'ppo'; methods: sft, dpo, kto"):
        train.hyperparams("ppo")


def test_cpu_defaults_are_float32_without_checkpointing_and_cuda_takes_bf16() -> None:
    params = train.hyperparams("dpo", {"max_steps": 3})
    cpu = train.trainer_kwargs("dpo", params, device="cpu", bf16=True)  # bf16 never on the CPU
    assert cpu["use_cpu"] is True and cpu["bf16"] is False and cpu["fp16"] is False
    assert cpu["activation_checkpointing"] is False  # TRL's default is on
    assert (cpu["max_steps"], cpu["beta"], cpu["logging_steps"], cpu["report_to"]) == (3, 0.1, 1, "none")
    cuda = train.trainer_kwargs("sft", params, device="cuda", bf16=True)
    assert cuda["use_cpu"] is False and cuda["bf16"] is True and "beta" not in cuda
    assert train.trainer_kwargs("sft", train.hyperparams("sft"), device="cuda")["bf16"] is False
    assert train.trainer_kwargs("sft", train.hyperparams("sft"), device="cpu")["max_steps"] == -1  # epochs


def test_too_few_records_say_how_many_there_are_are_needed_and_how_to_get_more() -> None:
    with pytest.raises(StudioError) as caught:
        train.check_enough("dpo", [{"prompt": "p", "chosen": "a", "rejected": "b"}], " (tab chat)")
    text = str(caught.value)
    assert "not enough data to train dpo (tab chat): 1 preference pairs, at least 4 needed" in text
    assert "compare two answers to one prompt (A/B)" in text
    with pytest.raises(
        StudioError, match=r"0 liked answers, at least 4 needed\. To get more, press thumbs up"
    ):
        train.check_enough("sft", [])
    liked = [{"prompt": "p", "completion": "c", "label": True}] * 5
    with pytest.raises(StudioError, match="5 liked and 0 disliked answers; KTO needs both"):
        train.check_enough("kto", liked)
    train.check_enough("kto", [*liked, {"prompt": "p", "completion": "d", "label": False}])


def test_the_held_out_split_is_the_exports_hash_split() -> None:
    records = [{"i": i} for i in range(200)]
    keys = [f"g{i}u1" for i in range(200)]
    split = train.held_out(records, keys, 0.15, 4)
    assert 15 <= len(split.eval) <= 45 and len(split.train) + len(split.eval) == 200 and not split.moved
    again = train.held_out(records[:100], keys[:100], 0.15, 4)  # fewer votes: each stays on its side
    assert again.eval == [r for r in split.eval if r["i"] < 100]
    tiny = train.held_out(records[:4], keys[:4], 0.5, 4)  # too few to hold any out: all train
    assert len(tiny.train) == 4 and tiny.eval == []
    assert train.dataset_hash(records[:3]) == train.dataset_hash([{"i": 0}, {"i": 1}, {"i": 2}])
    assert train.dataset_hash(records[:3]) != train.dataset_hash(records[1:4])


def test_records_become_conversational_and_sft_trains_on_the_answer() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Ahoy!"}]
    assert train.for_trainer("sft", [{"messages": messages}]) == [
        {"prompt": messages[:1], "completion": messages[1:]}
    ]
    dpo = train.for_trainer("dpo", [{"prompt": "hi", "chosen": "Ahoy!", "rejected": "Hello."}])
    assert dpo == [
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "Ahoy!"}],
            "rejected": [{"role": "assistant", "content": "Hello."}],
        }
    ]
    kto = train.for_trainer("kto", [{"prompt": messages[:1], "completion": messages[1:], "label": 0}])
    assert kto == [{"prompt": messages[:1], "completion": messages[1:], "label": False}]
