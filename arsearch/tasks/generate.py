"""Rewards on generated outputs: a causal language model is scored by what it writes.

``task.kind = "generate"``: each candidate θ greedily completes a mini-batch of prompts
(``max_new_tokens``, batched over the prompts with left padding) and its score is the mean of a
reward function over the completions — any ``reward(prompts, outputs, references) -> floats``, no
gradient needed (exact match, a pass/fail check, a judge's score). Evaluation is the mean reward
on a held-out prompt set. This is the use of forward-only fine-tuning that MeZO and "Evolution
Strategies at Scale" (arXiv 2509.24372) made the frontier; here it runs under ARS with any backend.

Prompts come from ``task.prompts``: a built-in synthetic generator (``"arithmetic"``: zero-padded
two-digit sums, exact-match answers), a ``.jsonl`` file of ``{"prompt": ..., "reference": ...}``
lines, or ``"package.module:function"`` returning such dicts (called with ``n`` and ``seed`` if it
accepts them). `tiny_causal_lm` builds a fresh small GPT-2 and a character-level tokenizer from the
data, for the example's pretraining (nothing is downloaded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..fields import number
from ..imports import call_user, call_with_accepted, is_import_path, load_callable
from ..interrupt import check_pretraining
from .base import Task
from .countdown import countdown

# ---------------------------------------------------------------------------------------------
# Data and rewards


def arithmetic(n: int = 2000, seed: int = 0) -> list[dict]:
    """`n` distinct sums ``"07+42="`` -> ``"049"`` of two-digit numbers (fixed width: the answer's
    length is known, so an exact match is a crisp reward)."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(100 * 100, size=min(n, 100 * 100), replace=False)
    return [{"prompt": f"{a:02d}+{b:02d}=", "reference": f"{a + b:03d}"} for a, b in (divmod(int(p), 100) for p in pairs)]


BUILTIN_PROMPTS = {"arithmetic": arithmetic, "countdown": countdown}


def exact_match(prompts: list[str], outputs: list[str], references: list[str]) -> list[float]:
    """1.0 where the completion, stripped of surrounding whitespace, equals the reference."""
    return [float(o.strip() == (r or "").strip()) for o, r in zip(outputs, references)]


def digit_match(prompts: list[str], outputs: list[str], references: list[str]) -> list[float]:
    """The fraction of the reference's characters the completion gets right, position by position
    (a denser reward than exact match, for comparison)."""
    out = []
    for o, r in zip(outputs, references):
        o, r = o.strip(), (r or "").strip()
        out.append(sum(a == b for a, b in zip(o, r)) / max(len(r), len(o), 1))
    return out


def _items(raw, source: str) -> list[dict]:
    items = []
    for i, row in enumerate(raw):
        if isinstance(row, str):
            row = {"prompt": row}
        elif isinstance(row, (tuple, list)) and len(row) == 2:
            row = {"prompt": row[0], "reference": row[1]}
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise ValueError(f"task.prompts {source!r}: item {i} is not a prompt string or a dict with a 'prompt' string")
        ref = row.get("reference")
        items.append({"prompt": row["prompt"], "reference": None if ref is None else str(ref)})
    if not items:
        raise ValueError(f"task.prompts {source!r} holds no prompts")
    return items


MAX_PROMPT_LINE = 1 << 20     # bytes: a prompt is text a model reads, far below this


def load_prompts(source: str, n: int = 2000, seed: int = 0) -> list[dict]:
    """Prompt dicts (``prompt``, ``reference`` or None) from a built-in name, a .jsonl file or a factory."""
    if source in BUILTIN_PROMPTS:
        return BUILTIN_PROMPTS[source](n=n, seed=seed)
    if is_import_path(source):
        return _items(call_user("task.prompts", source, call_with_accepted, load_callable(source, "task.prompts"),
                                n=n, seed=seed), source)
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"task.prompts {source!r} is not a built-in ({', '.join(BUILTIN_PROMPTS)}), "
                         f"a 'package.module:function' or an existing .jsonl file")
    rows = []
    with open(path, "rb") as f:
        # line by line, each read at most MAX_PROMPT_LINE + 1 bytes: a huge line is refused when it is met,
        # not after the whole file is in memory
        for lineno, raw in enumerate(iter(lambda: f.readline(MAX_PROMPT_LINE + 1), b""), 1):
            if len(raw) > MAX_PROMPT_LINE:
                raise ValueError(f"{path}:{lineno} is longer than {MAX_PROMPT_LINE >> 20} MiB; a .jsonl line "
                                 f"is one prompt and its reference")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"task.prompts {source!r} is not UTF-8 text (line {lineno}, byte {e.start} of "
                                 f"it); .jsonl files are UTF-8") from None
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno} is not a JSON line ({e.msg})") from None
    return _items(rows, source)


