"""The source model of a transfer, streamed: only the matrices a transfer touches are read; the rest of the
checkpoint is copied through to the output without ever becoming a model.

``open_source`` builds the model's architecture on the meta device (no memory), reads with
``safetensors.safe_open`` only the parameters of the modules ``surgery.py`` changes -- the input embeddings,
the output embeddings (weight and bias: an untied head, an MLM head bias) and a RoBERTa-style position
embedding -- and puts them in. ``run.transfer_with`` and ``surgery.py`` then work on that model unchanged (they
touch nothing else), and ``StreamedSource.save`` writes every materialized tensor in place of the source's and
copies every other tensor byte for byte (``io/safetensors_stream.py``): the same tensors, names, dtypes and shard
files as the source, and the config and generation config as ``save_pretrained`` writes them. The copying does not
wait for the transfer: ``StreamedSource.prefetch`` starts it in a background thread as soon as the output's
vocabulary size is known, so the method's compute runs while the kernel copies the body (``save`` then writes only
the new matrices into the places left for them).

The whole model is loaded instead (``InMemorySource``: ``load_model`` + ``save_pretrained``), and a line says
why, when the streamed path cannot give the same output: ``--in-memory``; ``--calibrate``, which needs forward
passes through the body; a checkpoint that is not safetensors; and one whose tensors are not exactly those
``save_pretrained`` would write for its architecture (old or converted layouts, extra or missing tensors).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from langadapt.io.models import is_masked_lm_config, load_config, load_model, looks_local, resolve
from langadapt.io.safetensors_stream import (Checkpoint, copy_unchanged, find_checkpoint,
                                             matching_keys, persistent_tensors, plan_checkpoint, read_tensors,
                                             write_checkpoint)
from langadapt.progress import info
from langadapt.transfer.surgery import _padding_position_embeddings

# What a Hub snapshot needs for the streamed path (the tokenizer is loaded by transformers, separately).
HUB_PATTERNS = ["*.json", "*.safetensors"]


@dataclass
class StreamOptions:
    """How the source model is read."""

    in_memory: bool = False
    """Load the whole source model into memory and save it with save_pretrained, instead of reading only the
    matrices the transfer changes from its safetensors files and copying the other tensors through (the default;
    the whole model is loaded anyway for --calibrate and for checkpoints that are not safetensors)."""


class InMemorySource:
    """The whole model in memory, saved with ``save_pretrained``."""

    streamed = False

    def __init__(self, name: str):
        self.model = load_model(name)

    def save(self, out: Path) -> None:
        self.model.save_pretrained(out)

    def prefetch(self, out: Path, vocab_size: int):
        return contextlib.nullcontext()


class StreamedSource:
    """A model on the meta device whose transferred modules are real, and the checkpoint it came from.
    ``keys``: every parameter/buffer name of the model (tied ones under each name) -> its checkpoint name."""

    streamed = True

    def __init__(self, model, checkpoint: Checkpoint, keys: dict[str, str]):
        self.model, self.checkpoint, self.keys = model, checkpoint, keys
        self._copy = None  # (out, plan, thread, errors) of a prefetch

    def planned_shapes(self, vocab_size: int) -> dict[str, tuple[int, ...]]:
        """Checkpoint name -> shape of every tensor the transfer will write, for a new vocabulary of
        ``vocab_size``: those read in, the token embeddings' and head's with ``vocab_size`` rows."""
        vocab = {id(p) for m in (self.model.get_input_embeddings(), self.model.get_output_embeddings())
                 if m is not None for p in m.parameters(recurse=False)}
        shapes = {}
        for name, tensor in persistent_tensors(self.model).items():
            if tensor.device.type != "meta" and name in self.keys:
                shape = tuple(tensor.shape)
                shapes[self.keys[name]] = (vocab_size, *shape[1:]) if id(tensor) in vocab else shape
        return shapes

    @contextlib.contextmanager
    def prefetch(self, out: Path, vocab_size: int):
        """While the block runs, a background thread copies into ``out`` every byte of the output that does not
        depend on the transfer (``copy_unchanged``), so the compute hides behind the copy; ``save`` waits for it
        (and redoes it if the tensors written are not the planned ones). An error in the block stops the copy
        before it goes on (``out`` is about to be removed)."""
        plan = plan_checkpoint(self.checkpoint, self.planned_shapes(vocab_size))
        stop, errors = threading.Event(), []

        def work():
            try:
                copy_unchanged(self.checkpoint, plan, out, stop)
            except BaseException as error:  # handed to save()
                errors.append(error)

        thread = threading.Thread(target=work, name="langadapt-copy", daemon=True)
        thread.start()
        self._copy = (Path(out), plan, thread, errors)
        try:
            yield
        except BaseException:
            stop.set()
            thread.join()
            self._copy = None
            raise

    def replaced(self) -> dict[str, torch.Tensor]:
        """Checkpoint name -> tensor, for every tensor of the model that is no longer on the meta device."""
        out: dict[str, torch.Tensor] = {}
        for name, tensor in persistent_tensors(self.model).items():
            key = self.keys.get(name)
            if tensor.device.type == "meta" or key is None:
                continue
            if key in out and not torch.equal(out[key], tensor.detach()):
                raise RuntimeError(f"streamed transfer: {name} is no longer tied to the tensor saved as {key}")
            out.setdefault(key, tensor.detach())
        return out

    def check_untouched(self) -> None:
        """Every tensor left on the meta device is copied from the source: its shape must still be the source's."""
        for name, tensor in persistent_tensors(self.model).items():
            key = self.keys.get(name)
            if tensor.device.type == "meta" and key is not None \
                    and tuple(tensor.shape) != self.checkpoint.entries[key].shape:
                raise RuntimeError(f"streamed transfer: {name} changed shape but was never read (use --in-memory)")

    def save(self, out: Path) -> None:
        self.check_untouched()
        replaced = self.replaced()
        # What save_pretrained writes besides the weights: the dtype and class in the config, the generation config.
        model = self.model
        model.config.dtype = str(model.get_input_embeddings().weight.dtype).split(".")[1]
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(out)
        if model.can_generate():
            model.generation_config.save_pretrained(out)
        copied = None
        if self._copy is not None and self._copy[0] == Path(out):
            _, copied, thread, errors = self._copy
            thread.join()
            self._copy = None
            if errors:
                raise errors[0]
        done = write_checkpoint(self.checkpoint, out, replaced, copied=copied)
        info(f"streamed: {len(replaced)} tensors written, {len(done['copied'])} of {len(self.checkpoint.files)} "
             "weight files copied unchanged")


