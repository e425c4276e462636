"""Load models and tokenizers from local directories or Hub ids, with one-line errors for everything a user
can get wrong: a mistyped path, a Hub id while the Hub is unreachable, a directory of another kind, a
corrupted or truncated ``config.json``, weights or tokenizer file, a tokenizer that does not fit the model.

A name is a *local path* when it exists, is absolute or relative (``./x``, ``~/x``), has more than one
``/``, or its parent folder exists; such a name is never looked up on the Hub. Anything else is a Hub id:
when the Hub cannot be reached (checked once, with a short timeout) it is loaded from the local Hub cache
only, so a typo fails in seconds instead of after a minute of retries.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import struct
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from langadapt.errors import InputError

HUB_PROBE_TIMEOUT_S = 3.0  # one TCP connect; a reachable Hub answers far sooner


def looks_local(name: str) -> bool:
    """True when ``name`` can only mean a local path (see the module docstring)."""
    path = Path(name).expanduser()
    if path.exists() or path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        return True
    return "/" in name and path.parent.is_dir() and str(path.parent) not in ("", ".")


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """One TCP connect to the Hub endpoint (``HF_ENDPOINT``); False when offline mode is set."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("TRANSFORMERS_OFFLINE", "") not in ("", "0"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=HUB_PROBE_TIMEOUT_S).close()
        return True
    except OSError:
        return False


def what_is(path: Path) -> str | None:
    """A guess at what kind of directory ``path`` is, for messages ('a token store', ...)."""
    if not path.is_dir():
        return "a file" if path.is_file() else None
    names = {p.name for p in path.iterdir()}
    if "meta.json" in names and any(n.endswith(".idx") for n in names):
        return "a token store"
    if "metrics.jsonl" in names or "checkpoints" in names:
        return "a training run directory (its model is in final/)"
    if "config.json" in names:
        return "a model directory"
    if names & {"tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model"}:
        return "a tokenizer directory"
    return "an empty directory" if not names else "a directory"