# ---------------------------------------------------------------------------------------------
# A tiny model for the example (built locally, never downloaded)


def char_tokenizer(texts: list[str]):
    """A character-level tokenizer over the characters of `texts` (plus <pad>, <unk>, <eos>), as a
    `PreTrainedTokenizerFast` that pads on the left (as generation with a batch needs)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("".join(texts)))
    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<eos>", *chars])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>",
                                   padding_side="left")


def tiny_causal_lm(texts: list[str], n_layer: int = 2, n_embd: int = 64, n_head: int = 4, n_positions: int = 32,
                   seed: int = 0):
    """(a fresh GPT-2 of `n_layer` layers, its character tokenizer) for the data in `texts`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = char_tokenizer(texts)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(cfg), tok


def small_causal_lm(texts: list[str], seed: int = 0):
    """(a fresh GPT-2 of about 3.2 million parameters — 4 layers, width 256 —, its character
    tokenizer): big enough to learn Countdown's format and some of its sums, small enough to
    pretrain in minutes on 2 CPU cores."""
    return tiny_causal_lm(texts, n_layer=4, n_embd=256, n_head=4, n_positions=48, seed=seed)


# ---------------------------------------------------------------------------------------------
# The task


class _Generator(nn.Module):
    """`lm.generate` as a forward, so `torch.func.functional_call` can run it with a candidate's
    parameters swapped in (the vectorized backend's interface) without touching the model."""

    def __init__(self, lm: nn.Module, kwargs: dict):
        super().__init__()
        self.lm, self.kwargs = lm, kwargs

    def forward(self, input_ids, attention_mask):
        return self.lm.generate(input_ids=input_ids, attention_mask=attention_mask, **self.kwargs)


@dataclass
class PromptBatch:
    prompts: list[str]
    references: list[str | None]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    seed: int = 0       # sampling decoding: every candidate scored on this batch draws the same tokens' noise


@dataclass
class GenerateConfig:
    """``[task]`` keys of ``kind = "generate"`` (the model itself comes from ``[model] path``)."""

    prompts: str = "arithmetic"      # arithmetic | countdown | a .jsonl file | "package.module:function"
    eval_prompts: str = ""           # held-out prompts (.jsonl); empty: `test_fraction` of `prompts`
    n_prompts: int = number(2000, 1)  # built-in generators: how many prompts to make
    reward: str = "arsearch.tasks.generate:exact_match"   # "package.module:function"
    max_new_tokens: int = number(8, 1)
    temperature: float = number(0.0, 0.0)   # 0: greedy decoding; > 0: sampling at this temperature
    samples_per_prompt: int = number(1, 1)  # completions sampled per prompt (> 1 needs temperature > 0)
    eval_batch: int = number(256, 1)  # prompts per batched call when evaluating
    batch_size: int = number(256, 1)  # prompts per iteration
    test_fraction: float = number(0.25, 0.0, 1.0, low_open=True)