def _snapshot(name: str) -> Path | None:
    """A local directory with the safetensors and JSON files of ``name`` (a Hub id: from the Hub or its cache)."""
    if looks_local(name):
        return Path(resolve(name, "model")[0])
    try:
        from huggingface_hub import snapshot_download

        _, extra = resolve(name, "model")
        return Path(snapshot_download(name, allow_patterns=HUB_PATTERNS, **extra))
    except Exception:  # no snapshot of it: the in-memory path loads it (and reports what is wrong)
        return None


def _materialize(model, checkpoint: Checkpoint, keys: dict[str, str], modules) -> None:
    """Read the parameters of ``modules`` from the checkpoint and put them into ``model`` everywhere they are
    used (tied parameters stay one tensor)."""
    key_of = {id(model.get_parameter_or_buffer(name)): key for name, key in keys.items()}
    wanted = {id(param): param for module in modules for param in module.parameters(recurse=False)}
    tensors = read_tensors(checkpoint, sorted({key_of[i] for i in wanted}))
    real = {i: torch.nn.Parameter(tensors[key_of[i]], requires_grad=wanted[i].requires_grad) for i in wanted}
    for module in model.modules():
        for attr, param in list(module.named_parameters(recurse=False)):
            if id(param) in real:
                setattr(module, attr, real[id(param)])


def streamed_model(root: Path, checkpoint: Checkpoint):
    """(meta-device model of ``root`` with its transferred modules read in, its ``checkpoint_keys``), or a string
    that says why it cannot be streamed."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, GenerationConfig

    config = load_config(str(root))
    cls = AutoModelForMaskedLM if is_masked_lm_config(config) else AutoModelForCausalLM
    with torch.device("meta"):
        model = cls.from_config(config)
    keys = matching_keys(model, checkpoint)
    if isinstance(keys, str):
        return keys
    modules = [model.get_input_embeddings(), model.get_output_embeddings()]
    positions = _padding_position_embeddings(model)
    if positions is not None:
        modules.append(positions.position_embeddings)
    modules = [m for m in modules if m is not None]
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    dtypes = {checkpoint.entries[keys[names[id(p)]]].dtype for m in modules for p in m.parameters(recurse=False)}
    if len(dtypes) != 1:
        return "its embedding matrices are stored in different dtypes"
    _materialize(model, checkpoint, keys, modules)
    model.eval()
    model.name_or_path = str(root)
    if model.can_generate() and (root / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(root))
    return model, keys


def open_source(name: str, options: StreamOptions | None = None, *, forward: bool = False):
    """The source model of a transfer: streamed when it can be, else loaded whole (a line says why).
    ``forward``: the transfer runs the model (``--calibrate``), which needs all of it."""
    options = options or StreamOptions()
    reason = None
    if options.in_memory:
        reason = "--in-memory"
    elif forward:
        reason = "--calibrate runs the model on text, which needs all of it"
    else:
        root = _snapshot(str(name))
        checkpoint = find_checkpoint(root) if root is not None else None
        if checkpoint is None:
            reason = "its weights are not safetensors files (convert them to stream it)"
        else:
            built = streamed_model(root, checkpoint)
            if isinstance(built, str):
                reason = built
            else:
                info(f"streaming source model {name}: reading only the matrices the transfer changes")
                return StreamedSource(built[0], checkpoint, built[1])
    info(f"loading the whole source model {name} in memory: {reason}")
    return InMemorySource(str(name))
