"""The streamed transfer (safetensors in, shard by shard out) against the in-memory one (load the whole model,
``save_pretrained``): the same tensors, bit for bit, on tied and untied, causal and masked, sharded and unsharded
tiny models; unchanged shard files byte-identical to the source's; the index as the files say; the fallbacks."""

from __future__ import annotations

import filecmp
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from langadapt.io.safetensors_stream import DTYPES, find_checkpoint, write_checkpoint
from langadapt.transfer import transfer
from langadapt.transfer.streaming import StreamedSource, open_source
from tests.helpers_transfer import byte_level_bpe, source_and_target_texts, tiny_model

ROLES = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
         "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}
# (architecture, config overrides): untied and tied causal LMs, a head saved under another name (GPT-NeoX's
# embed_out), MLMs with a head bias, and RoBERTa, whose position rows move with the pad id (1 -> 0 here).
CASES = [("llama", {"tie_word_embeddings": False}), ("llama", {"tie_word_embeddings": True}), ("gpt_neox", {}),
         ("gpt2", {}), ("bert", {}), ("roberta", {})]
CASE_IDS = ["llama-untied", "llama-tied", "gpt_neox-untied", "gpt2-tied", "bert-tied", "roberta-tied"]
SHARD = "24KB"  # a few shards for these models (≈ 60 kB of weights)


@pytest.fixture
def loud():
    """Status lines on (the test session is quiet): the tests read what the transfer says about its path."""
    from langadapt.progress import is_quiet, set_quiet

    quiet = is_quiet()
    set_quiet(False)
    yield
    set_quiet(quiet)


@pytest.fixture(scope="module")
def tokenizers():
    tiny_model("llama", 10)  # imports the model code once, here, not inside the first test's timing
    source_texts, target_texts = source_and_target_texts()
    return (byte_level_bpe(source_texts, 420, specials=("<s>", "<pad>", "</s>", "<unk>", "<mask>"), roles=ROLES),
            byte_level_bpe(target_texts, 460, specials=("<pad>", "<s>", "</s>", "<unk>", "<mask>"), roles=ROLES))


def _source(tmp_path, tokenizers, arch, overrides, shard=None, dtype=torch.bfloat16):
    model = tiny_model(arch, len(tokenizers[0]) + 3, **overrides).to(dtype)  # padded rows, as in Pythia
    path = tmp_path / "source"
    model.save_pretrained(path, **({"max_shard_size": shard} if shard else {}))
    tokenizers[0].save_pretrained(path)
    tokenizers[1].save_pretrained(tmp_path / "target")
    return path


def _tensors(path) -> dict[str, tuple[str, torch.Tensor]]:
    """Every tensor of a model directory's safetensors files: name -> (file, tensor)."""
    out = {}
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                out[name] = (file.name, f.get_tensor(name))
    return out


def _json(path, name):
    data = json.loads((path / name).read_text())
    data.pop("transformers_version", None)
    return data


def _both(tmp_path, method="mean", **parameters):
    source, target = tmp_path / "source", tmp_path / "target"
    transfer(method, str(source), str(target), str(tmp_path / "memory"), in_memory=True, **parameters)
    transfer(method, str(source), str(target), str(tmp_path / "streamed"), **parameters)
    return tmp_path / "memory", tmp_path / "streamed"


def _assert_same_tensors(a, b):
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert ta[name][1].dtype == tb[name][1].dtype, name
        assert torch.equal(ta[name][1], tb[name][1]), name
    return ta, tb


