"""fabula tune: the data it reads, the adapter it writes (loaded by llama.cpp,
agreeing with the peft model it came from), resume, and bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fabula.errors import BackendError, UsageError
from fabula.tune import TuneSettings, examples, split
from tests.conftest import REPO, run_cli

DATA = REPO / "data" / "tune" / "spy"
# A few steps on three short stories at a learning rate high enough that the
# adapter moves the model visibly (the test checks direction, not quality).
TINY = TuneSettings(max_tokens=320, accumulate=1, lr=5e-3, epochs=1, held_out=0.34, save_every=2)


def tiny_data(root: Path, ids=(0, 1, 2)) -> Path:
    (root / "stories").mkdir(parents=True)
    cards = {json.loads(line)["id"]: line for line in (DATA / "cards.jsonl").read_text(encoding="utf-8").splitlines()}
    (root / "cards.jsonl").write_text("".join(cards[i] + "\n" for i in ids), encoding="utf-8")
    for i in ids:
        shutil.copy(DATA / "stories" / f"{i:03d}.txt", root / "stories" / f"{i:03d}.txt")
    return root


# -- data: fast ----------------------------------------------------------------------
def test_examples_of_a_data_folder_carry_the_card_before_the_story():
    items = examples(DATA)
    assert len(items) == 100
    first = next(e for e in items if e.key == "000")
    assert first.prompt.startswith("People: Julian Tadeusiak (male), Polish")
    assert "Setting: 1997, Valletta." in first.prompt and first.prompt.endswith("Tadeusiak's Debt\n\n")
    assert first.story.startswith("In Valletta Julian Tadeusiak") and first.story.count("\n\n") == 6


def test_examples_of_a_corpus_folder(tmp_path):
    from fabula.api import Corpus

    Corpus(tmp_path / "c").write(3, backend="fake", seed=4, progress=False)
    items = examples(tmp_path / "c")
    stories = {st.id: st for st in Corpus(tmp_path / "c")}
    assert {e.key for e in items} == set(stories)
    for e in items:
        assert stories[e.key].card.hero.full in e.prompt and e.story == stories[e.key].text.strip()


def test_several_folders_are_one_set_with_keys_led_by_the_folder(tmp_path):
    items = examples(DATA, tiny_data(tmp_path / "more", ids=(5, 6)))
    assert len(items) == 102 and {"spy/000", "more/005", "more/006"} <= {e.key for e in items}
    with pytest.raises(UsageError, match="same data folder is given twice"):
        examples(DATA, DATA)


def test_split_is_seeded_disjoint_and_keeps_one_out():
    items = examples(DATA)
    train, held = split(items, 0.1, seed=3)
    assert len(held) == 10 and len(train) == 90 and not {e.key for e in train} & {e.key for e in held}
    assert [e.key for e in split(items, 0.1, seed=3)[1]] == [e.key for e in held]
    assert [e.key for e in split(items, 0.1, seed=4)[1]] != [e.key for e in held]
    assert len(split(items[:2], 0.0, seed=0)[1]) == 1


def test_bad_data_folders_are_one_line_each(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="neither corpus.jsonl"):
        examples(tmp_path / "empty")
    with pytest.raises(UsageError, match="no such folder"):
        examples(tmp_path / "missing")
    root = tiny_data(tmp_path / "d", ids=(0, 1))
    (root / "stories" / "007.txt").write_text("A story without a card.\n", encoding="utf-8")
    with pytest.raises(UsageError, match="no card with id 007"):
        examples(root)
    (root / "stories" / "007.txt").unlink()
    (root / "cards.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(UsageError, match="line 1: not a card"):
        examples(root)


def test_cli_refuses_a_folder_without_cards_in_one_line(tmp_path):
    (tmp_path / "nothing").mkdir()
    r = run_cli("tune", str(tmp_path / "nothing"), "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "neither corpus.jsonl" in r.stderr
    assert not (tmp_path / "a").exists()
    r = run_cli("tune", str(DATA), "--base", "llama", "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and "--base llama: use embedded or gguf:PATH" in r.stderr


# -- the real model: transformers + peft train, llama.cpp loads ----------------------------
@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    pytest.importorskip("peft", reason="needs the tune extra (make setup installs it)")
    from fabula.tune import tune

    root = tmp_path_factory.mktemp("tune")
    data = tiny_data(root / "data")
    card = tune(data, root / "adapter", settings=TINY, steps=4)
    return root, data, card


@pytest.mark.model
def test_the_adapter_llama_cpp_loads_moves_the_logits_as_the_peft_model_does(tuned):
    """The GGUF export is right when llama.cpp, with the adapter, shifts the
    next-token logits the way the trained peft model shifts them."""
    import peft
    import torch
    from llama_cpp import Llama

    from fabula.backends.embedded import default_model_path
    from fabula.backends.llama_cpu import Tokenizer
    from fabula.tune import _tokens, load_base

    root, data, card = tuned
    assert card["steps"] == 4 and card["base_sha256"] and len(card["held_out_loss"]) >= 2
    path, adapter = default_model_path(), str(root / "adapter" / "adapter.gguf")
    tok = Tokenizer(path)
    ids, n = _tokens(tok, examples(data)[0], 320)
    tok.close()
    ids = ids[: n + 16]

    def llama_logits(lora):
        m = Llama(path, lora_path=lora, logits_all=True, n_ctx=512, n_threads=2, verbose=False)
        m.eval(ids)
        return np.array(m.scores[n : len(ids)])

    l0, l1 = llama_logits(None), llama_logits(adapter)
    state = torch.load(root / "adapter" / "checkpoint.pt", weights_only=False)
    model = peft.get_peft_model(load_base(path), peft.LoraConfig(r=TINY.rank, lora_alpha=TINY.alpha, target_modules=list(TINY.targets)))
    peft.set_peft_model_state_dict(model, state["adapter"])
    model.eval()
    with torch.no_grad(), model.disable_adapter():
        h0 = model(torch.tensor([ids])).logits[0, n:].numpy()
    with torch.no_grad():
        h1 = model(torch.tensor([ids])).logits[0, n:].numpy()
    moved = np.abs(h1 - h0).mean()
    assert moved > 0.2  # the tiny tune changed the model
    assert np.corrcoef((l1 - l0).ravel(), (h1 - h0).ravel())[0, 1] > 0.9
    assert (l1.argmax(1) != l0.argmax(1)).any()


@pytest.mark.model
def test_the_engine_writes_with_the_adapter_and_names_it(tuned):
    from fabula.backends.base import Request
    from fabula.backends.embedded import EmbeddedBackend

    root, data, _ = tuned
    adapter = str(root / "adapter" / "adapter.gguf")
    prompt = examples(data)[0].prompt
    req = Request(prompt=prompt, max_tokens=24, min_tokens=24, seed=1, temperature=0, repeat_penalty=1.0)
    plain = EmbeddedBackend.load(words=200, prefix_words=260, batch=2)
    tuned_be = EmbeddedBackend.load(words=200, prefix_words=260, batch=2, adapter=adapter)
    assert tuned_be.model.startswith("gemma-3-270m-q4_k_m+adapter:") and plain.model == "gemma-3-270m-q4_k_m"
    assert tuned_be.complete(req).text != plain.complete(req).text


@pytest.mark.model
def test_an_adapter_is_refused_by_another_base_model_and_a_non_adapter_too(tuned, tmp_path):
    from fabula.backends.embedded import EmbeddedBackend, default_model_path
    from tests.backends.servers import smollm2_path

    root, _, _ = tuned
    adapter = str(root / "adapter" / "adapter.gguf")
    with pytest.raises(BackendError, match="trained on another base model") as e:
        EmbeddedBackend.load(str(smollm2_path()), words=120, adapter=adapter)
    assert "\n" not in str(e.value)
    with pytest.raises(BackendError, match="not a LoRA adapter"):
        EmbeddedBackend.load(words=120, adapter=default_model_path())
    (tmp_path / "x.gguf").write_bytes(b"not gguf at all")
    with pytest.raises(BackendError, match="not a GGUF LoRA adapter"):
        EmbeddedBackend.load(words=120, adapter=str(tmp_path / "x.gguf"))


@pytest.mark.model
def test_a_run_stopped_after_a_checkpoint_resumes_to_the_same_adapter(tuned, tmp_path):
    from fabula.lora_gguf import read_keys
    from fabula.tune import CHECKPOINT_FILE, tune

    root, data, card = tuned

    class Stop(Exception):
        pass

    def stop_at_3(p):
        if p.step == 3:
            raise Stop  # after the checkpoint of step 2, before that of step 4

    with pytest.raises(Stop):
        tune(data, tmp_path / "b", settings=TINY, steps=4, on_step=stop_at_3)
    assert (tmp_path / "b" / CHECKPOINT_FILE).exists() and not (tmp_path / "b" / "adapter.gguf").exists()
    again = tune(data, tmp_path / "b", settings=TINY, steps=4)
    assert again["log"] == card["log"]
    a, b = (root / "adapter" / "adapter.gguf").read_bytes(), (tmp_path / "b" / "adapter.gguf").read_bytes()
    assert a == b and read_keys(tmp_path / "b" / "adapter.gguf")["adapter.type"] == "lora"
    with pytest.raises(UsageError, match="checkpoint of another run"):
        tune(data, tmp_path / "b", settings=TuneSettings(**{**TINY.__dict__, "seed": 1}), steps=4)


@pytest.mark.model
def test_a_model_transformers_cannot_load_is_one_line(tmp_path):
    pytest.importorskip("gguf")
    from fabula.lora_gguf import write_adapter
    from fabula.tune import tune

    data = tiny_data(tmp_path / "d")
    bogus = tmp_path / "bogus.gguf"
    write_adapter(bogus, "llama", 1.0, {}, {})  # a GGUF file of a known architecture with no model in it
    with pytest.raises(BackendError, match="holds no model weights") as e:
        tune(data, tmp_path / "a", base=str(bogus), settings=TINY, steps=1)
    assert "\n" not in str(e.value)
    write_adapter(bogus, "rwkv6", 1.0, {}, {})  # an architecture transformers reads no GGUF of
    with pytest.raises(BackendError, match="reads no GGUF model of architecture 'rwkv6'"):
        tune(data, tmp_path / "a", base=str(bogus), settings=TINY, steps=1)
    (tmp_path / "text.gguf").write_text("not a model")
    with pytest.raises(BackendError, match="not a GGUF file"):
        tune(data, tmp_path / "a", base=str(tmp_path / "text.gguf"), settings=TINY, steps=1)
    assert not (tmp_path / "a").exists()
