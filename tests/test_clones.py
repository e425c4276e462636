"""Cloned languages end to end: train grows the model and records the clone map, validation per clone, eval bpb and
eval similarity through the saved map, and the bad inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from tests.conftest import make_texts, run_cli
from tests.helpers_train import read_metrics, tiny_model_dir, tiny_store

CLONE_CONFIG = """\
model: {model}
out_dir: {out}
data:
  train: {{de: {store}}}
  block_size: 32
  clones: {{num_clones: 1, frac_clone: {frac}, p_clone: 0.5, seed: 3, init: {init}}}
train: {{steps: {steps}, micro_batch_size: 2, global_batch_size: 2, lr: 1.0e-3, seed: 0}}
checkpoint: {{every: {steps}}}
log: {{every: 1}}
eval: {{every: {steps}, batch_size: 4}}
"""


@pytest.fixture(scope="module")
def parts(tmp_path_factory, byte_bpe_tokenizer):
    root = tmp_path_factory.mktemp("clones")
    return root, tiny_model_dir(root, byte_bpe_tokenizer), tiny_store(root, byte_bpe_tokenizer, n_docs=40, val_docs=6)


def _train(root, model, store, name, *, init="random", frac=1.0, steps=4, extra=()):
    out = root / name
    cfg = root / f"{name}.yaml"
    cfg.write_text(CLONE_CONFIG.format(model=model, out=out, store=store, init=init, frac=frac, steps=steps))
    code, _, err = run_cli("train", "--config", str(cfg), *extra)
    return code, err, out


@pytest.fixture(scope="module")
def trained(parts):
    root, model, store = parts
    code, err, out = _train(root, model, store, "run-random")
    assert code == 0, err
    return out


def test_train_grows_the_model_and_saves_the_clone_map(parts, trained, byte_bpe_tokenizer):
    V = len(byte_bpe_tokenizer)
    final = AutoModelForCausalLM.from_pretrained(trained / "final")
    assert final.get_input_embeddings().weight.shape[0] == 2 * V and final.config.vocab_size == 2 * V
    record = json.loads((trained / "final" / "clones.json").read_text())
    assert record["base"] == "de" and record["languages"] == ["de_clone1"] and record["init"] == "random"
    assert record["base_vocab_size"] == V and record["vocab_size"] == 2 * V
    maps = np.load(trained / "final" / "clone_maps.npy")
    specials = {byte_bpe_tokenizer.bos_token_id, byte_bpe_tokenizer.eos_token_id, byte_bpe_tokenizer.pad_token_id}
    for i in range(V):  # frac_clone 1: every id but BOS/EOS/padding moves up by V
        assert maps[0, i] == (i if i in specials else i + V)
    assert (trained / "clones.json").is_file()  # beside the run: checkpoints find it too
    metrics = read_metrics(trained)
    assert "val_bpb/de_clone1" in metrics[0] and "val_bpb/de_clone1" in metrics[-1]


def test_copy_init_makes_the_clone_the_same_function_at_step_0(parts):
    """init copy: clone rows equal their base rows, so the clone's validation BPB equals the base's at step 0
    (random init: it does not)."""
    root, model, store = parts
    code, err, out = _train(root, model, store, "run-copy", init="copy", frac=0.5, steps=2)
    assert code == 0, err
    first = read_metrics(out)[0]
    assert math.isclose(first["val_bpb/de_clone1"], first["val_bpb/de"], rel_tol=1e-6)
    random_first = read_metrics(root / "run-random")[0] if (root / "run-random").exists() else None
    if random_first is not None:
        # a tiny random model predicts near-uniformly, so random clone rows change the step-0 BPB only slightly
        # (1e-4 to 1e-2 measured over different data): far above the copy run's float noise (~1e-7)
        assert abs(random_first["val_bpb/de_clone1"] - random_first["val_bpb/de"]) > 1e-5


def test_grow_for_clones_initializes_only_clone_rows():
    from transformers import LlamaConfig, LlamaForCausalLM

    from langadapt.data.mixture import CloneConfig, clone_maps
    from langadapt.train.clones import grow_for_clones

    V = 40
    torch.manual_seed(0)
    for init in ("random", "copy"):
        model = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False,
                                             initializer_range=0.5))
        before_in = model.get_input_embeddings().weight.detach().clone()
        before_out = model.get_output_embeddings().weight.detach().clone()
        maps = clone_maps(V, CloneConfig(num_clones=2, frac_clone=0.5, seed=1), protected=[0, 1])
        assert grow_for_clones(model, maps, 3 * V, init, seed=0)
        emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        assert emb.shape[0] == head.shape[0] == 3 * V
        assert torch.equal(emb[:V], before_in) and torch.equal(head[:V], before_out)  # base rows untouched
        for mapping in maps:
            moved = np.flatnonzero(mapping != np.arange(V))
            assert len(moved) == 19  # half of the 38 unprotected ids
            dst, src = torch.from_numpy(mapping[moved]), torch.from_numpy(moved)
            if init == "copy":
                assert torch.equal(emb[dst], emb[src]) and torch.equal(head[dst], head[src])
            else:
                assert not torch.allclose(emb[dst], emb[src])
                assert 0.3 < emb[dst].std().item() < 0.7  # N(0, initializer_range = 0.5)
        assert not grow_for_clones(model, maps, 3 * V, init, seed=0)  # already big enough: untouched


def _brute_bpb(model, ids_per_doc, start_id, texts):
    """Sum over documents of -log p(token | prefix), one full forward pass per document."""
    total = 0.0
    with torch.no_grad():
        for ids in ids_per_doc:
            seq = torch.tensor([[start_id, *ids]])
            logp = F.log_softmax(model(input_ids=seq).logits[0, :-1].float(), dim=-1)
            total -= logp[torch.arange(len(ids)), seq[0, 1:]].sum().item()
    return total / sum(len(t.encode()) for t in texts) / math.log(2)


def test_eval_bpb_clone_uses_the_saved_map(tmp_path, trained, byte_bpe_tokenizer):
    texts = make_texts(5, seed=90, max_words=12)
    src = tmp_path / "val.txt"
    src.write_text("\n".join(texts) + "\n")
    code, out, err = run_cli("eval", "bpb", "--model", str(trained / "final"), "--input", str(src), "--clone", "1",
                             "--json")
    assert code == 0, err
    result = json.loads(out)
    assert list(result["languages"]) == ["de_clone1"]
    model = AutoModelForCausalLM.from_pretrained(trained / "final")
    mapping = np.load(trained / "clone_maps.npy")[0]
    docs = [[int(mapping[i]) for i in byte_bpe_tokenizer.encode(t, add_special_tokens=False)] for t in texts]
    expected = _brute_bpb(model, docs, byte_bpe_tokenizer.bos_token_id, texts)
    unmapped = _brute_bpb(model, [byte_bpe_tokenizer.encode(t, add_special_tokens=False) for t in texts],
                          byte_bpe_tokenizer.bos_token_id, texts)
    # the clone's score, not the base's: far closer to the mapped brute force than the two are to each other
    assert abs(result["bits_per_byte"] - expected) * 20 < abs(unmapped - expected)
    # a checkpoint of the run finds the map in its run directory
    step = sorted((trained / "checkpoints").iterdir())[-1]
    code, _, err = run_cli("eval", "bpb", "--model", str(step), "--tokenizer", str(trained / "final"), "--input",
                           str(src), "--clone", "1")
    assert code == 0, err


def test_eval_similarity_clone_compares_a_text_with_its_clone(tmp_path, trained, byte_bpe_tokenizer):
    texts = make_texts(4, seed=91, max_words=8)
    src = tmp_path / "en.txt"
    src.write_text("\n".join(texts) + "\n")
    out = tmp_path / "sim"
    code, _, err = run_cli("eval", "similarity", "--model", str(trained / "final"), "--parallel", str(src),
                           "--clone", "1", "--out", str(out), "--no-gradients")
    assert code == 0, err
    result = json.loads((out / "similarity.json").read_text())
    assert result["cloned"] and result["clone"] == 1
    model = AutoModelForCausalLM.from_pretrained(trained / "final")
    mapping = np.load(trained / "clone_maps.npy")[0]
    bos = byte_bpe_tokenizer.bos_token_id
    for layer in result["layers"]:
        per_pair = []
        for t in texts:
            ids = byte_bpe_tokenizer.encode(t, add_special_tokens=False)
            with torch.no_grad():
                ha = model(input_ids=torch.tensor([[bos, *ids]]), output_hidden_states=True).hidden_states[layer]
                hb = model(input_ids=torch.tensor([[bos, *mapping[ids].tolist()]]),
                           output_hidden_states=True).hidden_states[layer]
            per_pair.append(F.cosine_similarity(ha[0, 1:], hb[0, 1:], dim=-1).mean().item())
        assert math.isclose(result["position"][layer], sum(per_pair) / len(per_pair), abs_tol=1e-5)


def _one_line(code, err, needle):
    assert code == 2 and err.startswith("langadapt: error:") and err.count("\n") == 1 and needle in err, err


def test_bad_inputs(tmp_path, parts, trained):
    root, model, store = parts
    src = tmp_path / "t.txt"
    src.write_text("\n".join(make_texts(3, seed=92)) + "\n")
    _one_line(*run_cli("eval", "bpb", "--model", str(model), "--input", str(src), "--clone", "1")[::2],
              "not trained with cloned languages")
    _one_line(*run_cli("eval", "bpb", "--model", str(trained / "final"), "--input", str(src), "--clone", "2")[::2],
              "has 1 clone(s)")
    _one_line(*run_cli("eval", "similarity", "--model", str(model), "--parallel", str(src), "--clone", "1",
                       "--out", str(tmp_path / "s"))[::2], "not trained with cloned languages")
    assert not (tmp_path / "s").exists()
    for extra, needle in ((["--data.clones.base", "fr"], "clone base 'fr' is not one of the languages"),
                          (["--data.clones.p-clone", "1.5"], "--data.clones.p-clone: expected"),
                          (["--data.clones.frac-clone", "-0.1"], "--data.clones.frac-clone: expected"),
                          (["--data.clones.init", "zeros"], "clones.init must be one of random, copy")):
        code, err, out = _train(root, model, store, "bad-run", extra=extra)
        _one_line(code, err, needle)
        assert not out.exists()


def test_resume_keeps_the_grown_model_and_the_same_map(parts, byte_bpe_tokenizer):
    """A run resumed from a grown checkpoint (no second resize) ends exactly like the uninterrupted run."""
    import shutil

    root, model, store = parts
    code, err, straight = _train(root, model, store, "run-straight", steps=6,
                                 extra=("--checkpoint.every", "2", "--checkpoint.keep-last", "10"))
    assert code == 0, err
    out = root / "run-resume"
    shutil.copytree(straight, out)
    shutil.rmtree(out / "final")
    shutil.rmtree(out / "checkpoints" / "step-6")  # as if killed after step 4's checkpoint
    code, err, _ = _train(root, model, store, "run-resume", steps=6,
                          extra=("--resume", "latest", "--checkpoint.every", "2", "--checkpoint.keep-last", "10"))
    assert code == 0, err
    assert np.array_equal(np.load(out / "final" / "clone_maps.npy"), np.load(straight / "final" / "clone_maps.npy"))
    resumed = AutoModelForCausalLM.from_pretrained(out / "final").get_input_embeddings().weight
    uninterrupted = AutoModelForCausalLM.from_pretrained(straight / "final").get_input_embeddings().weight
    assert resumed.shape[0] == 2 * len(byte_bpe_tokenizer)
    assert torch.allclose(resumed, uninterrupted, atol=1e-6)


def test_mlm_clone_validation_copy_init_equals_the_base(tmp_path):
    """MLM: with copied clone rows (input, output and bias), the clone's masked-token loss at step 0 is the base's."""
    import yaml

    from tests.helpers_eval import word_tokenizer

    tok = word_tokenizer()
    model = tiny_model_dir(tmp_path, tok, kind="bert")
    store = tiny_store(tmp_path, tok, n_docs=40, val_docs=6)
    cfg = {"model": str(model), "out_dir": str(tmp_path / "run"),
           "data": {"train": {"de": str(store)}, "block_size": 32,
                    "clones": {"num_clones": 1, "frac_clone": 1.0, "init": "copy"}},
           "train": {"objective": "mlm", "steps": 2, "micro_batch_size": 2, "global_batch_size": 2},
           "eval": {"batch_size": 2}, "log": {"every": 1}}
    (tmp_path / "mlm.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli("train", "--config", str(tmp_path / "mlm.yaml"))
    assert code == 0, err
    first = read_metrics(tmp_path / "run")[0]
    assert math.isclose(first["val_mlm_loss/de_clone1"], first["val_mlm_loss/de"], rel_tol=1e-5)
