"""Language embeddings: BERT/RoBERTa/XLM-R token types and HF XLM's langs; step 0 unchanged (copied/zero rows),
outputs that differ by language after a step, lang2id/id2lang through from_pretrained, continuing a model that
has languages, the refusal for causal models, and train + eval bpb feeding each language its id."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (AutoConfig, AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM, LlamaConfig,
                          LlamaForCausalLM, RobertaConfig, RobertaForMaskedLM, XLMConfig, XLMRobertaConfig,
                          XLMRobertaForMaskedLM, XLMWithLMHeadModel)

from langadapt.errors import ConfigError
from langadapt.train.languages import WithLanguage, add_language_embeddings, language_ids
from tests.conftest import run_cli
from tests.helpers_train import read_metrics, tiny_store

SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=72, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny(kind: str, vocab: int = 120):
    torch.manual_seed(0)
    if kind == "bert":  # two segment rows, as pretrained BERT has
        return BertForMaskedLM(BertConfig(vocab_size=vocab, type_vocab_size=2, **SMALL))
    if kind == "roberta":
        return RobertaForMaskedLM(RobertaConfig(vocab_size=vocab, type_vocab_size=1, pad_token_id=1, **SMALL))
    if kind == "xlm-roberta":
        return XLMRobertaForMaskedLM(XLMRobertaConfig(vocab_size=vocab, type_vocab_size=1, pad_token_id=1, **SMALL))
    return XLMWithLMHeadModel(XLMConfig(vocab_size=vocab, emb_dim=32, n_layers=2, n_heads=4, n_langs=1,
                                        max_position_embeddings=72, dropout=0.0, attention_dropout=0.0,
                                        pad_token_id=1))


def logits_per_language(model, ids, n_langs):
    model.eval()
    with torch.no_grad():
        return [WithLanguage(model, k)(ids).logits for k in range(n_langs)]


def one_step(model, ids, langs, input_name):
    """One SGD step of masked-LM loss on every position, each row with its language id."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    out = model(input_ids=ids, **{input_name: langs[:, None].expand_as(ids)}).logits
    torch.nn.functional.cross_entropy(out.flatten(0, 1), ids.flatten()).backward()
    opt.step()


@pytest.mark.parametrize("kind", ["bert", "roberta", "xlm-roberta", "xlm"])
def test_step_0_unchanged_then_outputs_differ_by_language(kind):
    model = tiny(kind)
    ids = torch.randint(5, 120, (3, 16))
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids).logits  # no language input: token type 0 / no language embedding
    lang2id = add_language_embeddings(model, ["de", "en", "fr"])
    assert lang2id == {"de": 0, "en": 1, "fr": 2}
    assert model.config.id2lang == {0: "de", 1: "en", 2: "fr"}
    input_name = "langs" if kind == "xlm" else "token_type_ids"
    if kind == "xlm":
        assert model.config.n_langs == 3 and model.config.use_lang_emb
        assert model.transformer.lang_embeddings.weight.abs().sum() == 0  # a new table: zeros
    else:
        assert model.config.type_vocab_size == 3
        table = model.base_model.embeddings.token_type_embeddings.weight
        assert table.shape[0] == 3 and all(torch.equal(table[k], table[0]) for k in range(3))  # copies of row 0
    for out in logits_per_language(model, ids, 3):
        assert torch.allclose(out, before, atol=1e-6)  # step 0: the same model for every language
    one_step(model, ids, torch.tensor([0, 1, 2]), input_name)
    after = logits_per_language(model, ids, 3)
    for a in range(3):
        for b in range(a + 1, 3):
            assert (after[a] - after[b]).abs().max() > 1e-4  # each language now has its own embedding


@pytest.mark.parametrize("kind", ["bert", "xlm"])
def test_languages_round_trip_through_from_pretrained(kind, tmp_path):
    model = tiny(kind)
    add_language_embeddings(model, ["sw", "de"])
    one_step(model, torch.randint(5, 120, (2, 12)), torch.tensor([0, 1]), "langs" if kind == "xlm" else "token_type_ids")
    model.save_pretrained(tmp_path / "m")
    config = AutoConfig.from_pretrained(tmp_path / "m")
    assert config.lang2id == {"sw": 0, "de": 1} and {int(k): v for k, v in config.id2lang.items()} == {0: "sw", 1: "de"}
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "m")
    ids = torch.randint(5, 120, (2, 12))
    for ours, theirs in zip(logits_per_language(model, ids, 2), logits_per_language(loaded, ids, 2)):
        assert torch.allclose(ours, theirs, atol=1e-6)