class GenerateTask(Task):
    name = "generate"
    Config = GenerateConfig
    metric = "reward"
    metric_direction = "maximize"
    eval_metrics = ("reward", "success")
    counters = ("forward_examples", "generated_tokens")

    @classmethod
    def check(cls, config) -> None:
        if config.model is None or not config.model.path:
            raise ValueError("task.kind = \"generate\" needs [model] path: a Hugging Face model directory "
                             "(with factory = \"transformers:AutoModelForCausalLM\")")
        if config.task.samples_per_prompt > 1 and config.task.temperature == 0:
            raise ValueError(f"task.samples_per_prompt = {config.task.samples_per_prompt} with greedy decoding "
                             f"(task.temperature = 0) would repeat one completion; set task.temperature > 0 "
                             f"(e.g. 1.0) or samples_per_prompt = 1")
        if config.task.test_fraction >= 1.0:
            raise ValueError(f"task.test_fraction = {config.task.test_fraction} leaves no training prompts; "
                             f"allowed: > 0 and < 1")

    @classmethod
    def unused_keys(cls, config) -> tuple[str, ...]:
        return ("test_fraction",) if config.task.eval_prompts else ()

    def __init__(self, model: nn.Module, tokenizer, train: list[dict], test: list[dict], reward=exact_match, *,
                 batch_size: int = 32, max_new_tokens: int = 8, eval_batch: int = 256, seed: int = 0,
                 temperature: float = 0.0, samples_per_prompt: int = 1, device: str | torch.device = "cpu"):
        super().__init__()
        if tokenizer is None:
            raise ValueError("a generate task needs a tokenizer (saved in the model directory)")
        if tokenizer.pad_token_id is None:          # GPT-2 style tokenizers have none: pad with EOS
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"             # generation continues from the prompt's last token
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer, self.train, self.test, self.reward = tokenizer, train, test, reward
        self.batch_size, self.max_new_tokens, self.eval_batch, self.seed = batch_size, max_new_tokens, eval_batch, seed
        if samples_per_prompt > 1 and temperature == 0:
            raise ValueError(f"samples_per_prompt = {samples_per_prompt} needs temperature > 0 (greedy decoding "
                             f"would repeat one completion)")
        self.temperature, self.samples_per_prompt = float(temperature), int(samples_per_prompt)
        self.gen_kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1,
                           "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
        self._generator = _Generator(self.model, self.gen_kwargs)
        # training's decoding; evaluation stays greedy, so held-out scores do not depend on a draw
        self._sampler = self._generator if self.temperature == 0 else _Generator(self.model, {
            **self.gen_kwargs, "do_sample": True, "temperature": self.temperature, "top_k": 0, "top_p": 1.0,
            "num_return_sequences": self.samples_per_prompt})
        self.fresh = False       # set by from_config when the model was built new (to be pretrained)

    @classmethod
    def from_config(cls, config, device=None) -> GenerateTask:
        from ..models import is_hf, load_hf

        t, m = config.task, config.model
        if m.factory and not is_hf(m.factory):
            raise ValueError(f"task.kind = \"generate\" loads a Hugging Face model: model.factory must be "
                             f"\"transformers:AutoModelForCausalLM\" (or another Auto class), not {m.factory!r}")
        items = load_prompts(t.prompts, t.n_prompts, config.seed)
        if t.eval_prompts:
            train, test = items, load_prompts(t.eval_prompts, t.n_prompts, config.seed + 1)
        else:   # a held-out share of the same prompts
            n_test = max(1, int(round(len(items) * t.test_fraction)))
            if n_test >= len(items):
                raise ValueError(f"task.prompts: {len(items)} prompts leave none for training after holding out "
                                 f"task.test_fraction = {t.test_fraction}")
            order = np.random.default_rng(config.seed).permutation(len(items))
            test, train = [items[i] for i in order[:n_test]], [items[i] for i in order[n_test:]]
        if any(it["reference"] is None for it in test) and t.reward.endswith(("exact_match", "digit_match")):
            raise ValueError(f"task.reward {t.reward!r} compares with references, but some prompts have none")
        reward = load_callable(t.reward, "task.reward")
        fresh = not Path(m.path).exists() and m.pretrain_epochs > 0
        if fresh:
            if not m.init:
                raise ValueError(f"model.path {m.path} does not exist; to pretrain a fresh model there set "
                                 f"[model] init (e.g. \"arsearch.tasks.generate:tiny_causal_lm\")")
            texts = [it["prompt"] + (it["reference"] or "") for it in items + test]
            model, tok = call_user("model.init", m.init, call_with_accepted, load_callable(m.init, "model.init"),
                                   texts=texts, seed=config.seed)
        else:
            model, tok = load_hf(m.factory or "transformers:AutoModelForCausalLM", m.path)
        task = cls(model, tok, train, test, reward, batch_size=t.batch_size, max_new_tokens=t.max_new_tokens,
                   eval_batch=t.eval_batch, seed=config.seed, temperature=t.temperature,
                   samples_per_prompt=t.samples_per_prompt, device=device or "cpu")
        task.fresh = fresh
        task.reward_name = t.reward
        return task

    # -- generation --------------------------------------------------------------------------------
    def encode(self, items: list[dict]) -> PromptBatch:
        prompts = [it["prompt"] for it in items]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True)
        return PromptBatch(prompts, [it["reference"] for it in items], enc["input_ids"].to(self.device),
                           enc["attention_mask"].to(self.device))

    def _decode(self, batch: PromptBatch, out: torch.Tensor, count: bool) -> list[str]:
        if count:   # training's cost only: evaluations are not counted, as in the supervised task
            self.count("forward_examples", int(out.shape[0]))     # sequences generated
            self.count("generated_tokens", int(out.shape[0] * (out.shape[1] - batch.input_ids.shape[1])))
        return self.tokenizer.batch_decode(out[:, batch.input_ids.shape[1]:], skip_special_tokens=True)

    @torch.no_grad()
    def generate(self, batch: PromptBatch, params: dict[str, torch.Tensor] | None = None, count: bool = True,
                 sample: bool = False) -> list[str]:
        """Completions of the batch's prompts, by the model or by `params` swapped into it: greedy, or
        with `sample` the training decoding (`samples_per_prompt` completions per prompt, consecutive,
        at `temperature`), its noise seeded from the batch so that every candidate on one batch draws
        alike and a rerun with the same seed writes the same text."""
        module = self._sampler if sample else self._generator
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            if module is not self._generator:
                torch.manual_seed(batch.seed)     # the global RNG is what HF sampling draws from
            if params is None:
                out = module(batch.input_ids, batch.attention_mask)
            else:
                from torch.func import functional_call

                out = functional_call(module, {f"lm.{k}": v for k, v in params.items()},
                                      (batch.input_ids, batch.attention_mask))
        return self._decode(batch, out, count)

    def rewards(self, batch: PromptBatch, outputs: list[str]) -> torch.Tensor:
        """One reward per output; `outputs` may hold k consecutive completions per prompt."""
        spec = getattr(self, "reward_name", None) or getattr(self.reward, "__name__", "reward")
        k = len(outputs) // max(len(batch.prompts), 1)
        prompts = [p for p in batch.prompts for _ in range(k)]
        references = [r for r in batch.references for _ in range(k)]
        n = len(prompts)
        values = call_user("task.reward", spec, self.reward, prompts, outputs, references)
        try:
            arr = None if values is None else np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (n,):
            got = ("None" if values is None else f"a {type(values).__name__}" if arr is None
                   else f"a scalar ({values!r})" if arr.ndim == 0 else f"an array of shape {arr.shape}")
            what = f"{n} prompts" if k == 1 else f"{n} outputs ({k} per prompt)"
            unit = "prompt" if k == 1 else "output"
            raise ValueError(f"task.reward = {spec!r} returned {got} for {what}; it must return one number "
                             f"per {unit} (a list or 1-D array of {n} floats)")
        return torch.as_tensor(arr)

    # -- Task interface ----------------------------------------------------------------------------
    def batch(self, iteration: int) -> PromptBatch:
        rng = np.random.default_rng([self.seed, iteration])
        idx = rng.choice(len(self.train), size=self.batch_size, replace=self.batch_size > len(self.train))
        batch = self.encode([self.train[i] for i in idx])
        batch.seed = int(rng.integers(2 ** 62))
        return batch

    def score(self, batch: PromptBatch, index: int = 0) -> float:
        return float(self.rewards(batch, self.generate(batch, sample=True)).mean())

    def score_params(self, params: dict[str, torch.Tensor], batch: PromptBatch) -> torch.Tensor:
        # HF generation does not run under vmap (its loop stops on data): candidates go one after
        # another, each batched over the prompts, with its parameters swapped in, not copied
        n = next(iter(params.values())).shape[0]
        return torch.stack([self.rewards(batch, self.generate(batch, {k: v[i] for k, v in params.items()},
                                                              sample=True)).mean() for i in range(n)])

    def outputs(self, items: list[dict]) -> list[str]:
        out = []
        for i in range(0, len(items), self.eval_batch):
            out += self.generate(self.encode(items[i:i + self.eval_batch]), count=False)
        return out

    def evaluate(self, items: list[dict] | None = None) -> dict[str, float]:
        """Greedy decoding of the held-out prompts (or `items`): the mean reward, and the share of
        prompts with full reward (>= 1: an exact match, a Countdown solution)."""
        items = self.test if items is None else items
        outputs = self.outputs(items)
        batch = PromptBatch([it["prompt"] for it in items], [it["reference"] for it in items], None, None)
        values = self.rewards(batch, outputs)
        return {"reward": float(values.mean()), "success": float((values >= 1.0).double().mean())}

    def samples(self, n: int = 20) -> list[dict]:
        """The first `n` held-out prompts with their references, the current model's outputs and the
        reward of each."""
        items = self.test[:n]
        outputs = self.outputs(items)
        rewards = self.rewards(PromptBatch([it["prompt"] for it in items], [it["reference"] for it in items], None, None),
                               outputs)
        return [{**it, "output": o, "reward": float(r)} for it, o, r in zip(items, outputs, rewards)]

    # -- gradient baseline: cross-entropy on prompt + reference ------------------------------------
    def train_cross_entropy(self, steps: int, lr: float = 3e-3, batch_size: int = 64, seed: int = 0,
                            on_step=None) -> list[float]:
        """Adam on the references' tokens (teacher forcing; the prompt is context, not target).

        Returns the loss of each step (`on_step(step, loss)` hears of each). Counts its sequences in
        ``forward_examples`` like ARS does."""
        if any(it["reference"] is None for it in self.train):
            raise ValueError("cross-entropy training needs a reference for every prompt")
        tok = self.tokenizer
        eos = tok.eos_token or ""
        model = self.model
        if getattr(model, "loss_type", "") is None:
            # a model class transformers does not map to a loss (GPT2LMHeadModel) warns at its first loss
            # that it uses the causal-LM loss; that is the loss meant here, so say so and skip the warning
            model.loss_type = "ForCausalLM"
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        rng = np.random.default_rng([seed, 1])
        losses = []
        try:
            for _ in range(steps):
                idx = rng.choice(len(self.train), size=batch_size, replace=batch_size > len(self.train))
                items = [self.train[i] for i in idx]
                prompt_len = [len(tok(it["prompt"])["input_ids"]) for it in items]
                enc = tok([it["prompt"] + it["reference"] + eos for it in items], return_tensors="pt", padding=True)
                ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
                labels = ids.clone()
                labels[mask == 0] = -100
                pad = (mask == 0).sum(1)
                for row, (p, n_pad) in enumerate(zip(prompt_len, pad.tolist())):
                    labels[row, :n_pad + p] = -100       # no loss on padding and prompt
                position_ids = (mask.cumsum(1) - 1).clamp(min=0)
                loss = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, labels=labels).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                self.count("forward_examples", batch_size)
                if on_step is not None:
                    on_step(len(losses), losses[-1])
                check_pretraining()          # a SIGINT/SIGTERM during posttrain's pretraining stops it here
        finally:
            model.eval()
            for p in model.parameters():
                p.grad = None
        return losses

    def pretrain(self, epochs: int, lr: float = 3e-3, batch_size: int = 64, seed: int = 0,
                 progress: bool = False) -> list[float]:
        """Cross-entropy pretraining for `epochs` passes over the training prompts; `progress` shows a
        bar on stderr that moves each epoch, with the epoch's mean loss."""
        per_epoch = max(1, -(-len(self.train) // batch_size))
        steps = epochs * per_epoch
        bar = None
        if progress:
            import sys

            from tqdm import tqdm

            bar = tqdm(total=epochs, desc="pretrain (Adam)", unit="epoch", file=sys.stderr)

        epoch: list[float] = []

        def on_step(step: int, loss: float) -> None:
            epoch.append(loss)
            if step % per_epoch == 0:
                bar.set_postfix(loss=f"{np.mean(epoch):.4f}")
                bar.update()
                epoch.clear()
        try:
            losses = self.train_cross_entropy(steps, lr, batch_size, seed, on_step=on_step if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
        return [float(np.mean(losses[i:i + per_epoch])) for i in range(0, len(losses), per_epoch)]
