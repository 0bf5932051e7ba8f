"""InternVideo2 stage-2 1B (vision encoder, BERT-large text side, projections) for MTScore.

Written from the InternVideo2 paper (Wang et al., 2024) and the benchmark's
``MTScore/configs/internvideo2_stage2_config.py``: a ViT over 14×14 patches of
4 frames (tubelet 1) with a class token and a learned position table,
pre-norm blocks with RMSNorm (eps 1e-6, no bias), query/key RMSNorm over the
full width, no qkv bias, LayerScale on both branches; then an attention
pooling block (query = token mean, LayerNorm eps 1e-5 on query, key and
value inputs, biased q/k/v) to 768; ``vision_proj`` / ``text_proj`` to 512.
The BERT-large text side reads the text alone (MTScore never fuses).

What the released ``InternVideo2-stage2_1b-224p-f4.pt`` holds is the whole
stage-2 model (``vision_encoder.*``, ``text_encoder.*``, ``vision_proj``,
``text_proj``, ``temp``, ``itm_head``). This loader takes every tensor
MTScore's path needs from it, requires all of them, and accepts only the
listed parts MTScore does not use (:data:`UNUSED`); any other key is an
error. (The benchmark's own script loads this file differently, see
``docs/evaluation.md``.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from seppo_video.evaluation.errors import EvalError
from seppo_video.evaluation.networks.bert import BertShape, BertStack, layer_count
from seppo_video.evaluation.networks.checkpoints import load_strict, read_state_dict
from seppo_video.evaluation.networks.layers import Mlp

WHAT = "weights.internvideo2 (InternVideo2 stage-2 1B)"
HEADS = 16  # num_heads and attn_pool_num_heads of pretrain_internvideo2_1b_patch14_224
BLOCK_EPS, POOL_EPS = 1e-6, 1e-5
# Parts of the stage-2 checkpoint that MTScore's path never reads: distillation decoders, the image and
# CLIP-teacher position tables, the MLM head, the fusion layers, the matching head and the temperature.
UNUSED = re.compile(
    r"vision_encoder\.(clip_decoder\.|final_clip_decoder\.|img_pos_embed$|clip_pos_embed$|clip_img_pos_embed$)"
    r"|text_encoder\.cls\.|text_encoder\.bert\.embeddings\.position_ids$|itm_head\.|temp$"
)


@dataclass(frozen=True)
class VisionShape:
    width: int
    depth: int
    hidden: int
    patch: int
    tokens: int  # 1 + frames × patches per frame (the position table's length)
    pooled: int  # the attention pooling's output width (clip_embed_dim)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> VisionShape:
        def get(key: str) -> torch.Tensor:
            if key not in state:
                raise EvalError(f"{WHAT}: the checkpoint has no {key!r}: not an InternVideo2 stage-2 checkpoint")
            return state[key]

        patch = get("vision_encoder.patch_embed.proj.weight")
        return cls(width=patch.shape[0], depth=sum(1 for i in range(len(state))
                                                   if f"vision_encoder.blocks.{i}.norm1.weight" in state),
                   hidden=get("vision_encoder.blocks.0.mlp.fc1.weight").shape[0], patch=patch.shape[-1],
                   tokens=get("vision_encoder.pos_embed").shape[1],
                   pooled=get("vision_encoder.clip_projector.cross_attn.proj.weight").shape[0])


class RMSNorm(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + BLOCK_EPS)).to(x.dtype)


class LayerScale(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Self-attention with RMSNorm on queries and keys (over all heads together), no qkv bias."""

    def __init__(self, width: int):
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_norm, self.k_norm = RMSNorm(width), RMSNorm(width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k = self.q_norm(q), self.k_norm(k)
        heads = [t.view(batch, tokens, HEADS, -1).transpose(1, 2) for t in (q, k, v)]
        attended = nn.functional.scaled_dot_product_attention(*heads)
        return self.proj(attended.transpose(1, 2).reshape(batch, tokens, width))


class Block(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.norm1, self.attn, self.ls1 = RMSNorm(width), Attention(width), LayerScale(width)
        self.norm2, self.mlp, self.ls2 = RMSNorm(width), Mlp(width, hidden), LayerScale(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PoolingAttention(nn.Module):
    """The pooling block's cross-attention: one query (the token mean) over all tokens, biased q/k/v."""

    def __init__(self, width: int, out: int):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(width, width, bias=False) for _ in range(3))
        self.q_bias, self.k_bias, self.v_bias = (nn.Parameter(torch.zeros(width)) for _ in range(3))
        self.proj = nn.Linear(width, out)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        def heads(x: torch.Tensor, layer: nn.Linear, bias: torch.Tensor) -> torch.Tensor:
            return nn.functional.linear(x, layer.weight, bias).view(x.shape[0], x.shape[1], HEADS, -1).transpose(1, 2)

        attended = nn.functional.scaled_dot_product_attention(
            heads(query, self.q, self.q_bias), heads(key, self.k, self.k_bias), heads(value, self.v, self.v_bias))
        return self.proj(attended.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1))


class AttentionPooling(nn.Module):
    def __init__(self, width: int, out: int):
        super().__init__()
        self.norm1_q, self.norm1_k, self.norm1_v = (nn.LayerNorm(width, eps=POOL_EPS) for _ in range(3))
        self.cross_attn = PoolingAttention(width, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = self.norm1_q(x.mean(dim=1, keepdim=True))
        return self.cross_attn(query, self.norm1_k(x), self.norm1_v(x)).squeeze(1)


class PatchEmbed(nn.Module):
    def __init__(self, width: int, patch: int):
        super().__init__()
        self.proj = nn.Conv3d(3, width, kernel_size=(1, patch, patch), stride=(1, patch, patch))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.proj(video).flatten(2).transpose(1, 2)  # [B, C, T, h, w] -> [B, T·h·w, C]


class VisionEncoder(nn.Module):
    def __init__(self, shape: VisionShape):
        super().__init__()
        self.patch_embed = PatchEmbed(shape.width, shape.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, shape.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, shape.tokens, shape.width))
        self.blocks = nn.ModuleList(Block(shape.width, shape.hidden) for _ in range(shape.depth))
        self.clip_projector = AttentionPooling(shape.width, shape.pooled)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> the pooled feature ``[B, pooled]``."""
        x = self.patch_embed(video.permute(0, 2, 1, 3, 4))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if x.shape[1] != self.pos_embed.shape[1]:
            raise EvalError(f"{WHAT}: the input has {x.shape[1]} tokens, vision_encoder.pos_embed "
                            f"{self.pos_embed.shape[1]} (frames or size differ from the checkpoint's)")
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.clip_projector(x)


@dataclass(frozen=True)
class InternVideo2Shape:
    vision: VisionShape
    text: BertShape  # the text-only layers (below the fusion layers, which MTScore does not run)
    embed_dim: int


class InternVideo2(nn.Module):
    """The metric interface (``encode_video``, ``encode_text``) in float32, as the benchmark's config runs it."""

    def __init__(self, shape: InternVideo2Shape):
        super().__init__()
        self.vision_encoder = VisionEncoder(shape.vision)
        self.text_encoder = nn.Module()
        self.text_encoder.bert = BertStack(shape.text)
        self.vision_proj = nn.Linear(shape.vision.pooled, shape.embed_dim)
        self.text_proj = nn.Linear(shape.text.width, shape.embed_dim)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        return self.vision_proj(self.vision_encoder(video))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.text_proj(self.text_encoder.bert.text(input_ids, attention_mask)[:, 0])


def internvideo2_checkpoint(path: str | Path) -> tuple[InternVideo2Shape, dict[str, torch.Tensor]]:
    """The released ``.pt``'s sizes and the tensors MTScore reads (bare, or under ``model`` / ``module``)."""
    state = read_state_dict(path, WHAT, wrappers=("model", "module"))
    prefix = "text_encoder.bert."
    fusion = [i for i in range(len(state)) if f"{prefix}encoder.layer.{i}.crossattention.self.query.weight" in state]
    text_only = min(fusion) if fusion else layer_count(state, prefix)
    if "vision_proj.weight" not in state:
        raise EvalError(f"{WHAT}: {path} has no 'vision_proj.weight': not a stage-2 checkpoint")
    shape = InternVideo2Shape(VisionShape.from_state_dict(state),
                              BertShape.from_state_dict(state, prefix, text_only, text_only, WHAT),
                              state["vision_proj.weight"].shape[0])
    fusion_layers = tuple(f"{prefix}encoder.layer.{i}." for i in fusion)
    return shape, {k: v for k, v in state.items() if not (UNUSED.match(k) or k.startswith(fusion_layers))}


def load_internvideo2(path: str | Path, device: torch.device) -> InternVideo2:
    """InternVideo2 stage-2 from the released ``.pt``, loaded strictly (see the module docstring)."""
    shape, state = internvideo2_checkpoint(path)
    model = InternVideo2(shape)
    load_strict(model, state, WHAT, path)
    return model.eval().to(device)