@pytest.mark.parametrize("shard", [None, SHARD], ids=["single", "sharded"])
@pytest.mark.parametrize("arch,overrides", CASES, ids=CASE_IDS)
def test_streamed_output_equals_the_in_memory_output(arch, overrides, shard, tokenizers, tmp_path, capsys, loud):
    source = _source(tmp_path, tokenizers, arch, overrides, shard)
    memory, streamed = _both(tmp_path)
    assert "streaming source model" in capsys.readouterr().err
    _, out = _assert_same_tensors(memory, streamed)
    src = _tensors(source)
    changed = {name for name in src if not (src[name][1].shape == out[name][1].shape
                                            and torch.equal(src[name][1], out[name][1]))}
    assert changed  # the embeddings at least
    assert all(src[n][1].dtype == out[n][1].dtype == torch.bfloat16 for n in src)  # the source dtype throughout
    # Same shard files as the source; a file with no changed tensor is the source's file, byte for byte.
    assert {f for f, _ in src.values()} == {f for f, _ in out.values()}
    for file in {f for f, _ in src.values()}:
        if not any(src[n][0] == file for n in changed):
            assert filecmp.cmp(source / file, streamed / file, shallow=False), file
    if shard:
        index = json.loads((streamed / "model.safetensors.index.json").read_text())
        assert index["weight_map"] == {name: file for name, (file, _) in out.items()}
        assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for _, t in out.values())
        assert len({f for f, _ in out.values()}) > 1
    else:
        assert not (streamed / "model.safetensors.index.json").exists()
    assert _json(memory, "config.json") == _json(streamed, "config.json")
    assert (memory / "generation_config.json").exists() == (streamed / "generation_config.json").exists()
    if (memory / "generation_config.json").exists():
        assert _json(memory, "generation_config.json") == _json(streamed, "generation_config.json")
    # Loads with plain from_pretrained, and computes what the in-memory output computes.
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    cls = AutoModelForMaskedLM if arch in ("bert", "roberta") else AutoModelForCausalLM
    ids = torch.tensor([[1, 5, 9, 17, 40, 3]])
    with torch.no_grad():
        assert torch.equal(cls.from_pretrained(memory).eval()(input_ids=ids).logits,
                           cls.from_pretrained(streamed).eval()(input_ids=ids).logits)


def test_roberta_position_rows_move_in_the_streamed_output(tokenizers, tmp_path):
    """The pad id moves from 1 to 0: the position matrix is rewritten (by surgery), not copied."""
    source = _source(tmp_path, tokenizers, "roberta", {}, SHARD)
    _, streamed = _both(tmp_path)
    name = "roberta.embeddings.position_embeddings.weight"
    before, after = _tensors(source)[name][1], _tensors(streamed)[name][1]
    assert torch.equal(after[1:-1], before[2:]) and not torch.equal(after, before)


def test_only_the_transferred_modules_are_read(tokenizers, tmp_path):
    _source(tmp_path, tokenizers, "llama", {"tie_word_embeddings": False}, SHARD)
    source = open_source(str(tmp_path / "source"))
    assert isinstance(source, StreamedSource)
    model = source.model
    real = {name for name, p in model.named_parameters() if p.device.type != "meta"}
    assert real == {"model.embed_tokens.weight", "lm_head.weight"}
    assert model.model.layers[0].mlp.up_proj.weight.is_meta and model.model.norm.weight.is_meta


def test_clp_with_a_helper_streams_the_same_output(tokenizers, tmp_path):
    _source(tmp_path, tokenizers, "llama", {"tie_word_embeddings": False}, SHARD)
    helper = tiny_model("gpt2", len(tokenizers[1]), hidden=16, seed=7)
    helper.save_pretrained(tmp_path / "helper")
    tokenizers[1].save_pretrained(tmp_path / "helper")
    memory, streamed = _both(tmp_path, "clp", helper_model=str(tmp_path / "helper"))
    _assert_same_tensors(memory, streamed)


