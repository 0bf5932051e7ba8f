"""BERT text stacks from ``transformers``' own modules, sized from a checkpoint, with an optional fusion part.

Both benchmark text sides are BERT-large whose upper layers (from
``fusion_layer``) add cross-attention to vision tokens. ``transformers``
attaches cross-attention to every layer or to none, so the layers are built
one by one here: the parameter layout is ``transformers``' (and the
checkpoints'), the wiring of text and fusion layers is this module's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seppo_video.evaluation.errors import EvalError

HEAD_WIDTH = 64  # BERT-large: 1024 wide, 16 heads
EPS = 1e-12


@dataclass(frozen=True)
class BertShape:
    width: int
    layers: int  # layers built here (text-only ones below fusion_layer, fusion ones from it)
    fusion_layer: int
    hidden: int
    vocab: int
    max_positions: int
    type_vocab: int

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], prefix: str, layers: int, fusion_layer: int,
                        what: str) -> BertShape:
        def get(key: str) -> torch.Tensor:
            if prefix + key not in state:
                raise EvalError(f"{what}: the checkpoint has no {prefix + key!r}")
            return state[prefix + key]

        words = get("embeddings.word_embeddings.weight")
        return cls(width=words.shape[1], layers=layers, fusion_layer=fusion_layer,
                   hidden=get("encoder.layer.0.intermediate.dense.weight").shape[0], vocab=words.shape[0],
                   max_positions=get("embeddings.position_embeddings.weight").shape[0],
                   type_vocab=get("embeddings.token_type_embeddings.weight").shape[0])


def layer_count(state: dict[str, torch.Tensor], prefix: str) -> int:
    return sum(1 for i in range(len(state)) if f"{prefix}encoder.layer.{i}.attention.self.query.weight" in state)


def _hidden(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    # transformers 4.x layers return a tuple, 5.x the tensor itself.
    return output[0] if isinstance(output, tuple) else output


class BertStack(nn.Module):
    """``embeddings`` + ``encoder.layer``: ``text`` runs the text-only layers, ``fuse`` the fusion layers."""

    def __init__(self, shape: BertShape):
        from transformers import BertConfig
        from transformers.models.bert.modeling_bert import BertEmbeddings, BertLayer

        super().__init__()
        config = BertConfig(
            vocab_size=shape.vocab, hidden_size=shape.width, num_hidden_layers=shape.layers,
            num_attention_heads=shape.width // HEAD_WIDTH, intermediate_size=shape.hidden,
            max_position_embeddings=shape.max_positions, type_vocab_size=shape.type_vocab, layer_norm_eps=EPS,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager",
        )
        # transformers adds cross-attention only to decoder layers, so fusion layers are built as such. Their
        # self-attention stays bidirectional: the causal mask is BertModel's doing, and the layers here always
        # get an explicit padding mask (eager attention applies exactly the mask it is given).
        fusion = BertConfig(**{**config.to_dict(), "is_decoder": True, "add_cross_attention": True},
                            attn_implementation="eager")
        self.embeddings = BertEmbeddings(config)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(
            BertLayer(fusion if i >= shape.fusion_layer else config, layer_idx=i) for i in range(shape.layers)
        )
        self.fusion_layer = shape.fusion_layer

    @staticmethod
    def _mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states after the text-only layers (the ``mode="text"`` of both benchmarks' BERT)."""
        hidden = self.embeddings(input_ids=input_ids)
        mask = self._mask(attention_mask, hidden.dtype)
        for layer in self.encoder.layer[: self.fusion_layer]:
            hidden = _hidden(layer(hidden, attention_mask=mask))
        return hidden

    def fuse(self, text: torch.Tensor, attention_mask: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
        """The fusion layers over ``text`` hidden states, attending to every vision token (``mode="fusion"``)."""
        hidden, mask = text, self._mask(attention_mask, text.dtype)
        for layer in self.encoder.layer[self.fusion_layer :]:
            hidden = _hidden(layer(hidden, attention_mask=mask, encoder_hidden_states=vision.to(hidden.dtype)))
        return hidden
