"""UMT-L/16 with its BERT-large text side and cross-attention fusion, loading the released ``UMT-msrvtt-7k.pth``.

Written from the UMT paper (Li et al., "Unmasked Teacher", ICCV 2023) and
the benchmark's UMT configuration (``UMT/main/configs/chronomagic_umt*_config.py``):

- vision: a ViT over 16×16 patches of each frame (tubelet 1), fixed
  sinusoidal position table over all ``T × 196`` tokens, pre-norm blocks
  (LayerNorm eps 1e-6, query/value biases, no key bias), a final norm, and a
  "pool norm" of the per-frame token mean (``keep_temporal``);
- text: BERT-large; layers below ``fusion_layer`` (19) read the text alone,
  the layers from it on add cross-attention to all vision tokens;
- heads: ``vision_proj`` / ``text_proj`` to 768, ``itm_head`` (match / no match) on the fused [CLS].

The BERT side is :class:`~.bert.BertStack` (``transformers``' modules).
Sizes are read from the checkpoint's tensor shapes, so reduced test models
load through the same code; heads are 64 wide, as in UMT-L/16 and BERT-large.

The benchmark's loader strips ``bert.`` from key names (its zero-shot
branch) and then loads with ``strict=False``; its logs for this file show
``<All keys matched successfully>``, so loading here is strict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seppo_video.evaluation.errors import EvalError
from seppo_video.evaluation.networks.bert import BertShape, BertStack
from seppo_video.evaluation.networks.checkpoints import load_strict, read_state_dict
from seppo_video.evaluation.networks.layers import Mlp

WHAT = "weights.umt (UMT-L/16 UMT-msrvtt-7k)"
HEAD_WIDTH = 64  # UMT-L/16: 1024 wide, 16 heads
VISION_EPS = 1e-6
# A non-persistent buffer in current transformers (persistent in the one UMT was saved with): checked, not loaded.
POSITION_IDS = "text_encoder.embeddings.position_ids"


@dataclass(frozen=True)
class UMTShape:
    """The network's sizes, as a checkpoint's tensors give them."""

    vision_width: int
    vision_depth: int
    vision_hidden: int
    patch: int
    embed_dim: int
    text_width: int
    text_layers: int
    fusion_layer: int
    text_hidden: int
    vocab: int
    max_positions: int
    type_vocab: int

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> UMTShape:
        def get(key: str) -> torch.Tensor:
            if key not in state:
                raise EvalError(f"{WHAT}: the checkpoint has no {key!r}: not a UMT checkpoint")
            return state[key]

        def count(template: str) -> int:
            return sum(1 for i in range(len(state)) if template.format(i) in state)

        fusion = [i for i in range(len(state)) if f"text_encoder.encoder.layer.{i}.crossattention.self.query.weight" in state]
        if not fusion:
            raise EvalError(f"{WHAT}: the checkpoint's text encoder has no cross-attention layer (fusion)")
        patch = get("vision_encoder.encoder.patch_embed.proj.weight")
        words = get("text_encoder.embeddings.word_embeddings.weight")
        return cls(
            vision_width=patch.shape[0],
            vision_depth=count("vision_encoder.encoder.blocks.{}.norm1.weight"),
            vision_hidden=get("vision_encoder.encoder.blocks.0.mlp.fc1.weight").shape[0],
            patch=patch.shape[-1],
            embed_dim=get("vision_proj.weight").shape[0],
            text_width=words.shape[1],
            text_layers=count("text_encoder.encoder.layer.{}.attention.self.query.weight"),
            fusion_layer=min(fusion),
            text_hidden=get("text_encoder.encoder.layer.0.intermediate.dense.weight").shape[0],
            vocab=words.shape[0],
            max_positions=get("text_encoder.embeddings.position_embeddings.weight").shape[0],
            type_vocab=get("text_encoder.embeddings.token_type_embeddings.weight").shape[0],
        )


def sinusoid_table(positions: int, width: int) -> torch.Tensor:
    """``[1, positions, width]``: angle ``p / 10000^(2⌊j/2⌋ / width)``, sine on even ``j``, cosine on odd."""
    angles = np.arange(positions)[:, None] / np.power(10000, 2 * (np.arange(width) // 2) / width)[None]
    table = np.where(np.arange(width) % 2 == 0, np.sin(angles), np.cos(angles))
    return torch.tensor(table, dtype=torch.float32)[None]


# ---------------------------------------------------------------- vision


class PatchEmbed(nn.Module):
    def __init__(self, width: int, patch: int):
        super().__init__()
        self.proj = nn.Conv3d(3, width, kernel_size=(1, patch, patch), stride=(1, patch, patch))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` -> ``[B, T·h·w, width]`` (time-major)."""
        return self.proj(video).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with learned query and value biases (the key has none)."""

    def __init__(self, width: int):
        super().__init__()
        self.heads = width // HEAD_WIDTH
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = nn.functional.linear(x, self.qkv.weight, bias).view(batch, tokens, 3, self.heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attended = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(attended.transpose(1, 2).reshape(batch, tokens, width))


class Block(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(width, eps=VISION_EPS), Attention(width)
        self.norm2, self.mlp = nn.LayerNorm(width, eps=VISION_EPS), Mlp(width, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionEncoder(nn.Module):
    def __init__(self, shape: UMTShape):
        super().__init__()
        self.patch_embed = PatchEmbed(shape.vision_width, shape.patch)
        self.blocks = nn.ModuleList([Block(shape.vision_width, shape.vision_hidden) for _ in range(shape.vision_depth)])
        self.norm = nn.LayerNorm(shape.vision_width, eps=VISION_EPS)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(video)
        x = x + sinusoid_table(x.shape[1], x.shape[2]).to(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class UMTVision(nn.Module):
    """Tokens ``[B, T·N, C]`` and per-frame pooled features ``[B, T, C]`` of ``video [B, T, 3, H, W]``."""

    def __init__(self, shape: UMTShape):
        super().__init__()
        self.encoder = VisionEncoder(shape)
        self.pool_norm = nn.LayerNorm(shape.vision_width, eps=VISION_EPS)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, frames = video.shape[:2]
        tokens = self.encoder(video.permute(0, 2, 1, 3, 4))
        pooled = self.pool_norm(tokens.view(batch, frames, -1, tokens.shape[-1]).mean(dim=2))
        return tokens, pooled


class UMT(nn.Module):
    """The metric interface (``encode_video``, ``encode_text``, ``match_logit``) over the released network.

    On CUDA the forward passes run under fp16 autocast, as the benchmark's
    evaluation does (``fp16 = True``); on CPU they run in float32.
    """

    def __init__(self, shape: UMTShape):
        super().__init__()
        self.vision_encoder = UMTVision(shape)
        self.text_encoder = BertStack(BertShape(
            width=shape.text_width, layers=shape.text_layers, fusion_layer=shape.fusion_layer, hidden=shape.text_hidden,
            vocab=shape.vocab, max_positions=shape.max_positions, type_vocab=shape.type_vocab))
        self.vision_proj = nn.Linear(shape.vision_width, shape.embed_dim)
        self.text_proj = nn.Linear(shape.text_width, shape.embed_dim)
        self.temp = nn.Parameter(torch.ones([]))
        self.itm_head = nn.Linear(shape.text_width, 2)

    def _autocast(self, x: torch.Tensor) -> torch.autocast:
        return torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=x.device.type == "cuda")

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, D]``: the vision projection of the per-frame pooled features, averaged over frames (UMT-FVD)."""
        with self._autocast(video):
            return self.vision_proj(self.vision_encoder(video)[1]).mean(dim=1).float()

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with self._autocast(input_ids):
            return self.text_proj(self.text_encoder.text(input_ids, attention_mask)[:, 0]).float()

    def match_logit(self, video: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B]``: the ITM head's "match" logit of the fused [CLS] (UMTScore)."""
        with self._autocast(video):
            tokens = self.vision_encoder(video)[0]
            fused = self.text_encoder.fuse(self.text_encoder.text(input_ids, attention_mask), attention_mask, tokens)
            return self.itm_head(fused[:, 0])[:, 1].float()


def official_key_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The benchmark's renaming before loading: ``bert.`` removed from every key that contains ``bert``."""
    return {(key.replace("bert.", "") if "bert" in key else key): value for key, value in state.items()}


def umt_checkpoint(path: str | Path) -> tuple[UMTShape, dict[str, torch.Tensor]]:
    """The released checkpoint's sizes and tensors under this network's key names."""
    state = official_key_names(read_state_dict(path, WHAT))
    positions = state.pop(POSITION_IDS, None)
    if positions is not None and not torch.equal(positions.reshape(-1), torch.arange(positions.numel())):
        raise EvalError(f"{WHAT}: {path}: {POSITION_IDS} is not 0, 1, 2, ... (not a BERT position table)")
    return UMTShape.from_state_dict(state), state


def load_umt(path: str | Path, device: torch.device) -> UMT:
    """UMT from the released checkpoint (``{"model": state_dict}`` or a bare state dict), loaded strictly."""
    shape, state = umt_checkpoint(path)
    model = UMT(shape)
    load_strict(model, state, WHAT, path)
    return model.eval().to(device)
