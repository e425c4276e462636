"""`langadapt eval similarity`: how alike a model treats parallel texts, layer by layer and in its gradients.

For each pair of parallel sentences (two languages, or a language and its clone):
- hidden states per layer, compared by cosine similarity: position by position (cloned pairs, same
  token count), after mean pooling, and by a max-weight one-to-one token matching;
- the gradients of the LM loss of each side, compared per parameter tensor.
A mismatched-pairs baseline (sentence i against sentence i+1) shows what "unrelated" looks like.

The defaults are xling-imbalance's definitions (``compare_representations.py``): the token matching is computed
once per pair on the layer-averaged similarity matrix and then read off at every layer (``matching="layer_mean"``;
``per_layer`` matches each layer on its own), and gradients are compared pair by pair — batch-1 gradients of the
token-mean loss of each side, their cosine per tensor averaged over the pairs (``gradient_mode="per_pair"``;
``pooled`` compares the gradients of each side's summed loss over all pairs). One departure: the BOS/CLS/SEP
positions are left out of the position and matching similarities (the reference keeps BOS, whose hidden state a
causal LM computes identically for both sides, which lifts every layer's average by the same constant).

A cloned language is parallel by construction: ``id_map_b`` sends side B's token ids through the run's clone
map, so both sides are the same text (``eval similarity --clone k``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from langadapt.errors import ConfigError, InputError
from langadapt.options import Count, ModelPath, NonNegativeInt, OutDir, Seed, SourcePath, TokenizerPath
from langadapt.progress import info, progress
from langadapt.threads import apply_threads

MATCHINGS = ("layer_mean", "per_layer")
GRADIENT_MODES = ("per_pair", "pooled")

# ---------------------------------------------------------------------------------------------
# Pure math: tensors in, numbers out.


def position_cosine(h_a: torch.Tensor, h_b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-pair mean cosine of hidden states at the same position. h: [B, T, D], mask: [B, T] -> [B]."""
    cos = F.cosine_similarity(h_a.float(), h_b.float(), dim=-1)
    mask = mask.float()
    return (cos * mask).sum(1) / mask.sum(1).clamp_min(1)


def mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T, D] hidden states, [B, T] mask -> [B, D] mean over the masked positions."""
    mask = mask.float().unsqueeze(-1)
    return (h.float() * mask).sum(1) / mask.sum(1).clamp_min(1)


def matching_cosine(a: torch.Tensor, b: torch.Tensor) -> tuple[float, str]:
    """Mean cosine of the max-weight one-to-one matching between the tokens of two sentences.

    a: [n, D], b: [m, D]; min(n, m) pairs. Exact (Hungarian, scipy) when available; otherwise each
    token of the shorter side takes its most similar token on the other side (an upper bound).
    """
    sim = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        best = sim.max(dim=1).values if sim.shape[0] <= sim.shape[1] else sim.max(dim=0).values
        return float(best.mean()), "greedy"
    rows, cols = linear_sum_assignment(sim.numpy(), maximize=True)
    return float(sim[rows, cols].mean()), "hungarian"


def layer_mean_matching(h_a: torch.Tensor, h_b: torch.Tensor) -> list[float]:
    """The reference's token matching: h: [L, n, D], [L, m, D]. One max-weight one-to-one matching on the
    layer-averaged cosine matrix; per layer, the mean cosine of the matched pairs -> L values."""
    sim = torch.einsum("lnd,lmd->lnm", F.normalize(h_a.float(), dim=-1), F.normalize(h_b.float(), dim=-1))
    mean = sim.mean(0)
    try:
        from scipy.optimize import linear_sum_assignment
        rows, cols = linear_sum_assignment(mean.numpy(), maximize=True)
        rows, cols = torch.as_tensor(rows), torch.as_tensor(cols)
    except ImportError:  # greedy: each token of the shorter side takes its best partner
        if mean.shape[0] <= mean.shape[1]:
            rows, cols = torch.arange(mean.shape[0]), mean.argmax(1)
        else:
            rows, cols = mean.argmax(0), torch.arange(mean.shape[1])
    return [float(v) for v in sim[:, rows, cols].mean(1)]


def gradient_cosines(grads_a: dict[str, torch.Tensor], grads_b: dict[str, torch.Tensor]) -> dict[str, float | None]:
    """Cosine of two gradients per parameter tensor (None where either gradient is zero)."""
    out: dict[str, float | None] = {}
    for name, g_a in grads_a.items():
        g_b = grads_b[name]
        norms = g_a.float().norm() * g_b.float().norm()
        out[name] = float((g_a.float() * g_b.float()).sum() / norms) if norms > 0 else None
    return out


def overall_gradient_cosine(grads_a: dict[str, torch.Tensor], grads_b: dict[str, torch.Tensor]) -> float | None:
    dot = sum(float((grads_a[n].double() * grads_b[n].double()).sum()) for n in grads_a)
    norm_a = sum(float(grads_a[n].double().pow(2).sum()) for n in grads_a) ** 0.5
    norm_b = sum(float(grads_b[n].double().pow(2).sum()) for n in grads_b) ** 0.5
    return dot / (norm_a * norm_b) if norm_a > 0 and norm_b > 0 else None


# ---------------------------------------------------------------------------------------------
# Model side: encode, run, collect.


@dataclass
class Encoded:
    input_ids: torch.Tensor  # [B, T], right-padded
    attention: torch.Tensor  # [B, T]
    content: torch.Tensor  # [B, T]: True at the sentence's own tokens (not BOS/CLS/SEP/padding)


def encode_side(tokenizer, texts: Sequence[str], *, masked: bool, max_length: int | None, id_map=None) -> Encoded:
    """Each sentence as the model sees it: [BOS] x for causal LMs, [CLS] x [SEP] for masked LMs; ``id_map``
    (a clone map) rewrites the sentence's own ids."""
    from langadapt.eval.bpb import _special_frame, causal_start_id

    if masked:
        prefix, suffix = _special_frame(tokenizer)
    else:
        start = causal_start_id(tokenizer)
        prefix, suffix = ([start] if start is not None else []), []
    room = None if max_length is None else max_length - len(prefix) - len(suffix)
    rows = [tokenizer.encode(t, add_special_tokens=False)[:room] for t in texts]
    if id_map is not None:
        rows = [[int(id_map[i]) for i in r] for r in rows]
    width = max(len(prefix) + len(r) + len(suffix) for r in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id or 0, dtype=torch.long)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    content = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        seq = prefix + r + suffix
        input_ids[i, :len(seq)] = torch.tensor(seq)
        attention[i, :len(seq)] = 1
        content[i, len(prefix):len(prefix) + len(r)] = True
    return Encoded(input_ids, attention, content)