def test_a_model_with_languages_keeps_their_rows_and_appends_new_ones():
    model = tiny("bert")
    add_language_embeddings(model, ["de", "en"])
    with torch.no_grad():
        model.bert.embeddings.token_type_embeddings.weight[1] += 1.0  # "en" has learned something
    old = model.bert.embeddings.token_type_embeddings.weight.detach().clone()
    lang2id = add_language_embeddings(model, ["fr", "en"])  # a new run: fr is new, en is known
    assert lang2id == {"de": 0, "en": 1, "fr": 2}
    table = model.bert.embeddings.token_type_embeddings.weight
    assert torch.equal(table[:2], old) and torch.equal(table[2], old[0])
    # the run's loader numbers its languages fr=0, en=1: the blocks get the model's ids
    assert language_ids(model, torch.tensor([0, 1, 1, 0]), ["fr", "en"]).tolist() == [2, 1, 1, 2]


def test_hf_xlm_counts_as_a_masked_lm_unless_causal():
    from langadapt.io.models import is_masked_lm_config

    config = XLMConfig(architectures=["XLMWithLMHeadModel"])
    assert is_masked_lm_config(config)
    assert not is_masked_lm_config(XLMConfig(architectures=["XLMWithLMHeadModel"], causal=True))


def test_causal_and_tableless_models_are_refused():
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(ConfigError) as err:
        add_language_embeddings(llama, ["de", "en"])
    assert "llama has no place for language ids" in str(err.value) and "\n" not in str(err.value)


@pytest.fixture
def xlm_setup(tmp_path, byte_bpe_tokenizer):
    byte_bpe_tokenizer.save_pretrained(tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    tok.add_special_tokens({"mask_token": "<mask>"})
    model = tiny("xlm", vocab=len(tok))
    model.config.pad_token_id = tok.pad_token_id
    model.transformer.pad_index = tok.pad_token_id
    model.save_pretrained(tmp_path / "xlm")
    tok.save_pretrained(tmp_path / "xlm")
    stores = {"de": tiny_store(tmp_path, tok, n_docs=60, val_docs=3, name="de"),
              "en": tiny_store(tmp_path, tok, n_docs=60, val_docs=3, name="en")}
    return tmp_path, tok, stores


def test_train_and_eval_bpb_feed_each_language_its_id(xlm_setup):
    root, tok, stores = xlm_setup
    out = root / "run"
    code, _, err = run_cli("train", "--model", str(root / "xlm"), "--out-dir", str(out),
                           "--data.train", json.dumps({k: str(v) for k, v in stores.items()}),
                           "--data.block-size", "32", "--train.objective", "mlm", "--train.language-embeddings",
                           "--train.steps", "4", "--train.micro-batch-size", "2", "--train.global-batch-size", "4",
                           "--train.lr", "1e-2", "--log.every", "1", "--eval.every", "2", "--eval.batch-size", "2",
                           "--train.attention", "eager")  # HF XLM has no sdpa
    assert code == 0, err
    final = AutoModelForMaskedLM.from_pretrained(out / "final")
    assert final.config.n_langs == 2 and final.config.lang2id == {"de": 0, "en": 1}
    assert final.transformer.lang_embeddings.weight.abs().sum() > 0  # trained away from its zero start
    assert {"val_mlm_loss/de", "val_mlm_loss/en"} <= set(read_metrics(out)[-1])
    # eval bpb scores each text with the id of its --lang: the same number as scoring through WithLanguage
    from langadapt.eval.bpb import bits_per_byte

    text = root / "en.txt"
    text.write_text("the river and the stone.\nthe small bird was in the old tree.\n")
    code, stdout, err = run_cli("eval", "bpb", "--model", str(out / "final"), "--input", str(text), "--lang", "en",
                                "--json")
    assert code == 0, err
    assert json.loads(stdout)["scoring"] == "pll"  # HF XLM (XLMWithLMHeadModel) is a masked LM
    got = json.loads(stdout)["bits_per_byte"]
    docs = text.read_text().splitlines()
    as_en = bits_per_byte(WithLanguage(final, 1), tok, docs)["bits_per_byte"]
    as_de = bits_per_byte(WithLanguage(final, 0), tok, docs)["bits_per_byte"]
    assert got == pytest.approx(as_en, rel=1e-6) and abs(as_en - as_de) > 1e-6
    # a language the model was not trained with is a one-line error
    code, _, err = run_cli("eval", "bpb", "--model", str(out / "final"), "--input", str(text), "--lang", "fr")
    assert code == 2 and "not 'fr'" in err and err.count("\n") == 1