def test_calibrate_loads_the_whole_model_and_says_so(tokenizers, tmp_path, capsys, loud):
    # fp32: --calibrate's own check (head logits recomputed in fp32) does not hold for bf16 logits.
    _source(tmp_path, tokenizers, "llama", {"tie_word_embeddings": False}, SHARD, dtype=torch.float32)
    text = tmp_path / "text.txt"
    text.write_text("\n".join(source_and_target_texts()[1][:200]), encoding="utf-8")
    memory, streamed = _both(tmp_path, "random", calibrate=str(text), calibrate_tokens=256)
    assert "in memory: --calibrate" in capsys.readouterr().err
    ta, _ = _assert_same_tensors(memory, streamed)
    transfer("random", str(tmp_path / "source"), str(tmp_path / "target"), str(tmp_path / "raw"))
    raw = _tensors(tmp_path / "raw")
    beta = json.loads((streamed / "transfer_report.json").read_text())["calibration"]["logit_scale"]
    assert beta != 1.0  # the scale was fitted and folded into the head, not dropped
    assert torch.allclose(ta["lm_head.weight"][1].float(), raw["lm_head.weight"][1].float() * beta, rtol=1e-5)


def test_torch_bin_checkpoint_falls_back_and_says_so(tokenizers, tmp_path, capsys, loud):
    model = tiny_model("llama", len(tokenizers[0]), tie_word_embeddings=False)
    bin_dir = tmp_path / "source"
    bin_dir.mkdir()
    model.config.save_pretrained(bin_dir)
    torch.save(model.state_dict(), bin_dir / "pytorch_model.bin")
    tokenizers[0].save_pretrained(bin_dir)
    tokenizers[1].save_pretrained(tmp_path / "target")
    memory, streamed = _both(tmp_path)
    assert "not safetensors" in capsys.readouterr().err
    _assert_same_tensors(memory, streamed)


def test_checkpoint_with_tensors_the_architecture_lacks_falls_back(tokenizers, tmp_path, capsys, loud):
    source = _source(tmp_path, tokenizers, "llama", {"tie_word_embeddings": False})
    tensors = {name: t for name, (_, t) in _tensors(source).items()}
    save_file({**tensors, "model.extra.weight": torch.ones(3)}, str(source / "model.safetensors"),
              metadata={"format": "pt"})
    memory, streamed = _both(tmp_path)
    assert "not those save_pretrained writes" in capsys.readouterr().err
    out, _ = _assert_same_tensors(memory, streamed)
    assert "model.extra.weight" not in out


# ---- io/safetensors_stream on its own ------------------------------------------------------------------

@pytest.mark.parametrize("kernel_copy", [True, False], ids=["copy_file_range", "read-write"])
def test_write_checkpoint_replaces_in_the_source_dtype_and_copies_the_rest(kernel_copy, tmp_path, monkeypatch):
    if not kernel_copy:  # the path for systems without copy_file_range
        def unsupported(*args):
            raise OSError("copy_file_range: not supported")

        monkeypatch.setattr("os.copy_file_range", unsupported, raising=False)
        monkeypatch.setattr("langadapt.io.safetensors_stream.COPY_CHUNK", 5)  # many small pieces
    torch.manual_seed(0)
    tensors = {"a": torch.randn(4, 3).to(torch.bfloat16), "b": torch.arange(7), "c": torch.tensor(2.5),
               "d": torch.zeros(0, 5), "e": torch.rand(6) > 0.5, "f": torch.randn(2, 2, dtype=torch.float16)}
    (tmp_path / "src").mkdir()
    save_file(tensors, str(tmp_path / "src" / "model.safetensors"), metadata={"format": "pt"})
    checkpoint = find_checkpoint(tmp_path / "src")
    assert {n: DTYPES[e.dtype] for n, e in checkpoint.entries.items()} == {n: t.dtype for n, t in tensors.items()}
    new_a = torch.randn(9, 3)  # more rows, fp32: stored as bf16 like the source
    (tmp_path / "out").mkdir()
    done = write_checkpoint(checkpoint, tmp_path / "out", {"a": new_a})
    assert done == {"copied": [], "rewritten": ["model.safetensors"]}
    expected = {**tensors, "a": new_a.to(torch.bfloat16)}
    with safe_open(str(tmp_path / "out" / "model.safetensors"), framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
        got = {name: f.get_tensor(name) for name in f.keys()}
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].dtype == expected[name].dtype and torch.equal(got[name], expected[name]), name
    header_length = int.from_bytes((tmp_path / "out" / "model.safetensors").read_bytes()[:8], "little")
    assert header_length % 8 == 0


