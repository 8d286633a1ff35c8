"""A tiny causal LM saved as a Hugging Face directory, and generate-task jobs on it (no download)."""

from __future__ import annotations

from pathlib import Path

FACTORY = "transformers:AutoModelForCausalLM"


def make_tiny_lm_dir(directory: Path) -> Path:
    """A 2-layer GPT-2 and a character tokenizer fitted to arithmetic prompts, saved with save_pretrained."""
    from arsearch.models import save_hf
    from arsearch.tasks.generate import arithmetic, tiny_causal_lm

    items = arithmetic(300)
    model, tok = tiny_causal_lm([it["prompt"] + it["reference"] for it in items], n_layer=2, n_embd=32, n_head=2)
    save_hf(model, tok, directory)
    return directory


def generate_job(out_dir: Path, path: Path, *, n_prompts: int = 100, directions: int = 2, eval_every: int = 1,
                 **tables) -> dict:
    """A tiny generate-task post-training job (sequential backend, digit-match reward, no tracking);
    `tables` are merged into the job's tables, e.g. ``ars={"iterations": 4}``."""
    data = {"seed": 0,
            "task": {"kind": "generate", "prompts": "arithmetic", "n_prompts": n_prompts, "batch_size": 8,
                     "max_new_tokens": 3, "reward": "arsearch.tasks.generate:digit_match"},
            "model": {"factory": FACTORY, "path": str(path)},
            "ars": {"version": "v1t", "directions": directions, "top": directions, "step_size": 0.05,
                    "noise": 0.05, "iterations": 2, "backend": "sequential"},
            "eval": {"every": eval_every}, "tracking": {"enabled": False},
            "checkpoint": {"dir": str(out_dir / "out"), "every": 100}}
    for key, value in tables.items():
        data[key] = {**data.get(key, {}), **value}
    return data