def _batch(enc: Encoded, sl: slice, device) -> Encoded:
    width = int(enc.attention[sl].sum(1).max())
    return Encoded(enc.input_ids[sl, :width].to(device), enc.attention[sl, :width].to(device),
                   enc.content[sl, :width].to(device))


def side_loss(model, enc: Encoded, *, masked: bool, mask_id: int | None, generator: torch.Generator) -> torch.Tensor:
    """Summed token NLL of one batch: next-token for causal LMs; 15% masked (seeded) for masked LMs."""
    if not masked:
        labels = enc.input_ids.masked_fill(~enc.content, -100)
        logits = model(input_ids=enc.input_ids, attention_mask=enc.attention).logits
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100,
                               reduction="sum")
    chosen = (torch.rand(enc.content.shape, generator=generator) < 0.15).to(enc.content.device) & enc.content
    labels = enc.input_ids.masked_fill(~chosen, -100)
    logits = model(input_ids=enc.input_ids.masked_fill(chosen, mask_id), attention_mask=enc.attention).logits
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum")


def side_gradients(model, enc: Encoded, *, masked: bool, mask_id: int | None, batch_size: int, seed: int,
                   device) -> dict[str, torch.Tensor]:
    """Gradient of the summed loss of all sentences of one side, per trainable parameter tensor."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    generator = torch.Generator().manual_seed(seed)  # same seed both sides: clones get the same masked positions
    for start in range(0, enc.input_ids.shape[0], batch_size):
        side_loss(model, _batch(enc, slice(start, start + batch_size), device), masked=masked, mask_id=mask_id,
                  generator=generator).backward()
    grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for n, p in params.items()}
    model.zero_grad(set_to_none=True)
    return grads


def pair_gradient_similarity(model, enc_a: Encoded, enc_b: Encoded, *, masked: bool, mask_id: int | None,
                             seed: int, device) -> tuple[dict[str, float | None], float | None]:
    """The reference's gradient similarity: per pair, the batch-1 gradients of each side's loss,
    their cosine per parameter tensor (and over all parameters); each averaged over the pairs where defined."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    sums: dict[str, float] = {n: 0.0 for n in params}
    counts: dict[str, int] = {n: 0 for n in params}
    overall: list[float] = []
    for i in progress(range(enc_a.input_ids.shape[0]), desc="gradients", unit="pair"):
        grads = []
        for enc in (enc_a, enc_b):
            one = _batch(enc, slice(i, i + 1), device)
            model.zero_grad(set_to_none=True)
            generator = torch.Generator().manual_seed(seed + i)  # same masked positions on both sides
            # summed, not token-mean: a positive factor per side leaves every cosine unchanged
            side_loss(model, one, masked=masked, mask_id=mask_id, generator=generator).backward()
            grads.append({n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
                          for n, p in params.items()})
        for name, value in gradient_cosines(*grads).items():
            if value is not None:
                sums[name] += value
                counts[name] += 1
        value = overall_gradient_cosine(*grads)
        if value is not None:
            overall.append(value)
    model.zero_grad(set_to_none=True)
    per_tensor = {n: (sums[n] / counts[n] if counts[n] else None) for n in params}
    return per_tensor, (sum(overall) / len(overall) if overall else None)


