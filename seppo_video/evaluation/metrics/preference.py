"""Per-frame preference / alignment scores: CLIP score, PickScore, HPSv2.

ChronoMagic's metrics say how much a video changes and how coherent it is;
these say whether each frame is an image people (or CLIP) judge to match the
prompt, which is what preference alignment optimises. Each video's score is
the mean over its scored frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seppo_video.evaluation.backends import BackendSpec
from seppo_video.evaluation.errors import EvalError
from seppo_video.evaluation.metrics.base import VideoItem
from seppo_video.evaluation.video import evenly_spaced_indices


def pick_frames(frames: np.ndarray, limit: int | None) -> np.ndarray:
    """All frames, or ``limit`` evenly spaced ones."""
    if limit is None or limit >= len(frames):
        return frames
    return frames[evenly_spaced_indices(len(frames), limit)]


class ClipFamilyScore:
    """CLIP score or PickScore from a ``transformers`` CLIP folder.

    ``clip_score``: ``100 · max(cos, 0)`` (Hessel et al., torchmetrics' definition).
    ``pickscore``: ``exp(logit_scale) · cos`` (PickScore's definition; its model
    is a fine-tuned CLIP-H, its processor that of ``laion/CLIP-ViT-H-14``).
    """

    needs_reference = False

    def __init__(self, name: str, spec: BackendSpec, device: torch.device, frames: int | None):
        from transformers import CLIPModel, CLIPProcessor

        what = f"weights.{'clip' if name == 'clip_score' else name}"
        folder = Path(str(spec.path))
        if not (folder / "config.json").is_file():
            raise EvalError(f"{what}: {folder} is not a transformers CLIPModel folder (no config.json)")
        processor = spec.processor or str(folder)
        self.model = CLIPModel.from_pretrained(str(folder), local_files_only=True).to(device).eval()
        self.processor = CLIPProcessor.from_pretrained(processor, local_files_only=True)
        self.name, self.spec, self.device, self.frames = name, spec, device, frames

    def fingerprint(self) -> dict[str, Any]:
        return {"weights": self.spec.path, "processor": self.spec.processor, "frames": self.frames}

    @torch.no_grad()
    def cosines(self, frames: np.ndarray, prompt: str) -> torch.Tensor:
        """Cosine similarity of each frame to the prompt in CLIP space, ``[F]``."""
        inputs = self.processor(
            text=[prompt], images=list(frames), return_tensors="pt", padding=True, truncation=True, max_length=77
        ).to(self.device)
        outputs = self.model(**inputs)
        image = F.normalize(outputs.image_embeds.float(), dim=-1)
        text = F.normalize(outputs.text_embeds.float(), dim=-1)
        return (image @ text.T)[:, 0]

    @torch.no_grad()
    def score(self, item: VideoItem) -> dict[str, float]:
        cos = self.cosines(pick_frames(item.frames, self.frames), item.prompt)
        if self.name == "clip_score":
            values = 100.0 * cos.clamp(min=0.0)
        else:
            values = self.model.logit_scale.exp().float() * cos
        return {"score": float(values.mean())}


class HPSv2Score:
    """HPS v2 / v2.1: cosine of open_clip ViT-H-14 features after loading the HPS checkpoint.

    Needs ``open_clip_torch`` (which brings torchvision); the architecture is
    built without pretrained weights and the local HPS checkpoint is loaded
    on top, so nothing is downloaded.
    """

    name = "hpsv2"
    needs_reference = False

    def __init__(self, spec: BackendSpec, device: torch.device, frames: int | None):
        try:
            import open_clip
        except ImportError as err:
            raise EvalError("weights.hpsv2: HPSv2 needs open_clip_torch (pip install open_clip_torch)") from err
        checkpoint = Path(str(spec.path))
        if not checkpoint.is_file():
            raise EvalError(f"weights.hpsv2: checkpoint not found: {checkpoint}")
        model, _, self.preprocess = open_clip.create_model_and_transforms("ViT-H-14", pretrained=None)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)  # never unpickle objects
        model.load_state_dict(state.get("state_dict", state))
        self.model = model.to(device).eval()
        self.tokenizer = open_clip.get_tokenizer("ViT-H-14")
        self.spec, self.device, self.frames = spec, device, frames

    def fingerprint(self) -> dict[str, Any]:
        return {"weights": self.spec.path, "frames": self.frames}

    @torch.no_grad()
    def score(self, item: VideoItem) -> dict[str, float]:
        from PIL import Image

        frames = pick_frames(item.frames, self.frames)
        images = torch.stack([self.preprocess(Image.fromarray(f)) for f in frames]).to(self.device)
        image = F.normalize(self.model.encode_image(images).float(), dim=-1)
        text = F.normalize(self.model.encode_text(self.tokenizer([item.prompt]).to(self.device)).float(), dim=-1)
        return {"score": float((image @ text.T).mean())}
