"""A BERT encoder layer as Hugging Face's `modeling_bert` writes it (eager attention): the
padding mask of the inputs made additive by `(1 - mask) * torch.finfo(dtype).min` (the model's
`get_extended_attention_mask`), heads split through size tuples, the score scale
`1 / math.sqrt(head_size)`, dropouts, post-norm residuals. The importer tests import it."""

from __future__ import annotations

import math

import torch
from torch import nn


def extended_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, S] of 1 (attend) and 0 (padding) -> [B, 1, 1, S] of 0 and the dtype's minimum."""
    ext = attention_mask[:, None, None, :].to(dtype=dtype)
    return (1.0 - ext) * torch.finfo(dtype).min


class BertSelfAttention(nn.Module):
    def __init__(self, hidden=32, heads=4):
        super().__init__()
        self.num_attention_heads = heads
        self.attention_head_size = hidden // heads
        self.all_head_size = heads * self.attention_head_size
        self.query = nn.Linear(hidden, self.all_head_size)
        self.key = nn.Linear(hidden, self.all_head_size)
        self.value = nn.Linear(hidden, self.all_head_size)
        self.dropout = nn.Dropout(0.1)

    def transpose_for_scores(self, x):
        new_shape = x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)
        return x.view(new_shape).permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask=None):
        query_layer = self.transpose_for_scores(self.query(hidden_states))
        key_layer = self.transpose_for_scores(self.key(hidden_states))
        value_layer = self.transpose_for_scores(self.value(hidden_states))
        attention_scores = torch.matmul(query_layer, key_layer.transpose(-1, -2))
        attention_scores = attention_scores / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            attention_scores = attention_scores + attention_mask
        attention_probs = nn.functional.softmax(attention_scores, dim=-1)
        attention_probs = self.dropout(attention_probs)
        context_layer = torch.matmul(attention_probs, value_layer)
        context_layer = context_layer.permute(0, 2, 1, 3).contiguous()
        new_shape = context_layer.size()[:-2] + (self.all_head_size,)
        return context_layer.view(new_shape)


class BertSelfOutput(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(0.1)

    def forward(self, hidden_states, input_tensor):
        hidden_states = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(hidden_states + input_tensor)


class BertIntermediate(nn.Module):
    def __init__(self, hidden=32, inner=64):
        super().__init__()
        self.dense = nn.Linear(hidden, inner)
        self.intermediate_act_fn = nn.GELU()

    def forward(self, hidden_states):
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertOutput(BertSelfOutput):
    def __init__(self, hidden=32, inner=64):
        super().__init__(hidden)
        self.dense = nn.Linear(inner, hidden)


class BertLayer(nn.Module):
    """One encoder layer taking the token states and the padding mask of the inputs."""

    def __init__(self, hidden=32, heads=4, inner=64):
        super().__init__()
        self.self = BertSelfAttention(hidden, heads)
        self.output = BertSelfOutput(hidden)
        self.intermediate = BertIntermediate(hidden, inner)
        self.out = BertOutput(hidden, inner)

    def forward(self, hidden_states, attention_mask):
        ext = extended_attention_mask(attention_mask, hidden_states.dtype)
        attention_output = self.output(self.self(hidden_states, ext), hidden_states)
        return self.out(self.intermediate(attention_output), attention_output)
