"""eval similarity against direct per-pair computations (no padding, no batching, brute-force matching)."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import make_texts, run_cli
from tests.helpers_eval import save_model, tiny_causal, tiny_masked, word_tokenizer


def _hidden(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states


def _brute_force_matching(a, b):
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    if sim.shape[0] > sim.shape[1]:
        sim = sim.T
    n, m = sim.shape
    return max(sum(sim[i, j].item() for i, j in zip(range(n), perm)) for perm in itertools.permutations(range(m), n)) / n


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer()


def test_real_pairs_match_direct_computation(tok):
    from langadapt.eval.similarity import compare_parallel

    model = tiny_causal(tok, seed=1)
    a = make_texts(5, seed=30, min_words=2, max_words=5)
    b = make_texts(5, seed=31, min_words=3, max_words=6)
    result = compare_parallel(model, tok, a, b, batch_size=2, gradients=False, matching="per_layer")
    assert not result["cloned"] and result["position"] is None and result["matching_method"] == "hungarian"
    start = tok.eos_token_id if tok.eos_token_id is not None else None
    prefix = [start] if start is not None else []
    layers = len(result["layers"])
    pools, matches = [[] for _ in range(layers)], [[] for _ in range(layers)]
    pooled_b = [[] for _ in range(layers)]
    for x, y in zip(a, b):
        ix, iy = tok.encode(x, add_special_tokens=False), tok.encode(y, add_special_tokens=False)
        hx, hy = _hidden(model, prefix + ix), _hidden(model, prefix + iy)
        for layer in range(layers):
            cx, cy = hx[layer][0, len(prefix):], hy[layer][0, len(prefix):]
            pools[layer].append(cx.mean(0))
            pooled_b[layer].append(cy.mean(0))
            matches[layer].append(_brute_force_matching(cx, cy))
    for layer in range(layers):
        pa, pb = torch.stack(pools[layer]), torch.stack(pooled_b[layer])
        assert math.isclose(result["mean_pool"][layer], F.cosine_similarity(pa, pb).mean().item(), abs_tol=1e-5)
        mismatched = F.cosine_similarity(pa, pb.roll(-1, 0)).mean().item()
        assert math.isclose(result["mean_pool_mismatched"][layer], mismatched, abs_tol=1e-5)
        assert math.isclose(result["matching"][layer], sum(matches[layer]) / len(a), abs_tol=1e-5)


def test_identical_sides_are_fully_similar_and_gradients_match_direct(tok, byte_bpe_tokenizer):
    from langadapt.eval.similarity import compare_parallel

    model = tiny_causal(byte_bpe_tokenizer, seed=2)
    a = make_texts(6, seed=40, max_words=8)
    b = make_texts(6, seed=41, max_words=8)
    same = compare_parallel(model, byte_bpe_tokenizer, a, a, batch_size=4)
    assert same["cloned"]
    for key in ("position", "mean_pool", "matching"):
        assert all(abs(v - 1) < 1e-5 for v in same[key])
    assert all(v is None or abs(v - 1) < 1e-5 for v in same["gradients"].values())
    # pooled gradients of real pairs: direct, one sentence at a time, summed token NLL
    result = compare_parallel(model, byte_bpe_tokenizer, a, b, batch_size=4, gradient_mode="pooled")

    def direct(texts):
        model.zero_grad()
        for t in texts:
            ids = torch.tensor([[byte_bpe_tokenizer.bos_token_id, *byte_bpe_tokenizer.encode(t, add_special_tokens=False)]])
            logits = model(input_ids=ids).logits
            F.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum").backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad()
        return grads

    ga, gb = direct(a), direct(b)
    for name, value in result["gradients"].items():
        expected = F.cosine_similarity(ga[name].flatten(), gb[name].flatten(), dim=0).item()
        assert math.isclose(value, expected, abs_tol=1e-4), name
    flat_a = torch.cat([g.flatten() for g in ga.values()])
    flat_b = torch.cat([g.flatten() for g in gb.values()])
    assert math.isclose(result["gradient_overall"], F.cosine_similarity(flat_a, flat_b, dim=0).item(), abs_tol=1e-4)


def test_cloned_pairs_position_by_position(tok):
    """A clone: the same sentence with every word mapped to another word (same token count)."""
    from langadapt.eval.similarity import compare_parallel

    model = tiny_masked(tok, seed=3)
    vocab = sorted({w for t in make_texts(50, seed=0) for w in t.rstrip(".").split()})
    mapping = dict(zip(vocab, vocab[1:] + vocab[:1]))
    a = make_texts(4, seed=50, max_words=7)
    b = [" ".join(mapping[w] for w in t.rstrip(".").split()) + "." for t in a]
    result = compare_parallel(model, tok, a, b, batch_size=3)
    assert result["cloned"] and result["scoring"] == "mlm"
    for layer in result["layers"]:
        expected = []
        for x, y in zip(a, b):
            hx = _hidden(model, tok.encode(x))[layer][0, 1:-1]
            hy = _hidden(model, tok.encode(y))[layer][0, 1:-1]
            expected.append(F.cosine_similarity(hx, hy, dim=-1).mean().item())
        assert math.isclose(result["position"][layer], sum(expected) / len(expected), abs_tol=1e-5)
    assert set(result["gradients"]) == {n for n, p in model.named_parameters()}


def _one_line_error(code, err):
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("langadapt: error:"), err


def test_cli_outputs_and_bad_inputs(tmp_path, byte_bpe_tokenizer):
    from PIL import Image

    model_dir = save_model(tiny_causal(byte_bpe_tokenizer), byte_bpe_tokenizer, tmp_path / "model")
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(make_texts(5, seed=60)) + "\n")
    b.write_text("\n".join(make_texts(5, seed=61)) + "\n")
    code, out, err = run_cli("eval", "similarity", "--model", str(model_dir), "--parallel", str(a), str(b),
                             "--out", str(tmp_path / "sim"))
    assert code == 0, err
    result = json.loads((tmp_path / "sim" / "similarity.json").read_text())
    assert result["pairs"] == 5 and len(result["mean_pool"]) == 3 and result["gradient_overall"] is not None
    for png in ("hidden_similarity.png", "gradient_similarity.png"):
        with Image.open(tmp_path / "sim" / png) as img:
            img.verify()
    short = tmp_path / "short.txt"
    short.write_text("\n".join(make_texts(4, seed=62)) + "\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    no_tok = save_model(tiny_causal(byte_bpe_tokenizer), None, tmp_path / "no-tok")
    cases = [
        (["--model", str(model_dir), "--parallel", f"{a},{short}"], "line counts"),
        (["--model", str(model_dir), "--parallel", str(a)], "two files"),
        (["--model", str(model_dir), "--parallel", f"{empty},{empty}"], "empty"),
        (["--model", str(no_tok), "--parallel", f"{a},{b}"], "tokenizer"),
        (["--model", str(model_dir), "--parallel", f"{a},{b}", "--pairing", "clone"], "clone"),
    ]
    for argv, needle in cases:
        code, _, err = run_cli("eval", "similarity", *argv, "--out", str(tmp_path / "x"))
        _one_line_error(code, err)
        assert needle in err


def _brute_force_layer_mean_matching(hx, hy):
    """Every one-to-one assignment of the shorter side, scored on the layer-averaged cosine; the best one's
    per-layer mean cosine (xling-imbalance's max_matching)."""
    sims = [F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T for x, y in zip(hx, hy)]
    mean = sum(sims) / len(sims)
    flip = mean.shape[0] > mean.shape[1]
    if flip:
        mean, sims = mean.T, [s.T for s in sims]
    n, m = mean.shape
    best = max(itertools.permutations(range(m), n), key=lambda perm: sum(mean[i, j].item() for i, j in enumerate(perm)))
    return [sum(s[i, j].item() for i, j in enumerate(best)) / n for s in sims]


def test_layer_mean_matching_is_the_reference_definition(tok):
    from langadapt.eval.similarity import compare_parallel

    model = tiny_causal(tok, seed=5)
    a = make_texts(4, seed=70, min_words=2, max_words=5)
    b = make_texts(4, seed=71, min_words=3, max_words=6)
    result = compare_parallel(model, tok, a, b, batch_size=3, gradients=False)
    assert result["matching_on"] == "layer_mean"
    per_layer = compare_parallel(model, tok, a, b, batch_size=3, gradients=False, matching="per_layer")
    expected = [[] for _ in result["layers"]]
    for x, y in zip(a, b):
        k = len(_prefix(tok))
        hx = [h[0, k:] for h in _hidden(model, _prefix(tok) + tok.encode(x, add_special_tokens=False))]
        hy = [h[0, k:] for h in _hidden(model, _prefix(tok) + tok.encode(y, add_special_tokens=False))]
        for layer, value in enumerate(_brute_force_layer_mean_matching(hx, hy)):
            expected[layer].append(value)
    for layer in result["layers"]:
        assert math.isclose(result["matching"][layer], sum(expected[layer]) / len(a), abs_tol=1e-5)
        # one matching for all layers can never beat each layer's own best matching
        assert result["matching"][layer] <= per_layer["matching"][layer] + 1e-6


def _prefix(tok):
    from langadapt.eval.bpb import causal_start_id

    start = causal_start_id(tok)
    return [] if start is None else [start]


@pytest.mark.parametrize("masked", [False, True])
def test_per_pair_gradients_are_the_reference_definition(tok, masked):
    """Batch-1 gradients of each side, cosine per tensor and overall, averaged over pairs: a loop over pairs."""
    from langadapt.eval.similarity import compare_parallel, encode_side, side_loss

    model = (tiny_masked if masked else tiny_causal)(tok, seed=6)
    a = make_texts(4, seed=80, min_words=4, max_words=7)
    b = make_texts(4, seed=81, min_words=4, max_words=7)
    result = compare_parallel(model, tok, a, b, batch_size=2, seed=11)
    assert result["gradient_mode"] == "per_pair"
    sums, overall = {}, []
    for i, (x, y) in enumerate(zip(a, b)):
        grads = []
        for text in (x, y):
            enc = encode_side(tok, [text], masked=masked, max_length=None)
            model.zero_grad()
            loss = side_loss(model, enc, masked=masked, mask_id=tok.mask_token_id,
                             generator=torch.Generator().manual_seed(11 + i))
            (loss / 7.0).backward()  # any positive scale: the cosine must not care
            grads.append({n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                          for n, p in model.named_parameters()})
        for name in grads[0]:
            ga, gb = grads[0][name].flatten().double(), grads[1][name].flatten().double()
            if ga.norm() > 0 and gb.norm() > 0:
                sums.setdefault(name, []).append((ga @ gb / (ga.norm() * gb.norm())).item())
        fa = torch.cat([g.flatten() for g in grads[0].values()]).double()
        fb = torch.cat([g.flatten() for g in grads[1].values()]).double()
        overall.append((fa @ fb / (fa.norm() * fb.norm())).item())
    model.zero_grad()
    for name, value in result["gradients"].items():
        if name.endswith("key.bias"):  # softmax ignores a shift: its true gradient is 0, what is left is rounding
            continue
        if name in sums:
            assert math.isclose(value, sum(sums[name]) / len(sums[name]), abs_tol=1e-4), name
        else:
            assert value is None, name
    assert math.isclose(result["gradient_overall"], sum(overall) / len(overall), abs_tol=1e-4)
