"""The generator: a small causal language model that answers as the character from retrieved facts.

    model, tokenizer = load_responder("anima/assets/weights/thinker/responder")   # or any HF causal LM path
    prompt = format_prompt("Ned Land", 12, ["I sharpened my harpoon.", ...], "What did you do today?")
    reply = generate(model, tokenizer, prompt)

The offline Thinker's default answers by voicing one retrieved sentence of the novel; this model is
trained (``anima.thinker.training.train_responder``) to write the reply itself from the gated
retrieval's facts, in the first person, and then improved with GRPO on the persona reward
(``anima.thinker.training.grpo``). Any Hugging Face causal LM saved with ``save_pretrained`` (a real
chat model on a GPU) fits the same slot: the prompt is plain text, the reply ends at the end-of-text
token or a new line. Weights are safetensors + config.json; nothing is unpickled.

The shipped size (``responder_config("small")``): GPT-2 blocks, 4 layers, 256 wide, 4 heads, 256
positions, a 2,048-token BPE vocabulary trained on the novel and the prompts.
"""

from __future__ import annotations

from pathlib import Path

PROMPT = "{name}, chapter {t}.\nFacts: {facts}\nVisitor: {question}\n{name}:"
EOS = "<|endoftext|>"
PAD = "<|pad|>"
MAX_FACT_WORDS = 32

CONFIGS = {  # name -> (layers, width, heads, positions)
    "tiny": (2, 64, 2, 256),
    "small": (4, 256, 4, 256),
    "base": (8, 512, 8, 512),
}


def format_prompt(name: str, story_time: int, facts: list[str], question: str) -> str:
    """The plain-text prompt: who speaks, when in the story, what it remembers, what it was asked."""
    short = [" ".join(f.split()[:MAX_FACT_WORDS]) for f in facts if f.strip()]
    return PROMPT.format(name=name, t=int(story_time), facts=" | ".join(short) or "(nothing)",
                         question=" ".join(question.split()))


def responder_config(name: str, vocab_size: int):
    """A GPT-2 configuration of one of ``CONFIGS``' sizes (transformers is imported here, lazily)."""
    from transformers import GPT2Config

    if name not in CONFIGS:
        raise ValueError(f"unknown responder size {name!r}; valid: {', '.join(CONFIGS)}")
    layers, width, heads, positions = CONFIGS[name]
    return GPT2Config(vocab_size=vocab_size, n_positions=positions, n_embd=width, n_layer=layers, n_head=heads,
                      bos_token_id=0, eos_token_id=0, pad_token_id=1, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def load_responder(path: str | Path):
    """(model, tokenizer) from a folder written by ``save_pretrained`` (safetensors only)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no responder model here (config.json missing)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    model.eval()
    return model, tokenizer


def generate(model, tokenizer, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0,
             top_k: int = 0, seed: int | None = None, no_repeat_ngram: int = 3) -> str:
    """The reply to ``prompt`` (greedy at temperature 0), cut at the end-of-text token or a new line.

    ``no_repeat_ngram``: a token that would repeat an n-gram of the reply is never chosen (small
    models loop: "it was so it was so ..."); 0 turns it off."""
    import torch

    ids = tokenizer(prompt, return_tensors="pt").input_ids  # (1, T)
    room = model.config.n_positions - max_new_tokens
    ids = ids[:, -room:]
    prompt_len = ids.shape[1]
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(ids).logits[0, -1]  # (V,)
            reply = ids[0, prompt_len:].tolist()
            n = no_repeat_ngram
            if n and len(reply) >= n - 1:
                tail = tuple(reply[len(reply) - (n - 1):]) if n > 1 else ()
                banned = {reply[i + n - 1] for i in range(len(reply) - n + 1) if tuple(reply[i:i + n - 1]) == tail}
                if banned:
                    logits[list(banned)] = float("-inf")
            if temperature <= 0:
                nxt = int(torch.argmax(logits))
            else:
                logits = logits / temperature
                if top_k:
                    kth = torch.topk(logits, top_k).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            if nxt == tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
            if "\n" in tokenizer.decode([nxt]):
                break
    text = tokenizer.decode(ids[0, prompt_len:], skip_special_tokens=True)
    return " ".join(text.split("\n")[0].split())
