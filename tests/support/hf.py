"""A tiny causal LM saved as a Hugging Face directory (no download). The `model_dir` fixture holds one;
`make_job`/`job_data`'s "generate" preset post-trains the model at ``model.path``."""

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

