"""The benchmark networks load their released checkpoint format strictly and compute what the architecture says.

Each checkpoint here is random-init, with the official key names and shapes
written out in the test from the benchmark's configs (reduced widths and
depths), saved as the released file is, and loaded through the metric a user
runs. Forward passes are checked against plain functional computations of
the architecture written in the test from the raw tensors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seppo_video.evaluation.backends import BackendSpec
from seppo_video.evaluation.errors import EvalError
from seppo_video.evaluation.metrics import chronomagic
from seppo_video.evaluation.metrics.base import VideoItem
from seppo_video.evaluation.official import OfficialText
from seppo_video.evaluation.tiny_extractors import ensure_tiny_extractors

CPU = torch.device("cpu")
# Reduced UMT-L/16 + BERT-large: widths 128 (two 64-wide heads), 2 vision blocks, 4 text layers fusing from 2.
VISION, VISION_MLP, DEPTH, PATCH, EMBED = 128, 256, 2, 16, 96
TEXT, TEXT_MLP, LAYERS, FUSION, POSITIONS = 128, 256, 4, 2, 64


def umt_state(vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A UMT checkpoint's tensors under the released names (the text side under ``text_encoder.bert.``)."""
    gen = torch.Generator().manual_seed(seed)
    shapes: dict[str, tuple[int, ...]] = {
        "temp": (),
        "vision_encoder.encoder.patch_embed.proj.weight": (VISION, 3, 1, PATCH, PATCH),
        "vision_encoder.encoder.patch_embed.proj.bias": (VISION,),
        "vision_encoder.encoder.norm.weight": (VISION,), "vision_encoder.encoder.norm.bias": (VISION,),
        "vision_encoder.pool_norm.weight": (VISION,), "vision_encoder.pool_norm.bias": (VISION,),
        "vision_proj.weight": (EMBED, VISION), "vision_proj.bias": (EMBED,),
        "text_proj.weight": (EMBED, TEXT), "text_proj.bias": (EMBED,),
        "itm_head.weight": (2, TEXT), "itm_head.bias": (2,),
        "text_encoder.bert.embeddings.word_embeddings.weight": (vocab, TEXT),
        "text_encoder.bert.embeddings.position_embeddings.weight": (POSITIONS, TEXT),
        "text_encoder.bert.embeddings.token_type_embeddings.weight": (2, TEXT),
        "text_encoder.bert.embeddings.LayerNorm.weight": (TEXT,), "text_encoder.bert.embeddings.LayerNorm.bias": (TEXT,),
    }
    for i in range(DEPTH):
        block = f"vision_encoder.encoder.blocks.{i}."
        shapes.update({
            block + "norm1.weight": (VISION,), block + "norm1.bias": (VISION,),
            block + "attn.qkv.weight": (3 * VISION, VISION), block + "attn.q_bias": (VISION,),
            block + "attn.v_bias": (VISION,), block + "attn.proj.weight": (VISION, VISION),
            block + "attn.proj.bias": (VISION,), block + "norm2.weight": (VISION,), block + "norm2.bias": (VISION,),
            block + "mlp.fc1.weight": (VISION_MLP, VISION), block + "mlp.fc1.bias": (VISION_MLP,),
            block + "mlp.fc2.weight": (VISION, VISION_MLP), block + "mlp.fc2.bias": (VISION,),
        })
    for i in range(LAYERS):
        layer = f"text_encoder.bert.encoder.layer.{i}."
        kinds = ["attention."] + (["crossattention."] if i >= FUSION else [])
        for kind in kinds:
            for name in ("query", "key", "value"):
                shapes[layer + kind + f"self.{name}.weight"] = (TEXT, TEXT)  # vision width = text width here
                shapes[layer + kind + f"self.{name}.bias"] = (TEXT,)
            shapes.update({layer + kind + "output.dense.weight": (TEXT, TEXT), layer + kind + "output.dense.bias": (TEXT,),
                           layer + kind + "output.LayerNorm.weight": (TEXT,),
                           layer + kind + "output.LayerNorm.bias": (TEXT,)})
        shapes.update({layer + "intermediate.dense.weight": (TEXT_MLP, TEXT), layer + "intermediate.dense.bias": (TEXT_MLP,),
                       layer + "output.dense.weight": (TEXT, TEXT_MLP), layer + "output.dense.bias": (TEXT,),
                       layer + "output.LayerNorm.weight": (TEXT,), layer + "output.LayerNorm.bias": (TEXT,)})
    state = {}
    for key, shape in shapes.items():
        is_norm = "norm" in key.lower() and key.endswith("weight")
        state[key] = 1 + 0.1 * torch.randn(shape, generator=gen) if is_norm else 0.05 * torch.randn(shape, generator=gen)
    state["text_encoder.bert.embeddings.position_ids"] = torch.arange(POSITIONS)[None]  # saved by old transformers
    return state