@torch.no_grad()
def hidden_similarity(model, enc_a: Encoded, enc_b: Encoded, *, batch_size: int, device,
                      cloned: bool, matching: str = "layer_mean") -> dict:
    """Per-layer similarities (index 0 = embeddings) averaged over the pairs."""
    how = matching
    n = enc_a.input_ids.shape[0]
    pooled_a: list[list[torch.Tensor]] = []
    pooled_b: list[list[torch.Tensor]] = []
    position: list[list[torch.Tensor]] = []
    matching: list[list[float]] = []
    method = "hungarian"
    for start in progress(range(0, n, batch_size), desc="hidden states", unit="batch"):
        sl = slice(start, start + batch_size)
        a, b = _batch(enc_a, sl, device), _batch(enc_b, sl, device)
        hs_a = model(input_ids=a.input_ids, attention_mask=a.attention, output_hidden_states=True).hidden_states
        hs_b = model(input_ids=b.input_ids, attention_mask=b.attention, output_hidden_states=True).hidden_states
        if not pooled_a:
            pooled_a, pooled_b = [[] for _ in hs_a], [[] for _ in hs_a]
            position, matching = [[] for _ in hs_a], [[] for _ in hs_a]
        for layer, (h_a, h_b) in enumerate(zip(hs_a, hs_b)):
            pooled_a[layer].append(mean_pool(h_a, a.content).cpu())
            pooled_b[layer].append(mean_pool(h_b, b.content).cpu())
            if cloned:
                width = min(h_a.shape[1], h_b.shape[1])
                position[layer].append(position_cosine(h_a[:, :width], h_b[:, :width], a.content[:, :width]).cpu())
            if how == "per_layer":
                for i in range(h_a.shape[0]):
                    value, method = matching_cosine(h_a[i][a.content[i]].cpu(), h_b[i][b.content[i]].cpu())
                    matching[layer].append(value)
        if how == "layer_mean":
            for i in range(a.input_ids.shape[0]):
                stack_a = torch.stack([h[i][a.content[i]] for h in hs_a]).cpu()
                stack_b = torch.stack([h[i][b.content[i]] for h in hs_b]).cpu()
                for layer, value in enumerate(layer_mean_matching(stack_a, stack_b)):
                    matching[layer].append(value)
    result = {"layers": list(range(len(pooled_a))), "mean_pool": [], "mean_pool_mismatched": [], "matching": [],
              "position": [] if cloned else None, "matching_method": method, "matching_on": how}
    for layer in range(len(pooled_a)):
        pa, pb = torch.cat(pooled_a[layer]), torch.cat(pooled_b[layer])
        result["mean_pool"].append(float(F.cosine_similarity(pa, pb, dim=-1).mean()))
        result["mean_pool_mismatched"].append(
            float(F.cosine_similarity(pa, pb.roll(-1, dims=0), dim=-1).mean()) if n > 1 else None)
        result["matching"].append(sum(matching[layer]) / n)
        if cloned:
            result["position"].append(float(torch.cat(position[layer]).mean()))
    return result


