"""CoTracker2 (Karaev et al., "CoTracker: It is Better to Track Together"), loading the released ``cotracker2.pth``.

Written from the paper and the configuration the benchmark builds
(``CoTracker2(stride=4, window_len=8, add_space_attn=True)``: 64 virtual
tracks, model resolution 384×512, latent 128, transformer width 384 with 8
heads of 48, input width 456, 6 time and 6 space blocks) and its predictor's
call (``grid_size=30``, no support grid, 6 refinement iterations,
visibility > 0.9):

- a CNN (``fnet``) gives stride-4 feature maps of every frame;
- per sliding window of 8 frames (step 4), each point carries a feature
  sampled at its query; a 4-level correlation pyramid (radius 3) around its
  current estimate, its flow embedding, that feature and its mask/visibility
  channels, plus fixed position and time tables, go through the
  update transformer (time attention per track, then space attention through
  64 virtual tracks), whose output updates positions and features;
- the last window values are the tracks; ``sigmoid`` of the visibility head.

Key names and shapes are the checkpoint's; it loads strictly.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from seppo_video.evaluation.networks.checkpoints import load_strict, read_state_dict

WHAT = "weights.cotracker (CoTracker2)"
STRIDE, WINDOW, LATENT, HIDDEN, HEADS, INPUT = 4, 8, 128, 384, 8, 456
VIRTUAL_TRACKS, DEPTH, LEVELS, RADIUS, ITERS = 64, 6, 4, 3, 6
RESOLUTION = (384, 512)
VISIBLE = 0.9  # the predictor's threshold on the visibility probability


# ---------------------------------------------------------------- fixed tables and sampling


def sincos_1d(width: int, positions: torch.Tensor) -> torch.Tensor:
    """``[1, M, width]``: sines then cosines of ``position / 10000^(2k / width)``, k < width / 2."""
    omega = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float64, device=positions.device) / (width / 2.0))
    angles = positions.reshape(-1).double()[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)[None].float()


def sincos_2d(width: int, height: int, breadth: int) -> torch.Tensor:
    """``[1, width, height, breadth]``: half the channels from x, half from y."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32, device="cpu"),
                            torch.arange(breadth, dtype=torch.float32, device="cpu"), indexing="ij")
    table = torch.cat([sincos_1d(width // 2, xs), sincos_1d(width // 2, ys)], dim=2)
    return table.reshape(1, height, breadth, width).permute(0, 3, 1, 2)


def flow_embedding(flows: torch.Tensor, width: int = 64) -> torch.Tensor:
    """``[..., 2 + 2·width]``: the flow itself, then interleaved sin/cos of ``x·k·1000/width`` and of ``y``."""
    frequencies = torch.arange(0, width, 2, device=flows.device, dtype=torch.float32) * (1000.0 / width)

    def interleaved(v: torch.Tensor) -> torch.Tensor:
        angles = v * frequencies
        return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)

    return torch.cat([flows, interleaved(flows[..., 0:1]), interleaved(flows[..., 1:2])], dim=-1)


def sample(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples at pixel-centre coordinates (0 … size − 1), border padding.

    ``features [B, C, H, W]`` with ``points [B, ..., 2]`` (x, y), or ``[B, C, T, H, W]`` with ``(t, x, y)``.
    """
    sizes = features.shape[2:]
    if len(sizes) == 3:
        points = points[..., [1, 2, 0]]
    scale = torch.tensor([2 / max(size - 1, 1) for size in reversed(sizes)], device=points.device)
    return F.grid_sample(features, points * scale - 1, align_corners=True, padding_mode="border")


def grid_points(size: int, height: int, width: int) -> torch.Tensor:
    """``[size², 2]`` (x, y), row-major: a regular grid with a margin of ``width / 64`` on every side."""
    margin = width / 64
    ys, xs = torch.meshgrid(torch.linspace(margin, height - margin, size), torch.linspace(margin, width - margin, size),
                            indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


# ---------------------------------------------------------------- feature CNN


class ResidualBlock(nn.Module):
    def __init__(self, inputs: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, planes, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1)
        self.downsample = nn.Sequential(nn.Conv2d(inputs, planes, kernel_size=1, stride=stride),
                                        nn.InstanceNorm2d(planes)) if stride != 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(F.instance_norm(self.conv1(x)))
        y = F.relu(F.instance_norm(self.conv2(y)))
        return F.relu((self.downsample(x) if self.downsample is not None else x) + y)


def _stage(inputs: int, planes: int, stride: int) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(inputs, planes, stride), ResidualBlock(planes, planes, 1))


class BasicEncoder(nn.Module):
    """Instance-normalised residual CNN; the four stages' maps, resized to stride 4, fused to 128 channels."""

    def __init__(self):
        super().__init__()
        half, three_quarters = LATENT // 2, LATENT // 4 * 3
        self.conv1 = nn.Conv2d(3, half, kernel_size=7, stride=2, padding=3)
        self.layer1, self.layer2 = _stage(half, half, 1), _stage(half, three_quarters, 2)
        self.layer3, self.layer4 = _stage(three_quarters, LATENT, 2), _stage(LATENT, LATENT, 2)
        self.conv2 = nn.Conv2d(half + three_quarters + 2 * LATENT, 2 * LATENT, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(2 * LATENT, LATENT, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2] // STRIDE, x.shape[3] // STRIDE)
        stages = [F.relu(F.instance_norm(self.conv1(x)))]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            stages.append(layer(stages[-1]))
        maps = [F.interpolate(s, size, mode="bilinear", align_corners=True) for s in stages[1:]]
        return self.conv3(F.relu(F.instance_norm(self.conv2(torch.cat(maps, dim=1)))))


# ---------------------------------------------------------------- update transformer


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.to_q = nn.Linear(HIDDEN, HIDDEN)
        self.to_kv = nn.Linear(HIDDEN, 2 * HIDDEN)
        self.to_out = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(t.shape[0], t.shape[1], HEADS, -1).transpose(1, 2)

        k, v = self.to_kv(context).chunk(2, dim=-1)
        q = heads(self.to_q(x))
        scores = q @ heads(k).transpose(-2, -1) * q.shape[-1] ** -0.5
        weights = (scores if bias is None else scores + bias).softmax(dim=-1)
        return self.to_out((weights @ heads(v)).transpose(1, 2).reshape(x.shape))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(HIDDEN, 4 * HIDDEN), nn.Linear(4 * HIDDEN, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def _norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)  # the blocks' norms have no affine parameters


class AttnBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.mlp = Attention(), Mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(_norm(x), _norm(x))
        return x + self.mlp(_norm(x))


class CrossAttnBlock(nn.Module):
    """``x`` attends to ``context``; ``mask [B, points]`` hides masked points (as keys or as queries)."""

    def __init__(self):
        super().__init__()
        self.norm_context = nn.LayerNorm(HIDDEN)
        self.cross_attn, self.mlp = Attention(), Mlp()

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.cross_attn(_norm(x), self.norm_context(context), bias)
        return x + self.mlp(_norm(x))


class EfficientUpdateFormer(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_transform = nn.Linear(INPUT, HIDDEN)
        self.flow_head = nn.Linear(HIDDEN, LATENT + 2)
        self.virual_tracks = nn.Parameter(torch.zeros(1, VIRTUAL_TRACKS, 1, HIDDEN))  # the checkpoint's spelling
        self.time_blocks = nn.ModuleList(AttnBlock() for _ in range(DEPTH))
        self.space_virtual_blocks = nn.ModuleList(AttnBlock() for _ in range(DEPTH))
        self.space_point2virtual_blocks = nn.ModuleList(CrossAttnBlock() for _ in range(DEPTH))
        self.space_virtual2point_blocks = nn.ModuleList(CrossAttnBlock() for _ in range(DEPTH))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x [B, N, T, 456]``, ``mask [B·T, N]`` (tracks that exist) -> ``[B, N, T, 130]``."""
        batch, points, frames, _ = x.shape
        tokens = torch.cat([self.input_transform(x), self.virual_tracks.repeat(batch, 1, frames, 1)], dim=1)
        hidden = -torch.finfo(tokens.dtype).max * ~mask  # masked points: as keys and as queries
        as_keys, as_queries = hidden[:, None, None, :], hidden[:, None, :, None]
        for time, virtual_self, to_virtual, to_points in zip(self.time_blocks, self.space_virtual_blocks,
                                                            self.space_virtual2point_blocks,
                                                            self.space_point2virtual_blocks):
            tokens = time(tokens.reshape(-1, frames, HIDDEN)).view(batch, -1, frames, HIDDEN)
            space = tokens.permute(0, 2, 1, 3).reshape(batch * frames, -1, HIDDEN)
            point, virtual = space[:, :points], space[:, points:]
            virtual = virtual_self(to_virtual(virtual, point, as_keys))
            point = to_points(point, virtual, as_queries)
            tokens = torch.cat([point, virtual], dim=1).view(batch, frames, -1, HIDDEN).permute(0, 2, 1, 3)
        return self.flow_head(tokens[:, :points])


# ---------------------------------------------------------------- the tracker


def correlation_pyramid(fmaps: torch.Tensor) -> list[torch.Tensor]:
    levels = [fmaps]
    for _ in range(LEVELS - 1):
        pooled = F.avg_pool2d(levels[-1].flatten(0, 1), 2, stride=2)
        levels.append(pooled.view(*fmaps.shape[:2], *pooled.shape[1:]))
    return levels


def correlation_features(pyramid: list[torch.Tensor], track_feat: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """``[B·N, S, 4·49]``: each level's correlation with the track feature, sampled on a 7×7 window.

    The window's offsets are added as ``(x + d_row, y + d_col)`` over row-major
    ``(d_row, d_col)``, the benchmark's order.
    """
    batch, frames, points, channels = track_feat.shape
    offsets = torch.linspace(-RADIUS, RADIUS, 2 * RADIUS + 1, device=coords.device)
    window = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1)
    sampled = []
    for level, fmaps in enumerate(pyramid):
        height, width = fmaps.shape[-2:]
        corr = (track_feat @ fmaps.reshape(batch, frames, channels, -1)) / channels**0.5
        centres = coords.reshape(-1, 1, 1, 2) / 2**level + window
        values = sample(corr.reshape(-1, 1, height, width), centres)
        sampled.append(values.view(batch, frames, points, -1))
    return torch.cat(sampled, dim=-1).permute(0, 2, 1, 3).reshape(batch * points, frames, -1).float()


class CoTracker2(nn.Module):
    def __init__(self):
        super().__init__()
        self.fnet = BasicEncoder()
        self.updateformer = EfficientUpdateFormer()
        # Fixed tables, computed on the CPU whatever the construction device (the checkpoint holds them too).
        positions = torch.linspace(0, WINDOW - 1, WINDOW, device="cpu")
        self.register_buffer("time_emb", sincos_1d(INPUT, positions))
        self.register_buffer("pos_emb", sincos_2d(INPUT, RESOLUTION[0] // STRIDE, RESOLUTION[1] // STRIDE))
        self.norm = nn.GroupNorm(1, LATENT)
        self.track_feat_updater = nn.Sequential(nn.Linear(LATENT, LATENT), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(LATENT, 1))

    def refine(self, fmaps: torch.Tensor, coords: torch.Tensor, track_feat: torch.Tensor, vis: torch.Tensor,
               track_mask: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One window: ``ITERS`` updates of positions and features; returns last coords (pixels) and logits."""
        batch, frames, points, _ = coords.shape
        flags = torch.cat([track_mask.float(), vis], dim=-1).permute(0, 2, 1, 3).reshape(batch * points, frames, 2)
        pyramid = correlation_pyramid(fmaps)
        position = sample(self.pos_emb.repeat(batch, 1, 1, 1), coords[:, 0].unsqueeze(2))
        position = position.permute(0, 2, 1, 3).reshape(batch * points, 1, INPUT)
        for _ in range(ITERS):
            flows = (coords - coords[:, 0:1]).permute(0, 2, 1, 3).reshape(batch * points, frames, 2)
            own = track_feat.permute(0, 2, 1, 3).reshape(batch * points, frames, LATENT)
            x = torch.cat([flow_embedding(flows), correlation_features(pyramid, track_feat, coords), own, flags], dim=2)
            x = (x + position + self.time_emb).view(batch, points, frames, INPUT)
            delta = self.updateformer(x, attention_mask.reshape(batch * frames, points))
            coords = coords + delta[..., :2].permute(0, 2, 1, 3)
            update = self.track_feat_updater(self.norm(delta[..., 2:].reshape(-1, LATENT)))
            track_feat = (update + own.reshape(-1, LATENT)).view(batch, points, frames, LATENT).permute(0, 2, 1, 3)
        return coords * STRIDE, self.vis_predictor(track_feat).reshape(batch, frames, points)

    def forward(self, video: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``video [B, T, 3, 384, 512]`` in [0, 255], ``queries [B, N, 3]`` (t, x, y) -> tracks, visibility."""
        batch, frames = video.shape[:2]
        step, overlap = WINDOW // 2, WINDOW - WINDOW // 2
        padded = torch.cat([video, video[:, -1:].expand(-1, (WINDOW - frames % WINDOW) % WINDOW, -1, -1, -1)], dim=1)
        fmaps = self.fnet((2 * (padded / 255.0) - 1.0).flatten(0, 1))
        fmaps = fmaps.view(batch, -1, *fmaps.shape[1:])
        query_frames, query_coords = queries[..., 0].long(), queries[..., 1:] / STRIDE
        points = queries.shape[1]
        at_query = torch.cat([query_frames[:, None, :, None].float(), query_coords[:, None]], dim=-1)
        track_feat = sample(fmaps.permute(0, 2, 1, 3, 4), at_query.unsqueeze(3))
        track_feat = track_feat.permute(0, 2, 3, 1, 4).reshape(batch, 1, points, LATENT).repeat(1, WINDOW, 1, 1)
        tracks = torch.zeros(batch, frames, points, 2, device=video.device)
        logits = torch.zeros(batch, frames, points, device=video.device)
        coords_init = query_coords[:, None].expand(batch, WINDOW, points, 2).float()
        vis_init = torch.full((batch, WINDOW, points, 1), 10.0, device=video.device)
        windows = (frames - WINDOW + step - 1) // step + 1
        for start in range(0, step * windows, step):
            if start > 0:  # the overlap starts from the previous window's estimates
                carried = (query_frames < start + overlap)[:, None, :, None]
                coords_init = torch.where(carried, _hold_last(tracks[:, start : start + overlap] / STRIDE, step),
                                          coords_init)
                vis_init = torch.where(carried, _hold_last(logits[:, start : start + overlap, :, None], step), vis_init)
            exists = (query_frames < start + WINDOW)[:, None].repeat(1, WINDOW, 1)
            track_mask = query_frames[:, None, :, None] <= torch.arange(start, start + WINDOW, device=video.device)[
                None, :, None, None]
            if start > 0:
                track_mask[:, :overlap] = False
            coords, vis = self.refine(fmaps[:, start : start + WINDOW], coords_init, exists.unsqueeze(-1) * track_feat,
                                      vis_init, track_mask, exists)
            kept = min(frames - start, WINDOW)
            tracks[:, start : start + WINDOW], logits[:, start : start + WINDOW] = coords[:, :kept], vis[:, :kept]
        return tracks, torch.sigmoid(logits)


def _hold_last(x: torch.Tensor, extra: int) -> torch.Tensor:
    """``x [B, S, ...]`` followed by ``extra`` copies of its last frame."""
    return torch.cat([x, x[:, -1:].expand(-1, extra, *x.shape[2:])], dim=1)


class CoTracker2Predictor(nn.Module):
    """The benchmark's call of the predictor: its own grid on frame 0 at model resolution, no support grid."""

    def __init__(self, model: CoTracker2):
        super().__init__()
        self.model = model

    @torch.no_grad()
    def track(self, video: torch.Tensor, grid_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch, frames, _, height, width = video.shape
        resized = F.interpolate(video.flatten(0, 1), RESOLUTION, mode="bilinear", align_corners=True)
        grid = grid_points(grid_size, *RESOLUTION).to(video.device)
        queries = torch.cat([torch.zeros_like(grid[:, :1]), grid], dim=1)[None].repeat(batch, 1, 1)
        tracks, visibility = self.model(resized.view(batch, frames, 3, *RESOLUTION), queries)
        visible = visibility > VISIBLE
        tracks[:, 0], visible[:, 0] = queries[..., 1:], True  # the query points themselves, at their frame
        scale = tracks.new_tensor([(width - 1) / (RESOLUTION[1] - 1), (height - 1) / (RESOLUTION[0] - 1)])
        return tracks * scale, visible


def load_cotracker2(path: str | Path, device: torch.device) -> CoTracker2Predictor:
    """CoTracker2 from the released ``cotracker2.pth`` (bare, or under ``model``), loaded strictly."""
    model = CoTracker2()
    load_strict(model, read_state_dict(path, WHAT), WHAT, path)
    return CoTracker2Predictor(model.eval()).to(device)