def test_write_checkpoint_rejects_names_it_does_not_have(tmp_path):
    (tmp_path / "src").mkdir()
    save_file({"a": torch.ones(2)}, str(tmp_path / "src" / "model.safetensors"))
    with pytest.raises(ValueError, match="not in the checkpoint"):
        write_checkpoint(find_checkpoint(tmp_path / "src"), tmp_path, {"b": torch.ones(2)})


def test_no_safetensors_is_no_checkpoint(tmp_path):
    assert find_checkpoint(tmp_path) is None


def test_a_hub_id_is_streamed_from_its_snapshot(tokenizers, tmp_path, monkeypatch):
    """A Hub id: its safetensors and JSON files are fetched (or found in the cache) with snapshot_download."""
    import huggingface_hub

    source = _source(tmp_path, tokenizers, "gpt2", {}, SHARD)
    calls = []

    def snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append((repo_id, allow_patterns, kwargs))
        return str(source)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr("langadapt.transfer.streaming.looks_local", lambda name: False)
    monkeypatch.setattr("langadapt.transfer.streaming.resolve", lambda name, role: (name, {"local_files_only": True}))
    opened = open_source("some-org/some-model")
    assert isinstance(opened, StreamedSource) and opened.checkpoint.root == source
    assert calls == [("some-org/some-model", ["*.json", "*.safetensors"], {"local_files_only": True})]


def test_the_source_rows_are_freed_before_the_method_runs(tokenizers, tmp_path, monkeypatch):
    """transfer() owns its model: while the method runs the model holds no rows of the matrices (their fp32
    copies are the method's input), so a big model's peak holds them once; transfer_model (the caller's model)
    keeps them until the swap."""
    import langadapt.transfer.run as run_module
    from langadapt.transfer import transfer_model

    _source(tmp_path, tokenizers, "llama", {"tie_word_embeddings": False}, SHARD)
    seen = []
    swap = run_module.swap_matrices

    def recording_swap(model, names, matrices, tied=None):
        seen.append((model.get_input_embeddings().weight.shape[0], model.get_output_embeddings().weight.shape[0]))
        return swap(model, names, matrices, tied)

    monkeypatch.setattr(run_module, "swap_matrices", recording_swap)
    for in_memory in (False, True):
        transfer("mean", str(tmp_path / "source"), str(tmp_path / "target"), str(tmp_path / f"out{in_memory}"),
                 in_memory=in_memory)
    assert seen == [(0, 0), (0, 0)]
    model = tiny_model("llama", len(tokenizers[0]) + 3, tie_word_embeddings=False)
    transfer_model(model, tokenizers[0], tokenizers[1], "mean")
    assert seen[-1] == (len(tokenizers[0]) + 3,) * 2


def _copy_threads():
    import threading

    return [t for t in threading.enumerate() if t.name == "langadapt-copy"]


def test_the_unchanged_bytes_are_copied_once_in_the_background(tokenizers, tmp_path, monkeypatch):
    """The body is copied by the background thread, planned for the target vocabulary before the method runs;
    save() writes only the new matrices into it (no second copy), and the output is the in-memory one."""
    import langadapt.io.safetensors_stream as stream
    import langadapt.transfer.streaming as streaming_module

    _source(tmp_path, tokenizers, "llama", {"tie_word_embeddings": False}, SHARD)
    calls, copy = [], stream.copy_unchanged

    def counting_copy(checkpoint, plan, out, stop=None):
        import threading

        calls.append((threading.current_thread().name, dict(plan.replaced)))
        return copy(checkpoint, plan, out, stop)

    monkeypatch.setattr(streaming_module, "copy_unchanged", counting_copy)
    monkeypatch.setattr(stream, "copy_unchanged", counting_copy)  # write_checkpoint's own (a redo) would count too
    memory, streamed = _both(tmp_path)
    d = tiny_model("llama", 10).config.hidden_size
    assert calls == [("langadapt-copy", {"model.embed_tokens.weight": (len(tokenizers[1]), d),
                                          "lm_head.weight": (len(tokenizers[1]), d)})]
    _assert_same_tensors(memory, streamed)
    assert not _copy_threads()