def compare_parallel(model, tokenizer, texts_a: Sequence[str], texts_b: Sequence[str], *, batch_size: int = 16,
                     max_length: int | None = None, pairing: str = "auto", gradients: bool = True, seed: int = 0,
                     device=None, matching: str = "layer_mean", gradient_mode: str = "per_pair",
                     id_map_b=None) -> dict:
    """Hidden-state and gradient similarity of a model on parallel texts (see the module docstring).

    ``pairing``: ``clone`` (position by position; needs equal token counts), ``real``, or ``auto``
    (clone when every pair has the same number of tokens). ``matching``: ``layer_mean`` (the reference) or
    ``per_layer``; ``gradient_mode``: ``per_pair`` (the reference) or ``pooled``; ``id_map_b``: a clone map applied
    to side B's ids.
    """
    from langadapt.eval.bpb import context_length
    from langadapt.io.models import is_masked_lm_config

    if len(texts_a) != len(texts_b):
        raise InputError(f"parallel texts have {len(texts_a)} and {len(texts_b)} lines; they must match line by line")
    if not texts_a:
        raise InputError("no parallel sentence pairs to compare (empty input)")
    device = device if device is not None else next(model.parameters()).device
    masked = is_masked_lm_config(model.config)
    max_length = max_length or context_length(model)
    enc_a = encode_side(tokenizer, texts_a, masked=masked, max_length=max_length)
    enc_b = encode_side(tokenizer, texts_b, masked=masked, max_length=max_length, id_map=id_map_b)
    if matching not in MATCHINGS:
        raise ConfigError(f"unknown matching '{matching}'; use {' or '.join(MATCHINGS)}")
    if gradient_mode not in GRADIENT_MODES:
        raise ConfigError(f"unknown gradient mode '{gradient_mode}'; use {' or '.join(GRADIENT_MODES)}")
    same_length = bool((enc_a.content.sum(1) == enc_b.content.sum(1)).all())
    if pairing not in ("auto", "clone", "real"):
        raise ConfigError(f"unknown pairing '{pairing}'; use auto, clone or real")
    if pairing == "clone" and not same_length:
        raise InputError("--pairing clone needs the same number of tokens on both sides of every pair; "
                         "use --pairing real for translations")
    cloned = same_length if pairing == "auto" else pairing == "clone"
    was_training = model.training
    model.eval()  # no dropout: the two sides must see the same function
    try:
        result = hidden_similarity(model, enc_a, enc_b, batch_size=batch_size, device=device, cloned=cloned,
                                   matching=matching)
        result.update(pairs=len(texts_a), cloned=cloned, scoring="mlm" if masked else "clm",
                      gradient_mode=gradient_mode if gradients else None)
        if gradients:
            kwargs = dict(masked=masked, mask_id=tokenizer.mask_token_id, batch_size=batch_size, seed=seed,
                          device=device)
            if masked and tokenizer.mask_token_id is None:
                raise InputError("the tokenizer has no mask token, so masked-LM gradients cannot be computed")
            if gradient_mode == "per_pair":
                result["gradients"], result["gradient_overall"] = pair_gradient_similarity(
                    model, enc_a, enc_b, masked=masked, mask_id=tokenizer.mask_token_id, seed=seed, device=device)
            else:
                g_a, g_b = side_gradients(model, enc_a, **kwargs), side_gradients(model, enc_b, **kwargs)
                result["gradients"] = gradient_cosines(g_a, g_b)
                result["gradient_overall"] = overall_gradient_cosine(g_a, g_b)
    finally:
        model.train(was_training)
    return result


# ---------------------------------------------------------------------------------------------
# CLI: langadapt eval similarity


@dataclass
class SimilarityArgs:
    model: ModelPath
    """Model directory or Hub id (causal or masked LM)."""
    parallel: Union[list[SourcePath], SourcePath]
    """Two parallel files, line i of one translating (or cloning) line i of the other: `A B`, `A,B` or `[A,B]`.
    .txt: one sentence per line; .jsonl: one record per line (--text-field). With --clone: one file."""
    tokenizer: Optional[TokenizerPath] = None
    """Tokenizer directory or Hub id. Default: the one saved with the model."""
    text_field: str = "text"
    """Field holding the text in .jsonl files."""
    max_pairs: Count = 256
    """Use the first N pairs."""
    pairing: str = "auto"
    """clone (position by position), real (mean pooling and token matching only) or auto (clone when every pair has equal token counts)."""
    gradients: bool = True
    """Also compare the gradients of the two sides (--no-gradients to skip)."""
    batch_size: Count = 16
    """Sentences per forward pass."""
    max_length: Optional[Count] = None
    """Truncate sentences to this many tokens (default: the model's context)."""
    seed: Seed = 0
    """Seed of the MLM masking used for masked-LM gradients."""
    device: str | None = None
    """torch device (default: cuda if available, else cpu)."""
    out: OutDir = "similarity"
    """Output directory: similarity.json, hidden_similarity.png, gradient_similarity.png."""
    overwrite: bool = False
    """Replace --out if it exists."""
    threads: NonNegativeInt = 1
    """torch CPU threads (0: one per core). One is fastest on a shared machine (docs/train.md)."""
    clone: Optional[Count] = None
    """Compare each line with itself in clone k (1-based) of a run trained with data.clones (the run's saved
    clone map, beside --model or in its run directory): --parallel then takes one file."""
    matching: str = "layer_mean"
    """Token matching: layer_mean (one matching on the layer-averaged similarity, the reference's) or per_layer."""
    gradient_mode: str = "per_pair"
    """per_pair (batch-1 gradient cosines averaged over pairs, the reference's) or pooled (each side's summed loss)."""