def resolve(name: str | os.PathLike, role: str) -> tuple[str, dict]:
    """(name, extra from_pretrained kwargs) for a model/tokenizer name; a local name that does not exist, or a
    Hub id with the Hub unreachable, is reported here or loaded from the cache only."""
    name = str(name)
    if looks_local(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise InputError(f"{role} '{name}' not found: no such local directory (a path, so the Hub was not asked)")
        return str(path), {}
    if hub_reachable():
        return name, {}
    return name, {"local_files_only": True}


def _not_loadable(name: str, role: str, err: Exception, kwargs: dict) -> InputError:
    if kwargs.get("local_files_only"):
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub could not be reached"
        return InputError(f"{role} '{name}' not found: no local directory of that name, {why}, and it is not in "
                          "the local Hub cache")
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return InputError(f"cannot load the {role} '{name}': {detail}")


def _read_json(path: Path, role: str) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{role} file '{path}' is not valid JSON ({err}); the file is corrupted or truncated") from None
    if not isinstance(value, dict):
        raise InputError(f"{role} file '{path}' holds {type(value).__name__}, not a JSON object; the file is corrupted")
    return value


def _check_safetensors(path: Path) -> None:
    """The header parses and the file is as long as the header says (a truncated download fails here)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InputError(f"weights file '{path}' is empty or truncated ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise InputError(f"weights file '{path}' is not a safetensors file or is truncated (header of {n} bytes "
                             f"in a file of {size})")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InputError(f"weights file '{path}' has a corrupted safetensors header") from None
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and "data_offsets" in v]
    if ends and 8 + n + max(ends) > size:
        raise InputError(f"weights file '{path}' is truncated: {size} bytes, the header describes {8 + n + max(ends)}")


def _check_torch_bin(path: Path) -> None:
    """A torch zip checkpoint opens (its central directory sits at the end, so a truncated file fails)."""
    if path.stat().st_size == 0:
        raise InputError(f"weights file '{path}' is empty")
    if zipfile.is_zipfile(path):
        try:
            zipfile.ZipFile(path).close()
        except zipfile.BadZipFile as err:
            raise InputError(f"weights file '{path}' is corrupted or truncated ({err})") from None
        return
    with open(path, "rb") as f:  # the legacy (pre-1.6) format is a pickle stream
        if f.read(1) != b"\x80":
            raise InputError(f"weights file '{path}' is neither a torch checkpoint nor safetensors; it is corrupted")


def check_model_dir(path: Path, role: str = "model") -> None:
    """A local model directory: config.json parses, every weights file is intact (headers only, no tensor data)."""
    if not path.is_dir():
        raise InputError(f"{role} '{path}' is {what_is(path) or 'missing'}, not a model directory")
    if not (path / "config.json").is_file():
        kind = what_is(path)
        raise InputError(f"{role} '{path}' has no config.json: it is {kind}, not a model directory")
    _read_json(path / "config.json", f"{role} config")
    if (path / "generation_config.json").is_file():  # transformers would skip a damaged one with a log line
        _read_json(path / "generation_config.json", f"{role} generation config")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index, f"{role} index").get("weight_map", {}).values()))
        for shard in shards:
            if not (path / shard).is_file():
                raise InputError(f"{role} '{path}': shard '{shard}' named in {index.name} is missing")
            _check_safetensors(path / shard)
        return
    for weights in sorted(path.glob("*.safetensors")):
        _check_safetensors(weights)
    for weights in sorted(path.glob("pytorch_model*.bin")):
        _check_torch_bin(weights)


def check_tokenizer_dir(path: Path, role: str = "tokenizer") -> None:
    """A local tokenizer directory: it has tokenizer files, and its JSON files parse."""
    if not path.is_dir():
        raise InputError(f"{role} '{path}' is {what_is(path) or 'missing'}, not a tokenizer directory")
    files = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model",
             "sentencepiece.bpe.model")
    if not any((path / f).is_file() for f in files):
        raise InputError(f"{role} '{path}' has no tokenizer files (tokenizer.json, tokenizer_config.json, ...): it is "
                         f"{what_is(path)}" + ("; save the tokenizer beside the model or pass --tokenizer"
                                                if (path / "config.json").is_file() else ""))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json"):
        if (path / name).is_file():
            _read_json(path / name, f"{role} {name.split('.')[0].replace('_', ' ')}")


def load_tokenizer(name: str | os.PathLike, role: str = "tokenizer", **kwargs):
    """``AutoTokenizer.from_pretrained`` (fast tokenizers), with a one-line error for anything wrong.
    ``role`` names the thing in messages: 'tokenizer', or 'model' when the tokenizer is the one saved with it."""
    from transformers import AutoTokenizer

    name, extra = resolve(name, role)
    if looks_local(name):
        check_tokenizer_dir(Path(name), role)
    try:
        return AutoTokenizer.from_pretrained(name, **extra, **kwargs)
    except Exception as err:  # the edge of a user-given input: whatever went wrong, it is this input's problem
        raise _not_loadable(name, role, err, extra) from err


# Tokenizer classes whose transformers loader uses tokenizer.json as it is (no rebuilt backend).
GENERIC_TOKENIZER_CLASSES = frozenset({"TokenizersBackend", "PreTrainedTokenizerFast"})
# tokenizer_config.json keys with which transformers changes the backend or the special tokens on load.
_BACKEND_CHANGING_KEYS = ("add_bos_token", "add_eos_token", "add_prefix_space", "additional_special_tokens",
                          "extra_special_tokens")


class BackendTokenizer:
    """What tokenizing into a store needs of a transformers fast tokenizer (``backend_tokenizer``, ``len``,
    ``name_or_path``, ``bos_token_id``, ``eos_token_id``), loaded with ``tokenizers`` alone."""

    def __init__(self, backend, name: str, bos_token_id: int | None, eos_token_id: int | None):
        self.backend_tokenizer, self.name_or_path = backend, name
        self.bos_token_id, self.eos_token_id = bos_token_id, eos_token_id

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)


def load_backend_tokenizer(name: str | os.PathLike) -> BackendTokenizer | None:
    """A local tokenizer directory that transformers would load unchanged from its tokenizer.json, without
    importing transformers (which imports torch: seconds of start-up for `data prepare`); None whenever
    transformers might build something else (a specific tokenizer class, a special_tokens_map.json, options
    that rewrite the backend, special or added tokens missing from tokenizer.json) -- use ``load_tokenizer``."""
    path = Path(name)
    if not (path / "tokenizer.json").is_file() or not (path / "tokenizer_config.json").is_file() \
            or (path / "special_tokens_map.json").exists():
        return None
    try:
        config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
        from tokenizers import Tokenizer

        backend = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception:  # anything odd: let transformers load it (and report it)
        return None
    if not isinstance(config, dict) or config.get("tokenizer_class") not in GENERIC_TOKENIZER_CLASSES or \
            any(config.get(key) not in (None, [], {}) for key in _BACKEND_CHANGING_KEYS):
        return None
    added = [token.get("content") for token in (config.get("added_tokens_decoder") or {}).values()]
    if any(backend.token_to_id(content) is None for content in added):
        return None

    def token_id(key: str):
        value = config.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        return None if value is None else backend.token_to_id(value)

    specials = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token", "sep_token", "cls_token")
    if any(config.get(key) is not None and token_id(key) is None for key in specials):
        return None
    return BackendTokenizer(backend, str(name), token_id("bos_token"), token_id("eos_token"))


def load_config(name: str | os.PathLike, role: str = "model", **kwargs):
    from transformers import AutoConfig

    name, extra = resolve(name, role)
    if looks_local(name):
        check_model_dir(Path(name), role)
    try:
        return AutoConfig.from_pretrained(name, **extra, **kwargs)
    except Exception as err:  # the edge of a user-given input
        raise _not_loadable(name, role, err, extra) from err


def is_masked_lm_config(config) -> bool:
    """True for encoder-only MLM architectures (BERT, RoBERTa, XLM-R, HF XLM, ...)."""
    if getattr(config, "model_type", "") == "xlm":  # XLMWithLMHeadModel is XLM's MLM (causal only with causal: true)
        return not getattr(config, "causal", False)
    archs = getattr(config, "architectures", None) or []
    if any("MaskedLM" in a for a in archs):
        return True
    if any("CausalLM" in a or "LMHead" in a for a in archs):
        return False
    return getattr(config, "model_type", "") in {"bert", "roberta", "xlm-roberta", "distilbert", "camembert",
                                                  "electra", "deberta", "deberta-v2", "longformer", "modernbert"}


def load_model(name: str | os.PathLike, kind: str = "auto", dtype=None, role: str = "model", **kwargs):
    """Load a causal or masked LM. ``kind``: ``auto`` (from the config), ``causal`` or ``masked``."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    config = load_config(name, role)  # checks the directory and its files
    name, extra = resolve(name, role)
    if kind == "auto":
        kind = "masked" if is_masked_lm_config(config) else "causal"
    if kind not in ("causal", "masked"):
        raise InputError(f"unknown model kind '{kind}'; use auto, causal or masked")
    cls = AutoModelForMaskedLM if kind == "masked" else AutoModelForCausalLM
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        return cls.from_pretrained(name, **extra, **kwargs)
    except Exception as err:  # the edge of a user-given input
        raise _not_loadable(name, role, err, extra) from err


def check_vocab_fits(tokenizer_size: int, embedding_rows: int, model: str, tokenizer: str,
                     clone_rows: bool = False) -> None:
    """The same rule in every command that loads a model and a tokenizer: a tokenizer with more tokens than the
    model has embedding rows is an error (its extra ids would index past the table); fewer is a warning (rows
    no token uses -- normal when a vocabulary is padded, a mistake when the tokenizer is not the model's), unless
    ``clone_rows``: a model trained with cloned languages, whose rows above the tokenizer's are the clones'."""
    from langadapt.progress import warn

    if tokenizer_size > embedding_rows:
        raise InputError(f"the tokenizer '{tokenizer}' has {tokenizer_size} tokens but the model '{model}' only "
                         f"{embedding_rows} embedding rows; pass the tokenizer that belongs to the model")
    if tokenizer_size < embedding_rows and not clone_rows:
        warn(f"the tokenizer '{tokenizer}' has {tokenizer_size} tokens and the model '{model}' {embedding_rows} "
             f"embedding rows; {embedding_rows - tokenizer_size} rows are never used (fine for a padded vocabulary)")


def load_model_and_tokenizer(model_name: str, tokenizer_name: str | None = None, device: str | None = None,
                             **kwargs):
    """Model (causal or masked, from its config) and its tokenizer (default: the one saved with it), checked
    against each other with ``check_vocab_fits``; the model in eval mode on ``device``."""
    import torch

    tokenizer = load_tokenizer(tokenizer_name or model_name, role="tokenizer" if tokenizer_name else "model")
    model = load_model(model_name, **kwargs)
    check_vocab_fits(len(tokenizer), model.get_input_embeddings().weight.shape[0], model_name,
                     tokenizer_name or model_name, clone_rows=Path(model_name, "clones.json").is_file())
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer
