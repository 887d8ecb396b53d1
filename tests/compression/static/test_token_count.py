"""The static encoder counts the token ids it sums: no special tokens, at most max_tokens, at least one."""

from __future__ import annotations

from compression.static import StaticEncoder

MAX_TOKENS = 14  # the static_folder fixture keeps 16 - 2 tokens


def test_counts_equal_the_ids_the_encoder_sums(static_folder):
    encoder = StaticEncoder(static_folder)
    texts = ["Vitamin D lowers the risk of fractures.", "cells", "", "   ", "heart " * 40, "bone " * 3000]
    want = [len(encoder.tokenizer.ids(text)) for text in texts]  # the ids `encode` sums, from the full text
    assert encoder.count_tokens(texts) == want
    assert want[1] == 1
    assert want[2] == want[3] == 1
    assert want[4] == want[5] == MAX_TOKENS