def read_parallel_lines(path: str, text_field: str = "text") -> list[str]:
    """Every line of a parallel file, blank ones included (alignment is by line number)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"parallel file '{path}' not found")
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    if p.suffix.lower() in (".jsonl", ".json"):
        out = []
        for i, line in enumerate(lines, 1):
            try:
                record = json.loads(line) if line.strip() else {}
            except json.JSONDecodeError as err:
                raise InputError(f"{path}:{i}: not valid JSON ({err.msg})") from None
            out.append(str(record.get(text_field, "")) if isinstance(record, dict) else "")
        return out
    return lines


def similarity_command(args: SimilarityArgs) -> int:
    apply_threads(args.threads)
    from langadapt.eval.bpb import load_model_and_tokenizer, split_list
    from langadapt.eval.plots import bar_figure, panels_figure
    from langadapt.io.atomic import atomic_dir

    files = split_list(args.parallel)
    if args.matching not in MATCHINGS:
        raise ConfigError(f"--matching must be {' or '.join(MATCHINGS)}, got '{args.matching}'")
    if args.gradient_mode not in GRADIENT_MODES:
        raise ConfigError(f"--gradient-mode must be {' or '.join(GRADIENT_MODES)}, got '{args.gradient_mode}'")
    id_map = None
    if args.clone is not None:
        from langadapt.data.mixture import load_clone_maps

        if len(files) != 1:
            raise InputError(f"--clone compares one file with its clone: pass one --parallel file, got {len(files)}")
        id_map, _ = load_clone_maps(args.model, args.clone)
        files = [files[0], files[0]]
    if len(files) != 2:
        raise InputError(f"--parallel needs exactly two files (A B), got {len(files)}")
    if args.max_pairs < 1 or args.batch_size < 1:
        raise ConfigError("--max-pairs and --batch-size must be >= 1")
    lines_a, lines_b = (read_parallel_lines(f, args.text_field) for f in files)
    if len(lines_a) != len(lines_b):
        raise InputError(f"parallel files have different line counts: '{files[0]}' {len(lines_a)}, "
                         f"'{files[1]}' {len(lines_b)}; they must be aligned line by line")
    pairs = [(a, b) for a, b in zip(lines_a, lines_b) if a.strip() and b.strip()][:args.max_pairs]
    if not pairs:
        raise InputError(f"'{files[0]}' and '{files[1]}' have no non-empty line pairs (empty input)")
    if Path(args.out).exists() and not args.overwrite:
        raise InputError(f"output '{args.out}' already exists; choose another path or pass --overwrite")
    model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer, args.device)
    info(f"comparing {len(pairs)} pairs")
    result = compare_parallel(model, tokenizer, [a for a, _ in pairs], [b for _, b in pairs],
                              batch_size=args.batch_size, max_length=args.max_length, pairing=args.pairing,
                              gradients=args.gradients, seed=args.seed, matching=args.matching,
                              gradient_mode=args.gradient_mode, id_map_b=id_map)
    result.update(model=args.model, parallel=files, clone=args.clone)
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        (tmp / "similarity.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        curves = {k: (result["layers"], result[k]) for k in ("position", "mean_pool", "matching")
                  if result.get(k) is not None}
        if all(v is not None for v in result["mean_pool_mismatched"]):
            curves["mismatched_pool"] = (result["layers"], result["mean_pool_mismatched"])
        panels_figure([("hidden-state cosine similarity", "layer (0 = embeddings)", "cosine", curves)],
                      tmp / "hidden_similarity.png")
        if result.get("gradients"):
            names = [n for n, v in result["gradients"].items() if v is not None]
            bar_figure(names, [result["gradients"][n] for n in names], tmp / "gradient_similarity.png",
                       title=f"gradient cosine per tensor (overall {result['gradient_overall']:.3f})",
                       ylabel="cosine")
    print(f"{'layer':>5} " + " ".join(f"{k:>16}" for k in curves))
    for i, layer in enumerate(result["layers"]):
        print(f"{layer:>5} " + " ".join(f"{v[1][i]:>16.4f}" for v in curves.values()))
    if result.get("gradient_overall") is not None:
        print(f"gradient cosine (all parameters): {result['gradient_overall']:.4f}")
    info(f"wrote {args.out}")
    return 0
