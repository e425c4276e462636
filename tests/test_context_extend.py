"""`context extend`: tiled learned positions, Longformer conversion, RoPE scaling, bad input.

Every model is built here from a config (1-2 layers, hidden 32-64) with a tokenizer trained here.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import transformers as T

from langadapt.context import LongformerOptions, RopeScaling, extend_context, global_attention_mask, tile_rows
from langadapt.errors import ConfigError
from tests.conftest import make_texts, run_cli
from tests.helpers_transfer import byte_level_bpe

VOCAB = 300  # the tiny models' vocabulary: the tokenizers trained here have up to 261 tokens
OLD = 16  # the tiny encoders' trained maximum (tokens)
NEW = 40  # not a multiple of OLD: the last copy is partial
ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # pad id 1, as RoBERTa / XLM-R
ROBERTA_ROLES = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                 "mask_token": "<mask>", "cls_token": "<s>", "sep_token": "</s>"}
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # pad id 0, as BERT
BERT_ROLES = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
              "mask_token": "[MASK]"}


@pytest.fixture(scope="module")
def tokenizers():
    texts = make_texts(300, seed=3)
    return {"roberta": byte_level_bpe(texts, 260, ROBERTA_SPECIALS, ROBERTA_ROLES),
            "bert": byte_level_bpe(texts, 260, BERT_SPECIALS, BERT_ROLES)}


def encoder_config(arch: str, max_tokens: int = OLD):
    """A tiny config of ``arch`` accepting ``max_tokens`` tokens (RoBERTa family: 2 more rows, pad id 1)."""
    common = dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=2,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if arch in ("roberta", "xlm-roberta", "camembert"):
        cls = {"roberta": T.RobertaConfig, "xlm-roberta": T.XLMRobertaConfig, "camembert": T.CamembertConfig}[arch]
        return cls(**common, max_position_embeddings=max_tokens + 2, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                   type_vocab_size=1)
    if arch == "bert":
        return T.BertConfig(**common, max_position_embeddings=max_tokens, pad_token_id=0)
    if arch == "electra":
        return T.ElectraConfig(**common, embedding_size=16, max_position_embeddings=max_tokens, pad_token_id=0)
    if arch == "distilbert":
        return T.DistilBertConfig(vocab_size=VOCAB, dim=32, n_heads=2, hidden_dim=64, n_layers=2, dropout=0.0,
                                  attention_dropout=0.0, max_position_embeddings=max_tokens, pad_token_id=0)
    if arch == "gpt2":
        return T.GPT2Config(vocab_size=VOCAB, n_embd=32, n_head=2, n_layer=2, n_positions=max_tokens, bos_token_id=1,
                            eos_token_id=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    raise KeyError(arch)


def tokenizer_for(arch: str, tokenizers):
    return tokenizers["roberta" if arch in ("roberta", "xlm-roberta", "camembert", "gpt2") else "bert"]


def save_tiny(path, arch: str, tokenizers, seed: int = 0):
    torch.manual_seed(seed)
    config = encoder_config(arch)
    cls = T.AutoModelForCausalLM if arch == "gpt2" else T.AutoModelForMaskedLM
    model = cls.from_config(config).eval()
    model.save_pretrained(path)
    tokenizer_for(arch, tokenizers).save_pretrained(path)
    return model


def random_batch(length: int, pad_id: int, lengths=None, seed: int = 0, vocab: int = VOCAB):
    """Token ids avoiding the special ids 0-4, right-padded to ``length`` (rows of ``lengths`` tokens)."""
    g = torch.Generator().manual_seed(seed)
    lengths = lengths or [length]
    ids = torch.randint(5, vocab, (len(lengths), length), generator=g)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, n:] = pad_id
        mask[row, :n] = 1
    return ids, mask


# ---------------------------------------------------------------------------------------------- tiling


@pytest.mark.parametrize("offset", [0, 2])
def test_tile_rows_repeats_the_trained_block(offset):
    old, new, dim = 5, 13, 3
    weight = torch.randn(offset + old, dim)
    table = tile_rows(weight, offset, new)
    assert table.shape == (offset + new, dim)
    assert torch.equal(table[:offset], weight[:offset])  # reserved rows kept
    for p in range(new):  # position p reads row offset + p; the trained block repeats every `old` positions
        copy, within = divmod(p, old)
        assert torch.equal(table[offset + p], weight[offset + within]), (p, copy)


def test_tile_rows_into_a_different_offset_zeroes_the_reserved_rows():
    weight = torch.randn(4, 2)  # BERT-style: no reserved rows
    table = tile_rows(weight, 0, 10, new_offset=1)
    assert torch.equal(table[0], torch.zeros(2))
    assert all(torch.equal(table[1 + p], weight[p % 4]) for p in range(10))


FAMILIES = ["bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert", "gpt2"]


@pytest.mark.parametrize("arch", FAMILIES)
def test_tiled_model_reloads_with_tiled_rows_and_unchanged_short_logits(arch, tokenizers, tmp_path):
    source = save_tiny(tmp_path / "src", arch, tokenizers)
    offset = 2 if arch in ("roberta", "xlm-roberta", "camembert") else 0
    report = extend_context(str(tmp_path / "src"), str(tmp_path / "out"), NEW)
    assert report["method"] == "tile" and report["max_positions_before"] == OLD
    cls = T.AutoModelForCausalLM if arch == "gpt2" else T.AutoModelForMaskedLM
    extended = cls.from_pretrained(tmp_path / "out").eval()
    assert extended.config.max_position_embeddings == NEW + offset
    old_table = source.base_model.get_submodule("wpe" if arch == "gpt2" else "embeddings.position_embeddings").weight
    new_table = extended.base_model.get_submodule("wpe" if arch == "gpt2" else "embeddings.position_embeddings").weight
    assert new_table.shape[0] == NEW + offset
    assert torch.equal(new_table[:offset + OLD], old_table)  # the trained rows themselves
    for p in range(OLD, NEW):  # every new row is the trained row it was tiled from
        assert torch.equal(new_table[offset + p], old_table[offset + p % OLD]), p
    embeddings = extended.base_model.get_submodule("" if arch == "gpt2" else "embeddings")
    for name in ("position_ids", "token_type_ids"):
        buffer = getattr(embeddings, name, None)
        if buffer is not None:
            assert buffer.shape[-1] == NEW + offset, name
    if hasattr(embeddings, "position_ids"):
        assert torch.equal(embeddings.position_ids[0], torch.arange(NEW + offset))
    assert T.AutoTokenizer.from_pretrained(tmp_path / "out").model_max_length == NEW

    pad = source.config.pad_token_id if source.config.pad_token_id is not None else 0
    ids, mask = random_batch(OLD - 3, pad, lengths=[OLD - 3, OLD - 7])  # shorter than the old maximum, padded
    with torch.no_grad():
        before = source(input_ids=ids, attention_mask=mask).logits
        after = extended(input_ids=ids, attention_mask=mask).logits
        long_ids, long_mask = random_batch(NEW, pad)
        assert extended(input_ids=long_ids, attention_mask=long_mask).logits.shape[1] == NEW
    assert torch.equal(before, after)  # bit for bit


def test_tile_cli_writes_report_card_and_config(tokenizers, tmp_path):
    save_tiny(tmp_path / "src", "roberta", tokenizers)
    code, out, err = run_cli("context", "extend", "--model", str(tmp_path / "src"), "--max-positions", "64",
                             "--out", str(tmp_path / "out"))
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "context_report.json").read_text())
    assert report["details"]["rows_before"] == OLD + 2 and report["details"]["rows_after"] == 66
    assert report["details"]["reserved_rows"] == 2 and report["details"]["tiles"] == 4.0
    assert "tiled" in (tmp_path / "out" / "README.md").read_text()
    assert (tmp_path / "out" / "context_config.yaml").is_file()
    assert "16 -> 64 tokens" in out


# ------------------------------------------------------------------------------------------ Longformer


def longformer_logits(model, ids, mask, global_mode="none", sep=None):
    glob = global_attention_mask(ids, global_mode, sep)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, global_attention_mask=glob).logits


@pytest.mark.parametrize("arch", ["roberta", "bert"])
def test_longformer_with_a_covering_window_matches_the_source(arch, tokenizers, tmp_path):
    source = save_tiny(tmp_path / "src", arch, tokenizers)
    report = extend_context(str(tmp_path / "src"), str(tmp_path / "out"), 64,
                            longformer=LongformerOptions(attention_window=2 * OLD))
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "longformer"
    lf = T.AutoModelForMaskedLM.from_pretrained(tmp_path / "out").eval()
    assert type(lf).__name__ == "LongformerForMaskedLM" and report["architecture"] == "LongformerForMaskedLM"
    pad = source.config.pad_token_id
    assert lf.config.attention_window == [2 * OLD] * 2
    assert lf.config.max_position_embeddings == 64 + pad + 1  # Longformer counts positions from pad id + 1
    ids, mask = random_batch(OLD, pad, lengths=[OLD, OLD - 5])  # up to the old maximum; window/2 >= length
    with torch.no_grad():
        reference = source(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    for mode in ("none", "cls"):  # global projections start as copies: global attention on CLS changes nothing
        ours = longformer_logits(lf, ids, mask, mode)
        assert (ours[real] - reference[real]).abs().max() < 1e-4, mode
    # a window that does not cover the input gives different logits: the comparison above can fail
    narrow = T.AutoModelForMaskedLM.from_pretrained(tmp_path / "out", attention_window=[4, 4]).eval()
    assert (longformer_logits(narrow, ids, mask)[real] - reference[real]).abs().max() > 1e-3
    long_ids, long_mask = random_batch(64, pad)
    assert longformer_logits(lf, long_ids, long_mask, "cls").shape[1] == 64


def test_longformer_global_projections_are_independent_copies(tokenizers, tmp_path):
    source = save_tiny(tmp_path / "src", "roberta", tokenizers)
    extend_context(str(tmp_path / "src"), str(tmp_path / "out"), 64, longformer=LongformerOptions(attention_window=8))
    lf = T.AutoModelForMaskedLM.from_pretrained(tmp_path / "out")
    for i, layer in enumerate(lf.longformer.encoder.layer):
        attention = layer.attention.self
        original = source.roberta.encoder.layer[i].attention.self
        for name in ("query", "key", "value"):
            local, glob = getattr(attention, name), getattr(attention, f"{name}_global")
            assert torch.equal(local.weight, getattr(original, name).weight)
            assert torch.equal(glob.weight, local.weight) and torch.equal(glob.bias, local.bias)
            assert glob.weight.data_ptr() != local.weight.data_ptr()
            with torch.no_grad():
                glob.weight.add_(1.0)
            assert torch.equal(local.weight, getattr(original, name).weight)  # not an alias
    assert lf.lm_head.decoder.weight is lf.longformer.embeddings.word_embeddings.weight  # still tied


def test_longformer_reuses_the_roberta_reserved_rows_and_tiles(tokenizers, tmp_path):
    source = save_tiny(tmp_path / "src", "roberta", tokenizers)
    extend_context(str(tmp_path / "src"), str(tmp_path / "out"), 40, longformer=LongformerOptions(attention_window=8))
    table = T.AutoModelForMaskedLM.from_pretrained(tmp_path / "out").longformer.embeddings.position_embeddings.weight
    old = source.roberta.embeddings.position_embeddings.weight
    assert table.shape[0] == 42 and torch.equal(table[:2], old[:2])
    assert all(torch.equal(table[2 + p], old[2 + p % OLD]) for p in range(40))


def test_global_attention_mask_modes():
    ids = torch.tensor([[0, 7, 8, 2, 9, 9, 2], [0, 7, 2, 9, 9, 9, 2]])
    assert global_attention_mask(ids, "none") is None
    assert global_attention_mask(ids, "cls").tolist() == [[1, 0, 0, 0, 0, 0, 0]] * 2
    assert global_attention_mask(ids, "question", sep_token_id=2).tolist() == [[1, 1, 1, 0, 0, 0, 0],
                                                                              [1, 1, 0, 0, 0, 0, 0]]
    with pytest.raises(ConfigError):
        global_attention_mask(torch.tensor([[0, 7, 8]]), "question", sep_token_id=2)


# ------------------------------------------------------------------------------------------------ RoPE

THETA, ROPE_OLD, HEAD_DIM = 100.0, 64, 32  # a small theta so that YaRN's ramp spans several pairs at this length


def save_rope_model(path, arch: str, tokenizers, **overrides):
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=64, num_attention_heads=2, intermediate_size=64, num_hidden_layers=1,
                  max_position_embeddings=ROPE_OLD, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    if arch == "llama":
        config = T.LlamaConfig(**common, rope_parameters={"rope_type": "default", "rope_theta": THETA})
    elif arch == "gpt_neox":
        config = T.GPTNeoXConfig(**common, rope_parameters={"rope_type": "default", "rope_theta": THETA,
                                                            "partial_rotary_factor": 0.5})
    else:
        config = T.Qwen2Config(**common, num_key_value_heads=1,
                               rope_parameters={"rope_type": "default", "rope_theta": THETA})
    for key, value in overrides.items():
        setattr(config, key, value)
    model = T.AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(path)
    tokenizers["roberta"].save_pretrained(path)
    return model


def rotary(model):
    return next(m for m in model.modules() if hasattr(m, "inv_freq") and hasattr(m, "attention_scaling"))


def base_inv_freq(dim: int, theta: float = THETA) -> np.ndarray:
    return theta ** (-np.arange(0, dim, 2) / dim)


def yarn_inv_freq(dim: int, factor: float, original: int, theta: float = THETA, beta_fast=32, beta_slow=1):
    """YaRN (Peng et al. 2023, and its reference code): pair i keeps its frequency when it turns more than
    beta_fast times over the trained length, is divided by the factor when it turns fewer than beta_slow
    times, with a linear ramp over the pair index in between (bounds rounded outwards)."""
    def pair_index_turning(rotations):  # pair index (in dims) whose wavelength fits `rotations` times in `original`
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(pair_index_turning(beta_fast)), 0)
    high = min(math.ceil(pair_index_turning(beta_slow)), dim - 1)
    ramp = np.clip((np.arange(dim // 2) - low) / max(high - low, 1e-3), 0, 1)  # 0: keep, 1: interpolate
    freq = base_inv_freq(dim, theta)
    return freq * (1 - ramp) + freq / factor * ramp


@pytest.mark.parametrize("method", ["linear", "yarn", "longrope", "dynamic"])
def test_rope_factor_one_changes_no_logit(method, tokenizers, tmp_path):
    source = save_rope_model(tmp_path / "src", "llama", tokenizers)
    extend_context(str(tmp_path / "src"), str(tmp_path / "out"), 4 * ROPE_OLD,
                   rope=RopeScaling(method=method, factor=1.0))
    extended = T.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert extended.config.rope_parameters["rope_type"] == method
    # dynamic NTK rescales any input longer than the trained length, even at factor 1 (its base grows with L / L0)
    length = ROPE_OLD if method == "dynamic" else 2 * ROPE_OLD
    ids, _ = random_batch(length, 1)
    with torch.no_grad():
        assert torch.equal(source(input_ids=ids).logits, extended(input_ids=ids).logits)


def test_rope_linear_inverse_frequencies_after_reload(tokenizers, tmp_path):
    save_rope_model(tmp_path / "src", "llama", tokenizers)
    code, _, err = run_cli("context", "extend", "--model", str(tmp_path / "src"), "--max-positions", "256",
                           "--out", str(tmp_path / "out"), "--rope", "linear")
    assert code == 0, err
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["rope_parameters"]["rope_type"] == "linear" and config["rope_parameters"]["factor"] == 4.0
    assert config["max_position_embeddings"] == 256
    model = T.AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    np.testing.assert_allclose(rotary(model).inv_freq.numpy(), base_inv_freq(HEAD_DIM) / 4, rtol=1e-6)
    assert rotary(model).attention_scaling == 1.0


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_rope_yarn_inverse_frequencies_after_reload(arch, tokenizers, tmp_path):
    save_rope_model(tmp_path / "src", arch, tokenizers)
    extend_context(str(tmp_path / "src"), str(tmp_path / "out"), 256, rope=RopeScaling(method="yarn"))
    model = T.AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    params = model.config.rope_parameters
    assert params["original_max_position_embeddings"] == ROPE_OLD and model.config.max_position_embeddings == 256
    expected = yarn_inv_freq(HEAD_DIM, 4.0, ROPE_OLD)
    assert 0 < np.sum(expected == base_inv_freq(HEAD_DIM)) < HEAD_DIM // 2 - 2  # a ramp, not one regime
    np.testing.assert_allclose(rotary(model).inv_freq.numpy(), expected, rtol=1e-6)
    assert rotary(model).attention_scaling == pytest.approx(0.1 * math.log(4.0) + 1)


def test_rope_dynamic_and_longrope_frequencies_at_length(tokenizers, tmp_path):
    save_rope_model(tmp_path / "src", "llama", tokenizers)
    extend_context(str(tmp_path / "src"), str(tmp_path / "dyn"), 256, rope=RopeScaling(method="dynamic"))
    model = T.AutoModelForCausalLM.from_pretrained(tmp_path / "dyn").eval()
    assert model.config.max_position_embeddings == ROPE_OLD  # dynamic NTK counts from the trained length
    length = 3 * ROPE_OLD
    with torch.no_grad():
        model(input_ids=random_batch(length, 1)[0])
    base = THETA * (4.0 * length / ROPE_OLD - 3.0) ** (HEAD_DIM / (HEAD_DIM - 2))
    np.testing.assert_allclose(rotary(model).inv_freq.numpy(), base_inv_freq(HEAD_DIM, base), rtol=1e-5)

    long_factor = [1.0 + i for i in range(HEAD_DIM // 2)]
    extend_context(str(tmp_path / "src"), str(tmp_path / "lr"), 256,
                   rope=RopeScaling(method="longrope", long_factor=long_factor))
    model = T.AutoModelForCausalLM.from_pretrained(tmp_path / "lr").eval()
    assert rotary(model).attention_scaling == pytest.approx(math.sqrt(1 + math.log(4.0) / math.log(ROPE_OLD)))
    with torch.no_grad():
        model(input_ids=random_batch(2 * ROPE_OLD, 1)[0])
    np.testing.assert_allclose(rotary(model).inv_freq.numpy(), base_inv_freq(HEAD_DIM) / np.array(long_factor),
                               rtol=1e-6)
    with torch.no_grad():
        model(input_ids=random_batch(ROPE_OLD // 2, 1)[0])  # within the trained length: the short factors (1)
    np.testing.assert_allclose(rotary(model).inv_freq.numpy(), base_inv_freq(HEAD_DIM), rtol=1e-6)


def test_rope_partial_rotary_gpt_neox(tokenizers, tmp_path):
    save_rope_model(tmp_path / "src", "gpt_neox", tokenizers)
    extend_context(str(tmp_path / "src"), str(tmp_path / "out"), 128, rope=RopeScaling(method="linear"))
    model = T.AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    np.testing.assert_allclose(rotary(model).inv_freq.numpy(), base_inv_freq(HEAD_DIM // 2) / 2, rtol=1e-6)
    with pytest.raises(ConfigError, match="needs 8 numbers"):  # longrope factors: one per rotary pair
        extend_context(str(tmp_path / "src"), str(tmp_path / "lr"), 128,
                       rope=RopeScaling(method="longrope", long_factor=[2.0] * 16))


def test_rope_refuses_to_scale_twice_unless_told(tokenizers, tmp_path):
    save_rope_model(tmp_path / "src", "llama", tokenizers)
    extend_context(str(tmp_path / "src"), str(tmp_path / "x4"), 256, rope=RopeScaling(method="yarn"))
    with pytest.raises(ConfigError, match="already scaled"):
        extend_context(str(tmp_path / "x4"), str(tmp_path / "x8"), 512, rope=RopeScaling(method="yarn"))
    assert not (tmp_path / "x8").exists()
    report = extend_context(str(tmp_path / "x4"), str(tmp_path / "x8"), 512,
                            rope=RopeScaling(method="yarn", rescale=True))
    assert report["details"]["rope_parameters_before"]["rope_type"] == "yarn"
    model = T.AutoModelForCausalLM.from_pretrained(tmp_path / "x8")  # replaced, measured from the pretraining length
    assert model.config.rope_parameters["original_max_position_embeddings"] == ROPE_OLD
    assert model.config.rope_parameters["factor"] == 8.0
    np.testing.assert_allclose(rotary(model).inv_freq.numpy(), yarn_inv_freq(HEAD_DIM, 8.0, ROPE_OLD), rtol=1e-6)
    assert "RoPE before" in (tmp_path / "x8" / "README.md").read_text()


# ------------------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_input_models(tokenizers, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    save_tiny(root / "roberta", "roberta", tokenizers)
    save_rope_model(root / "llama", "llama", tokenizers)
    return root


@pytest.mark.parametrize("argv, message", [
    (["roberta", "--max-positions", "16"], "larger than the model's current maximum (16 tokens)"),
    (["roberta", "--max-positions", "8"], "larger than the model's current maximum"),
    (["roberta", "--max-positions", "0"], "--max-positions: expected an integer >= 1, got 0"),
    (["llama", "--max-positions", "64", "--rope", "linear"], "larger than the model's current maximum (64"),
    (["llama", "--max-positions", "256", "--longformer"], "--longformer converts RoBERTa"),
    (["llama", "--max-positions", "256"], "choose a scaling with --rope"),
    (["roberta", "--max-positions", "64", "--rope", "yarn"], "--rope applies to rotary (RoPE) models"),
    (["roberta", "--max-positions", "64", "--longformer", "--attention-window", "7"], "positive even number"),
    (["roberta", "--max-positions", "64", "--longformer", "--attention-window", "0"], "--attention-window: expected an integer >= 1"),
    (["roberta", "--max-positions", "64", "--longformer", "--attention-window", "-4"], "--attention-window: expected an integer >= 1"),
    (["roberta", "--max-positions", "64", "--attention-window", "8"], "add --longformer"),
    (["roberta", "--max-positions", "64", "--longformer", "--global-tokens", "all"], "global_tokens must be"),
    (["llama", "--max-positions", "256", "--rope", "linear", "--factor", "0.5"], "--factor: expected a finite number >= 1"),
    (["llama", "--max-positions", "256", "--rope", "ntk"], "rope must be one of"),
    (["llama", "--max-positions", "256", "--factor", "2"], "add --rope"),
    (["llama", "--max-positions", "256", "--rope", "linear", "--long-factor", "2", "2"], "longrope settings"),
    (["llama", "--max-positions", "256", "--rope", "longrope", "--long-factor", "2", "2"], "needs 16 numbers"),
])
def test_bad_input_exits_2_and_writes_nothing(argv, message, bad_input_models, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli("context", "extend", "--model", str(bad_input_models / argv[0]), *argv[1:],
                           "--out", str(out))
    assert code == 2, err
    assert err.startswith("langadapt: error: ") and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary sibling


def test_a_tokenizer_larger_than_the_embedding_table_is_refused(bad_input_models, tmp_path):
    big = byte_level_bpe(make_texts(300, seed=4), 400, ROBERTA_SPECIALS, ROBERTA_ROLES)
    assert len(big) > VOCAB
    big.save_pretrained(tmp_path / "big")
    code, _, err = run_cli("context", "extend", "--model", str(bad_input_models / "roberta"), "--tokenizer",
                           str(tmp_path / "big"), "--max-positions", "64", "--out", str(tmp_path / "out"))
    assert code == 2 and f"only {VOCAB} embedding rows" in err and not (tmp_path / "out").exists()


def test_existing_output_is_refused_before_loading(bad_input_models, tmp_path):
    (tmp_path / "out").mkdir()
    code, _, err = run_cli("context", "extend", "--model", str(bad_input_models / "roberta"), "--max-positions", "64",
                           "--out", str(tmp_path / "out"))
    assert code == 2 and "already exists" in err


@pytest.mark.parametrize("method", ["tile", "longformer"])
def test_extension_keeps_the_weights_dtype(method, tokenizers, tmp_path):
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = T.AutoModelForMaskedLM.from_config(encoder_config("roberta")).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "src")
    tokenizers["roberta"].save_pretrained(tmp_path / "src")
    extend_context(str(tmp_path / "src"), str(tmp_path / "out"), NEW,
                   longformer=LongformerOptions(attention_window=8) if method == "longformer" else None)
    tensors = load_file(tmp_path / "out" / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}


def test_rope_copies_local_weights_unchanged_and_equals_the_load_path(tokenizers, tmp_path, monkeypatch):
    import filecmp

    import langadapt.context.run as run

    save_rope_model(tmp_path / "src", "llama", tokenizers)
    copied = extend_context(str(tmp_path / "src"), str(tmp_path / "copy"), 256, rope=RopeScaling(method="yarn"))
    assert copied["weights"] == "copied unchanged" and copied["architecture"] == "LlamaForCausalLM"
    assert filecmp.cmp(tmp_path / "src" / "model.safetensors", tmp_path / "copy" / "model.safetensors", shallow=False)
    monkeypatch.setattr(run, "local_weight_files", lambda model: None)  # as for a Hub id: load and save
    loaded = extend_context(str(tmp_path / "src"), str(tmp_path / "load"), 256, rope=RopeScaling(method="yarn"))
    assert loaded["weights"] == "loaded and saved" and loaded["details"] == copied["details"]
    a = T.AutoModelForCausalLM.from_pretrained(tmp_path / "copy").eval()
    b = T.AutoModelForCausalLM.from_pretrained(tmp_path / "load").eval()
    assert a.config.rope_parameters == b.config.rope_parameters
    ids, _ = random_batch(2 * ROPE_OLD, 1)
    with torch.no_grad():
        assert torch.equal(a(input_ids=ids).logits, b(input_ids=ids).logits)