@pytest.fixture(scope="module")
def tokenizer():
    return str(ensure_tiny_extractors()["tokenizer"])


@pytest.fixture
def checkout_texts():
    return OfficialText(tuple(f"made-up text {i}" for i in range(10)), "test", True)


@pytest.fixture(scope="module")
def released(tmp_path_factory, tokenizer):
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(tokenizer))
    state = umt_state(vocab)
    path = tmp_path_factory.mktemp("umt") / "UMT-msrvtt-7k.pth"
    torch.save({"model": state}, path)
    return path, state


# ---------------------------------------------------------------- an independent functional UMT


def sinusoid(positions: int, width: int) -> torch.Tensor:
    table = torch.zeros(positions, width, dtype=torch.float64)
    for j in range(width):
        angle = torch.arange(positions, dtype=torch.float64) / 10000 ** (2 * (j // 2) / width)
        table[:, j] = torch.sin(angle) if j % 2 == 0 else torch.cos(angle)
    return table.float()


def heads_attention(q, k, v, width, mask=None):
    split = lambda x: x.view(x.shape[0], x.shape[1], width // 64, 64).transpose(1, 2)
    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(64)
    if mask is not None:
        scores = scores + mask
    return (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(q.shape[0], q.shape[1], width)


def functional_vision(p: dict[str, torch.Tensor], video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pre = "vision_encoder.encoder."
    x = F.conv3d(video.permute(0, 2, 1, 3, 4), p[pre + "patch_embed.proj.weight"], p[pre + "patch_embed.proj.bias"],
                 stride=(1, PATCH, PATCH))
    x = x.flatten(2).transpose(1, 2)
    x = x + sinusoid(x.shape[1], VISION)
    for i in range(DEPTH):
        b = f"{pre}blocks.{i}."
        h = F.layer_norm(x, (VISION,), p[b + "norm1.weight"], p[b + "norm1.bias"], 1e-6)
        bias = torch.cat([p[b + "attn.q_bias"], torch.zeros(VISION), p[b + "attn.v_bias"]])
        q, k, v = F.linear(h, p[b + "attn.qkv.weight"], bias).chunk(3, dim=-1)
        x = x + F.linear(heads_attention(q, k, v, VISION), p[b + "attn.proj.weight"], p[b + "attn.proj.bias"])
        h = F.layer_norm(x, (VISION,), p[b + "norm2.weight"], p[b + "norm2.bias"], 1e-6)
        h = F.linear(F.gelu(F.linear(h, p[b + "mlp.fc1.weight"], p[b + "mlp.fc1.bias"])), p[b + "mlp.fc2.weight"],
                     p[b + "mlp.fc2.bias"])
        x = x + h
    tokens = F.layer_norm(x, (VISION,), p[pre + "norm.weight"], p[pre + "norm.bias"], 1e-6)
    per_frame = tokens.view(video.shape[0], video.shape[1], -1, VISION).mean(2)
    pooled = F.layer_norm(per_frame, (VISION,), p["vision_encoder.pool_norm.weight"], p["vision_encoder.pool_norm.bias"],
                          1e-6)
    return tokens, pooled


def functional_bert_layer(p, i, x, mask, vision=None):
    pre = f"text_encoder.bert.encoder.layer.{i}."

    def block(kind, query_in, kv_in, additive):
        lin = lambda name, t: F.linear(t, p[pre + kind + name + ".weight"], p[pre + kind + name + ".bias"])
        context = heads_attention(lin("self.query", query_in), lin("self.key", kv_in), lin("self.value", kv_in), TEXT,
                                  additive)
        return F.layer_norm(lin("output.dense", context) + query_in, (TEXT,), p[pre + kind + "output.LayerNorm.weight"],
                            p[pre + kind + "output.LayerNorm.bias"], 1e-12)

    h = block("attention.", x, x, mask)
    if vision is not None:
        h = block("crossattention.", h, vision, None)
    inner = F.gelu(F.linear(h, p[pre + "intermediate.dense.weight"], p[pre + "intermediate.dense.bias"]))
    out = F.linear(inner, p[pre + "output.dense.weight"], p[pre + "output.dense.bias"])
    return F.layer_norm(out + h, (TEXT,), p[pre + "output.LayerNorm.weight"], p[pre + "output.LayerNorm.bias"], 1e-12)


def functional_text(p, ids, attention, layers=FUSION):
    e = "text_encoder.bert.embeddings."
    x = p[e + "word_embeddings.weight"][ids] + p[e + "token_type_embeddings.weight"][0]
    x = x + p[e + "position_embeddings.weight"][: ids.shape[1]]
    x = F.layer_norm(x, (TEXT,), p[e + "LayerNorm.weight"], p[e + "LayerNorm.bias"], 1e-12)
    mask = (1.0 - attention[:, None, None, :].float()) * -1e9
    for i in range(layers):
        x = functional_bert_layer(p, i, x, mask)
    return x, mask


# ---------------------------------------------------------------- UMT


def test_umt_loads_the_released_format_strictly_and_matches_the_architecture(released, tokenizer):
    path, state = released
    frames = np.random.default_rng(0).integers(0, 256, size=(16, 96, 128, 3), dtype=np.uint8)
    item = VideoItem("v", "a glacier melting over months", frames)
    spec = BackendSpec(path=str(path), tokenizer=tokenizer)
    score = chronomagic.UMTScore(spec, CPU)
    fvd = chronomagic.UMTFVD(spec, CPU)

    video = chronomagic.umt_input(frames, CPU)
    ids, attention = score.tokenizer([item.prompt], CPU)
    with torch.no_grad():
        tokens, pooled = functional_vision(state, video)
        text, mask = functional_text(state, ids, attention)
        fused = text
        for i in range(FUSION, LAYERS):
            fused = functional_bert_layer(state, i, fused, mask, tokens)
        logit = F.linear(fused[:, 0], state["itm_head.weight"], state["itm_head.bias"])[:, 1]
        features = F.linear(pooled, state["vision_proj.weight"], state["vision_proj.bias"]).mean(1)
    assert score.score(item)["score"] == pytest.approx(float(logit), abs=1e-5)
    np.testing.assert_allclose(fvd.features(frames), features.numpy(), atol=1e-5)


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape", "position_ids"])
def test_umt_checkpoint_mismatches_are_named(released, tokenizer, tmp_path, change):
    _, state = released
    state = dict(state)
    if change == "missing":
        del state["vision_encoder.encoder.blocks.1.attn.v_bias"]
        expected = "missing key.*vision_encoder.encoder.blocks.1.attn.v_bias"
    elif change == "unexpected":
        state["text_encoder.bert.pooler.dense.weight"] = torch.zeros(TEXT, TEXT)
        expected = "unexpected key.*text_encoder.pooler.dense.weight"
    elif change == "shape":
        state["itm_head.weight"] = torch.zeros(3, TEXT)
        expected = r"wrong shape for itm_head.weight \(3, 128\)"
    else:
        state["text_encoder.bert.embeddings.position_ids"] = torch.zeros(1, POSITIONS, dtype=torch.long)
        expected = "position_ids"
    path = tmp_path / "UMT-msrvtt-7k.pth"
    torch.save({"model": state}, path)
    with pytest.raises(EvalError, match=expected):
        chronomagic.UMTFVD(BackendSpec(path=str(path), tokenizer=tokenizer), CPU)


def test_umt_refuses_a_file_that_is_not_a_checkpoint(tmp_path, tokenizer):
    path = tmp_path / "UMT-msrvtt-7k.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(EvalError, match="UMT-msrvtt-7k.pth is not a torch.save checkpoint"):
        chronomagic.UMTFVD(BackendSpec(path=str(path)), CPU)


# ---------------------------------------------------------------- InternVideo2 stage-2 (MTScore)

# Reduced InternVideo2-1B: width 64 (16 heads of 4), 2 blocks, patch 14 on 224 (256 patches) x 4 frames.
IV_WIDTH, IV_MLP, IV_DEPTH, IV_PATCH, IV_TOKENS, IV_POOLED, IV_EMBED = 64, 128, 2, 14, 1 + 4 * 256, 48, 32
IV_TEXT_LAYERS, IV_FUSION = 3, 2


def internvideo2_state(vocab: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """A stage-2 checkpoint's tensors under the released names, with the parts MTScore does not read."""
    gen = torch.Generator().manual_seed(seed)
    v = "vision_encoder."
    shapes: dict[str, tuple[int, ...]] = {
        v + "patch_embed.proj.weight": (IV_WIDTH, 3, 1, IV_PATCH, IV_PATCH), v + "patch_embed.proj.bias": (IV_WIDTH,),
        v + "cls_token": (1, 1, IV_WIDTH), v + "pos_embed": (1, IV_TOKENS, IV_WIDTH),
        v + "img_pos_embed": (1, 257, IV_WIDTH), v + "clip_pos_embed": (1, IV_TOKENS, IV_WIDTH),
        v + "clip_img_pos_embed": (1, 257, IV_WIDTH),
        v + "clip_decoder.0.head.weight": (80, IV_WIDTH), v + "clip_decoder.0.head.bias": (80,),
        v + "clip_decoder.0.norm.weight": (80,), v + "clip_decoder.0.norm.bias": (80,),
        v + "final_clip_decoder.head.weight": (IV_POOLED, IV_POOLED), v + "final_clip_decoder.head.bias": (IV_POOLED,),
        v + "final_clip_decoder.norm.weight": (IV_POOLED,), v + "final_clip_decoder.norm.bias": (IV_POOLED,),
        "vision_proj.weight": (IV_EMBED, IV_POOLED), "vision_proj.bias": (IV_EMBED,),
        "text_proj.weight": (IV_EMBED, TEXT), "text_proj.bias": (IV_EMBED,),
        "itm_head.weight": (2, TEXT), "itm_head.bias": (2,), "temp": (),
        "text_encoder.cls.predictions.bias": (vocab,), "text_encoder.cls.predictions.transform.dense.weight": (TEXT, TEXT),
    }
    pool = v + "clip_projector."
    for norm in ("norm1_q", "norm1_k", "norm1_v"):
        shapes[pool + norm + ".weight"], shapes[pool + norm + ".bias"] = (IV_WIDTH,), (IV_WIDTH,)
    for name in ("q", "k", "v"):
        shapes[pool + f"cross_attn.{name}.weight"], shapes[pool + f"cross_attn.{name}_bias"] = (IV_WIDTH, IV_WIDTH), (IV_WIDTH,)
    shapes[pool + "cross_attn.proj.weight"], shapes[pool + "cross_attn.proj.bias"] = (IV_POOLED, IV_WIDTH), (IV_POOLED,)
    for i in range(IV_DEPTH):
        b = f"{v}blocks.{i}."
        shapes.update({b + "norm1.weight": (IV_WIDTH,), b + "attn.qkv.weight": (3 * IV_WIDTH, IV_WIDTH),
                       b + "attn.proj.weight": (IV_WIDTH, IV_WIDTH), b + "attn.proj.bias": (IV_WIDTH,),
                       b + "attn.q_norm.weight": (IV_WIDTH,), b + "attn.k_norm.weight": (IV_WIDTH,),
                       b + "ls1.gamma": (IV_WIDTH,), b + "norm2.weight": (IV_WIDTH,),
                       b + "mlp.fc1.weight": (IV_MLP, IV_WIDTH), b + "mlp.fc1.bias": (IV_MLP,),
                       b + "mlp.fc2.weight": (IV_WIDTH, IV_MLP), b + "mlp.fc2.bias": (IV_WIDTH,), b + "ls2.gamma": (IV_WIDTH,)})
    text = {k: v for k, v in umt_state(vocab).items() if k.startswith("text_encoder.bert.")}
    for key in list(text):  # UMT's layers 0..3 reused: 0, 1 text-only, 2 fusing (cross-attention onto width 64)
        index = int(key.split(".")[4]) if ".layer." in key else -1
        if index >= IV_TEXT_LAYERS:
            del text[key]
        elif "crossattention.self.key" in key or "crossattention.self.value" in key:
            text[key] = text[key][:, :IV_WIDTH] if key.endswith("weight") else text[key]
    state = {key: (1 + 0.1 * torch.randn(shape, generator=gen)) if ("norm" in key or "gamma" in key) and
             key.endswith(("weight", "gamma")) else 0.05 * torch.randn(shape, generator=gen) for key, shape in shapes.items()}
    return {**state, **text}


def rms(x, weight):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


def iv_heads_attention(q, k, v):
    split = lambda x: x.view(x.shape[0], x.shape[1], 16, -1).transpose(1, 2)
    weights = (split(q) @ split(k).transpose(-1, -2) / math.sqrt(q.shape[-1] // 16)).softmax(-1)
    return (weights @ split(v)).transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)


def functional_internvideo2_video(p, video):
    v = "vision_encoder."
    x = F.conv3d(video.permute(0, 2, 1, 3, 4), p[v + "patch_embed.proj.weight"], p[v + "patch_embed.proj.bias"],
                 stride=(1, IV_PATCH, IV_PATCH)).flatten(2).transpose(1, 2)
    x = torch.cat([p[v + "cls_token"].expand(x.shape[0], -1, -1), x], 1) + p[v + "pos_embed"]
    for i in range(IV_DEPTH):
        b = f"{v}blocks.{i}."
        q, k, val = F.linear(rms(x, p[b + "norm1.weight"]), p[b + "attn.qkv.weight"]).chunk(3, -1)
        a = iv_heads_attention(rms(q, p[b + "attn.q_norm.weight"]), rms(k, p[b + "attn.k_norm.weight"]), val)
        x = x + p[b + "ls1.gamma"] * F.linear(a, p[b + "attn.proj.weight"], p[b + "attn.proj.bias"])
        h = F.gelu(F.linear(rms(x, p[b + "norm2.weight"]), p[b + "mlp.fc1.weight"], p[b + "mlp.fc1.bias"]))
        x = x + p[b + "ls2.gamma"] * F.linear(h, p[b + "mlp.fc2.weight"], p[b + "mlp.fc2.bias"])
    c = v + "clip_projector."
    ln = lambda t, n: F.layer_norm(t, (IV_WIDTH,), p[c + n + ".weight"], p[c + n + ".bias"], 1e-5)
    q = F.linear(ln(x.mean(1, keepdim=True), "norm1_q"), p[c + "cross_attn.q.weight"], p[c + "cross_attn.q_bias"])
    k = F.linear(ln(x, "norm1_k"), p[c + "cross_attn.k.weight"], p[c + "cross_attn.k_bias"])
    val = F.linear(ln(x, "norm1_v"), p[c + "cross_attn.v.weight"], p[c + "cross_attn.v_bias"])
    pooled = F.linear(iv_heads_attention(q, k, val), p[c + "cross_attn.proj.weight"], p[c + "cross_attn.proj.bias"])
    return F.linear(pooled[:, 0], p["vision_proj.weight"], p["vision_proj.bias"])


@pytest.mark.parametrize("wrapper", [None, "module"])
def test_internvideo2_loads_the_released_format_and_matches_the_architecture(tmp_path, tokenizer, checkout_texts,
                                                                             wrapper):
    from transformers import AutoTokenizer

    state = internvideo2_state(len(AutoTokenizer.from_pretrained(tokenizer)))
    path = tmp_path / "InternVideo2-stage2_1b-224p-f4.pt"
    torch.save(state if wrapper is None else {wrapper: state}, path)
    metric = chronomagic.MTScore(BackendSpec(path=str(path), tokenizer=tokenizer), CPU, checkout_texts)
    frames = np.random.default_rng(3).integers(0, 256, size=(12, 80, 120, 3), dtype=np.uint8)
    with torch.no_grad():
        video = functional_internvideo2_video(state, chronomagic.mtscore_input(frames))
        batch = AutoTokenizer.from_pretrained(tokenizer)(list(checkout_texts.value), padding="max_length",
                                                         truncation=True, max_length=40, return_tensors="pt")
        ids, attention = batch["input_ids"], batch["attention_mask"]
        hidden = functional_text(state, ids, attention, layers=IV_FUSION)[0]
        text = F.linear(hidden[:, 0], state["text_proj.weight"], state["text_proj.bias"])
    cosines = (F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).T)[0]
    probs, labels = (100 * cosines).softmax(-1).topk(5)
    expected = float(sum(p for p, i in zip(probs, labels) if i >= 5))
    assert metric.score(VideoItem("v", "p", frames))["score"] == pytest.approx(expected, abs=1e-6)


def test_internvideo2_rejects_unknown_and_missing_keys(tmp_path, tokenizer, checkout_texts):
    from transformers import AutoTokenizer

    state = internvideo2_state(len(AutoTokenizer.from_pretrained(tokenizer)))
    path = tmp_path / "InternVideo2-stage2_1b-224p-f4.pt"
    torch.save({**state, "vision_encoder.extra_norm.weight": torch.ones(IV_WIDTH)}, path)
    with pytest.raises(EvalError, match=r"unexpected key\(s\) vision_encoder.extra_norm.weight"):
        chronomagic.MTScore(BackendSpec(path=str(path), tokenizer=tokenizer), CPU, checkout_texts)
    del state["vision_encoder.blocks.1.ls2.gamma"]
    torch.save(state, path)
    with pytest.raises(EvalError, match=r"missing key\(s\) vision_encoder.blocks.1.ls2.gamma"):
        chronomagic.MTScore(BackendSpec(path=str(path), tokenizer=tokenizer), CPU, checkout_texts)


# ---------------------------------------------------------------- CoTracker2 (CHScore)


def test_cotracker_runs_the_official_predictor_with_the_official_call(tmp_path, monkeypatch):
    """A stand-in ``cotracker.predictor`` records how the benchmark's predictor would be built and called."""
    import sys
    import types

    calls = []

    class CoTrackerPredictor(torch.nn.Module):
        def __init__(self, checkpoint):
            super().__init__()
            calls.append(("init", checkpoint))

        def forward(self, video, queries=None, segm_mask=None, grid_size=0, grid_query_frame=0,
                    backward_tracking=False):
            calls.append(("call", tuple(video.shape), queries, segm_mask, grid_size, grid_query_frame,
                          backward_tracking))
            frames = video.shape[1]
            tracks = torch.zeros(1, frames, grid_size**2, 2)
            visible = torch.ones(1, frames, grid_size**2, dtype=torch.bool)
            visible[:, frames // 2 :, :100] = False
            return tracks, visible

    package, module = types.ModuleType("cotracker"), types.ModuleType("cotracker.predictor")
    module.CoTrackerPredictor = CoTrackerPredictor
    monkeypatch.setitem(sys.modules, "cotracker", package)
    monkeypatch.setitem(sys.modules, "cotracker.predictor", module)
    checkpoint = tmp_path / "cotracker2.pth"
    torch.save({"fnet.conv1.weight": torch.zeros(1)}, checkpoint)
    spec = BackendSpec(path=str(checkpoint), factory="seppo_video.evaluation.networks.cotracker:official_predictor")
    record = chronomagic.CHScore(spec, CPU).score(VideoItem("v", "p", np.zeros((8, 48, 64, 3), np.uint8)))
    assert calls == [("init", str(checkpoint)), ("call", (1, 8, 3, 48, 64), None, None, 30, 0, False)]
    missed = np.array([0.0] * 4 + [100 / 900] * 4)  # static points: invisible ones are all missed
    parts = chronomagic.chscore_components(missed)
    assert record["score"] == pytest.approx(1 / chronomagic.instability_index(parts))


# CoTracker2's released layout (stride 4, window 8, space attention, 64 virtual tracks, 384x512): a few of its
# 321 tensors, named and shaped as in cotracker2.pth.
COTRACKER2_KEYS = {
    "fnet.conv1.weight": (64, 3, 7, 7), "fnet.layer2.0.downsample.0.weight": (96, 64, 1, 1),
    "fnet.layer4.1.conv2.weight": (128, 128, 3, 3), "fnet.conv2.weight": (256, 416, 3, 3),
    "fnet.conv3.weight": (128, 256, 1, 1), "updateformer.input_transform.weight": (384, 456),
    "updateformer.flow_head.weight": (130, 384), "updateformer.virual_tracks": (1, 64, 1, 384),
    "updateformer.time_blocks.5.attn.to_kv.weight": (768, 384),
    "updateformer.space_virtual2point_blocks.5.norm_context.weight": (384,),
    "updateformer.space_point2virtual_blocks.0.cross_attn.to_q.bias": (384,),
    "updateformer.space_virtual_blocks.3.mlp.fc1.weight": (1536, 384),
    "time_emb": (1, 8, 456), "pos_emb": (1, 456, 96, 128), "norm.weight": (128,),
    "track_feat_updater.0.weight": (128, 128), "vis_predictor.0.weight": (1, 128),
}


@pytest.fixture(scope="module")
def cotracker_checkpoint(tmp_path_factory):
    from seppo_video.evaluation.networks.cotracker2 import CoTracker2

    torch.manual_seed(0)
    state = CoTracker2().state_dict()
    path = tmp_path_factory.mktemp("cotracker") / "cotracker2.pth"
    torch.save({"model": state}, path)
    return path, state


def test_cotracker2_has_the_released_layout_and_loads_strictly(cotracker_checkpoint, tmp_path):
    path, state = cotracker_checkpoint
    assert len(state) == 321
    assert {k: tuple(state[k].shape) for k in COTRACKER2_KEYS} == COTRACKER2_KEYS
    metric = chronomagic.CHScore(BackendSpec(path=str(path)), CPU)
    loaded = metric.tracker.model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in COTRACKER2_KEYS)
    broken = {k: v for k, v in state.items() if k != "updateformer.virual_tracks"}
    torch.save(broken, tmp_path / "cotracker2.pth")
    with pytest.raises(EvalError, match="missing key.*updateformer.virual_tracks"):
        chronomagic.CHScore(BackendSpec(path=str(tmp_path / "cotracker2.pth")), CPU)


def test_cotracker2_tables_and_grid_follow_the_formulas():
    from seppo_video.evaluation.networks.cotracker2 import grid_points, sincos_1d, sincos_2d

    positions = torch.arange(8, dtype=torch.float64)
    k = torch.arange(228, dtype=torch.float64)
    angles = positions[:, None] / 10000 ** (k / 228)[None]
    torch.testing.assert_close(sincos_1d(456, positions)[0].double(), torch.cat([angles.sin(), angles.cos()], 1),
                               rtol=0, atol=1e-6)
    table = sincos_2d(8, 3, 5)[0]  # channels 0-3 from x (column), 4-7 from y (row)
    torch.testing.assert_close(table[:, 2, 4], torch.cat([sincos_1d(4, torch.tensor([4.0]))[0, 0],
                                                          sincos_1d(4, torch.tensor([2.0]))[0, 0]]))
    grid = grid_points(30, 384, 512)  # margin 512 / 64 = 8 px
    assert grid.shape == (900, 2) and grid[0].tolist() == [8.0, 8.0] and grid[-1].tolist() == [504.0, 376.0]
    assert grid[1, 0] == pytest.approx(8 + 496 / 29) and grid[30, 1] == pytest.approx(8 + 368 / 29)


@pytest.mark.slow
def test_cotracker2_tracks_the_official_grid_end_to_end(cotracker_checkpoint):
    """Random weights through the whole tracker: the grid at frame 0 in video pixels, visible there."""
    path, _ = cotracker_checkpoint
    metric = chronomagic.CHScore(BackendSpec(path=str(path)), CPU)
    video = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(1, 8, 3, 48, 64))).float()
    tracks, visible = metric.tracker.track(video, 30)
    assert tracks.shape == (1, 8, 900, 2) and visible.shape == (1, 8, 900) and bool(visible[0, 0].all())
    from seppo_video.evaluation.networks.cotracker2 import grid_points

    expected = grid_points(30, 384, 512) * torch.tensor([63 / 511, 47 / 383])
    torch.testing.assert_close(tracks[0, 0], expected)
    assert torch.isfinite(tracks).all()


# ---------------------------------------------------------------- eval doctor


def test_doctor_checks_every_configured_file(released, tokenizer, tmp_path, capsys):
    import yaml
    from transformers import AutoTokenizer

    from seppo_video.evaluation.bench import main

    umt_path, _ = released
    broken = internvideo2_state(len(AutoTokenizer.from_pretrained(tokenizer)))
    del broken["vision_encoder.blocks.1.ls2.gamma"]
    torch.save(broken, tmp_path / "InternVideo2-stage2_1b-224p-f4.pt")
    torch.save({"fnet.conv1.weight": torch.zeros(1)}, tmp_path / "cotracker2.pth")
    torch.save(torch.zeros(150, 512).half(), tmp_path / "gt150_feats.pt")
    (tmp_path / "MTScore").mkdir()
    (tmp_path / "MTScore" / "step0-get_MTScore.py").write_text(f"text_candidates = {[str(i) for i in range(10)]!r}\n")
    config = {
        "chronomagic_repo": str(tmp_path),  # has no GPT4o_MTScore/ script
        "reference": {"umt_features": str(tmp_path / "gt150_feats.pt")},
        "weights": {
            "umt": {"path": str(umt_path), "tokenizer": tokenizer},
            "internvideo2": {"path": str(tmp_path / "InternVideo2-stage2_1b-224p-f4.pt"), "tokenizer": tokenizer},
            "cotracker": {"path": str(tmp_path / "cotracker2.pth")},
        },
    }
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    assert main(["doctor", "--config", str(tmp_path / "eval.yaml")]) == 1
    out = capsys.readouterr().out
    lines = {line.split(":")[0].split()[-1]: line for line in out.splitlines() if line[:1] in "oP-"}
    assert lines["weights.umt"].startswith("ok") and "tensors match" in lines["weights.umt"]
    assert "missing key(s) vision_encoder.blocks.1.ls2.gamma" in lines["weights.internvideo2"]
    assert "missing key(s)" in lines["weights.cotracker"]
    assert "(150, 512)" in lines["reference.umt_features"]
    assert "step1-get_temp_results.py" in lines["chronomagic_repo"]
    assert lines["weights.i3d"].startswith("-") and "BestWishYsh/ChronoMagic-Bench" in out
    assert "4 problem(s)" in out
    pinned = str(tmp_path / "eval.yaml")
    config["weights"]["umt"]["sha256"] = "0" * 64
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    assert main(["doctor", "--config", pinned, "--checksums"]) == 1
    out = capsys.readouterr().out
    assert "differs from weights.umt.sha256" in out
    import hashlib

    config["weights"]["umt"]["sha256"] = hashlib.sha256(umt_path.read_bytes()).hexdigest()
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    main(["doctor", "--config", pinned, "--checksums"])
    umt_line = next(line for line in capsys.readouterr().out.splitlines() if "weights.umt:" in line)
    assert umt_line.startswith("ok") and f"sha256 {config['weights']['umt']['sha256']}" in umt_line