def test_tensors_other_than_the_planned_ones_are_written_from_scratch(tokenizers, tmp_path, monkeypatch):
    """A plan that does not match what the transfer wrote (here: a wrong vocabulary size) is redone in save()."""
    from langadapt.transfer.streaming import StreamedSource

    _source(tmp_path, tokenizers, "llama", {"tie_word_embeddings": False}, SHARD)
    prefetch = StreamedSource.prefetch
    monkeypatch.setattr(StreamedSource, "prefetch", lambda self, out, vocab_size: prefetch(self, out, vocab_size + 4))
    memory, streamed = _both(tmp_path)
    _assert_same_tensors(memory, streamed)


def test_an_error_during_the_transfer_stops_the_copy_and_leaves_nothing(tokenizers, tmp_path, monkeypatch):
    import langadapt.transfer.run as run_module

    _source(tmp_path, tokenizers, "llama", {"tie_word_embeddings": False}, SHARD)

    def failing(*args, **kwargs):
        raise RuntimeError("the method failed")

    monkeypatch.setattr(run_module, "fill_fallback", failing)
    with pytest.raises(RuntimeError, match="the method failed"):
        transfer("mean", str(tmp_path / "source"), str(tmp_path / "target"), str(tmp_path / "out"))
    assert not _copy_threads()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source", "target"]  # no output, no temp sibling


def test_plan_then_copy_then_write_equals_one_write(tmp_path):
    """write_checkpoint in its two steps, on a sharded checkpoint with replaced tensors first, in the middle
    and last in their files (holes at every position), and a file with none."""
    torch.manual_seed(1)
    shards = {"s1.safetensors": {"a": torch.randn(3, 4), "b": torch.randn(5), "c": torch.randn(2, 2)},
              "s2.safetensors": {"d": torch.randn(7)}, "s3.safetensors": {"e": torch.randn(4), "f": torch.randn(6)}}
    root = tmp_path / "src"
    root.mkdir()
    for file, tensors in shards.items():
        save_file(tensors, str(root / file), metadata={"format": "pt"})
    index = {"metadata": {"total_size": 0}, "weight_map": {n: f for f, ts in shards.items() for n in ts}}
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    checkpoint = find_checkpoint(root)
    replaced = {"a": torch.randn(6, 4), "c": torch.randn(1, 2), "f": torch.randn(9)}
    (tmp_path / "out").mkdir()
    done = write_checkpoint(checkpoint, tmp_path / "out", replaced)
    assert done == {"copied": ["s2.safetensors"], "rewritten": ["s1.safetensors", "s3.safetensors"]}
    assert filecmp.cmp(root / "s2.safetensors", tmp_path / "out" / "s2.safetensors", shallow=False)
    got = _tensors(tmp_path / "out")
    expected = {n: t for ts in shards.values() for n, t in ts.items()} | replaced
    assert got.keys() == expected.keys() and all(torch.equal(got[n][1], expected[n]) for n in expected)
    # What safetensors itself writes for the rewritten files, byte for byte.
    from safetensors.torch import save as save_bytes

    for file in ("s1.safetensors", "s3.safetensors"):
        ours = (tmp_path / "out" / file).read_bytes()
        theirs = save_bytes({n: expected[n] for n in shards[file]}, metadata={"format": "pt"})
        assert ours == theirs, file
