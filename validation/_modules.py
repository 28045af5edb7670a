"""torch modules of the DeepSeek-OCR v1 reference model; imported lazily by reference_model.

The deviations from transformers' stock modules are explained in reference_model's docstring.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig
from transformers.models.clip.modeling_clip import CLIPEncoder, CLIPVisionEmbeddings
from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import (
    DeepseekOcr2SamVisionConfig,
    DeepseekOcr2TextConfig,
)
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import (
    DeepseekOcr2SamLayerNorm,
    DeepseekOcr2SamVisionEncoder,
    DeepseekOcr2TextAttention,
    DeepseekOcr2TextModel,
    DeepseekOcr2TextRotaryEmbedding,
)

from derivations.deepseek_ocr import CONFIG  # the vendor's config.json: every size below

HIDDEN = CONFIG["hidden_size"]
_SAM = CONFIG["vision_config"]["width"]["sam_vit_b"]
_CLIP = CONFIG["vision_config"]["width"]["clip-l-14-224"]


def sam_config():
    """SAM ViT-B as DeepSeek-OCR v1 builds it (net_2 512, net_3 1024)."""
    cfg = DeepseekOcr2SamVisionConfig(
        hidden_size=_SAM["width"],
        output_channels=256,
        num_hidden_layers=_SAM["layers"],
        num_attention_heads=_SAM["heads"],
        image_size=CONFIG["vision_config"]["image_size"],
        patch_size=16,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        qkv_bias=True,
        mlp_ratio=4.0,
        use_abs_pos=True,
        use_rel_pos=True,
        window_size=14,
        global_attn_indexes=_SAM["global_attn_indexes"],
        downsample_channels=_SAM["downsample_channels"],
    )
    cfg._attn_implementation = "sdpa"  # vendor: F.scaled_dot_product_attention, rel-pos bias as mask
    return cfg


def clip_config():
    """CLIP-L/14-224 as in the vendor's vit_model_cfg."""
    cfg = CLIPVisionConfig(
        hidden_size=_CLIP["width"],
        intermediate_size=4 * _CLIP["width"],
        num_hidden_layers=_CLIP["layers"],
        num_attention_heads=_CLIP["heads"],
        image_size=_CLIP["image_size"],
        patch_size=_CLIP["patch_size"],
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )
    cfg._attn_implementation = "sdpa"
    return cfg


def text_config():
    """v1 decoder: DeepSeek-V2 without MLA, 1 dense + 11 MoE layers, from the vendor's config."""
    c = CONFIG
    dense = c["first_k_dense_replace"]
    cfg = DeepseekOcr2TextConfig(
        vocab_size=c["vocab_size"],
        hidden_size=HIDDEN,
        intermediate_size=c["intermediate_size"],
        moe_intermediate_size=c["moe_intermediate_size"],
        num_hidden_layers=c["num_hidden_layers"],
        num_attention_heads=c["num_attention_heads"],
        num_key_value_heads=c["num_key_value_heads"],
        n_routed_experts=c["n_routed_experts"],
        n_shared_experts=c["n_shared_experts"],
        num_experts_per_tok=c["num_experts_per_tok"],
        n_group=c["n_group"],
        topk_group=c["topk_group"],
        topk_method=c["topk_method"],
        routed_scaling_factor=c["routed_scaling_factor"],
        mlp_layer_types=["dense"] * dense + ["sparse"] * (c["num_hidden_layers"] - dense),
        max_position_embeddings=c["max_position_embeddings"],
        rms_norm_eps=c["rms_norm_eps"],
        attention_bias=c["attention_bias"],
        rope_parameters={"rope_type": "default", "rope_theta": c["rope_theta"]},
        tie_word_embeddings=c["tie_word_embeddings"],
        bos_token_id=c["bos_token_id"],
        eos_token_id=c["eos_token_id"],
    )
    cfg._attn_implementation = "eager"
    cfg._experts_implementation = "batched_mm"  # shape-static (runs on meta): 6*S rows, one expert each
    return cfg


class LayerNorm2d(DeepseekOcr2SamLayerNorm):
    """Channel LayerNorm from elementwise ops, as the vendor's neck computes it."""

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def build_sam():
    """SAM-B encoder with neck, net_2 (proj.conv1) and net_3 (proj.conv2)."""
    sam = DeepseekOcr2SamVisionEncoder(sam_config())
    sam.neck.layer_norm1 = LayerNorm2d(256, data_format="channels_first")
    sam.neck.layer_norm2 = LayerNorm2d(256, data_format="channels_first")
    return sam


class ClipL(nn.Module):
    """CLIP-L whose patch tokens are the SAM map; its own patch conv is kept but never run."""

    def __init__(self):
        super().__init__()
        cfg = clip_config()
        self.embeddings = CLIPVisionEmbeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(cfg.hidden_size, eps=1e-5)
        self.encoder = CLIPEncoder(cfg)

    def position_embeddings(self, grid: int):
        """[1, 1+grid^2, 1024]; the 16x16 part resized bicubic+antialias in fp32 when grid != 16."""
        table = self.embeddings.position_embedding.weight
        src = int((table.shape[0] - 1) ** 0.5)
        if grid == src:
            return table[None]
        old = table[1:].reshape(1, src, src, -1).permute(0, 3, 1, 2).float()
        new = F.interpolate(old, size=(grid, grid), mode="bicubic", antialias=True, align_corners=False)
        new = new.to(table.dtype).permute(0, 2, 3, 1).reshape(grid * grid, -1)
        return torch.cat([table[:1], new])[None]

    def forward(self, sam_map):
        batch, _, grid, _ = sam_map.shape
        tokens = sam_map.flatten(2).transpose(1, 2)
        cls = self.embeddings.class_embedding.expand(batch, 1, -1)
        x = torch.cat([cls, tokens], dim=1) + self.position_embeddings(grid)
        return self.encoder(inputs_embeds=self.pre_layrnorm(x)).last_hidden_state


class VisionTower(nn.Module):
    """SAM -> CLIP -> linear projector for one batch of views."""

    def __init__(self):
        super().__init__()
        self.sam = build_sam()
        self.clip = ClipL()
        self.projector = nn.Linear(2048, HIDDEN)

    def forward(self, pixels):
        sam_map = self.sam(pixels).last_hidden_state
        clip_tokens = self.clip(sam_map)[:, 1:]
        return self.projector(torch.cat([clip_tokens, sam_map.flatten(2).transpose(1, 2)], dim=-1))


class MatmulRotary(DeepseekOcr2TextRotaryEmbedding):
    """cos/sin via inv_freq @ positions (a bmm), as the vendor's Llama rotary does."""

    def forward(self, x, position_ids):
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        freqs = (inv @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


class LayerRopeAttention(DeepseekOcr2TextAttention):
    """MHA that recomputes RoPE cos/sin in every layer, as the vendor's LlamaAttention does."""

    def __init__(self, config, layer_idx):
        super().__init__(config, layer_idx)
        self.rotary_emb = MatmulRotary(config)

    def forward(self, hidden_states, position_embeddings=None, position_ids=None, **kwargs):
        cos_sin = self.rotary_emb(hidden_states, position_ids)
        return super().forward(hidden_states, position_embeddings=cos_sin, **kwargs)


def causal_mask(inputs_embeds, past):
    """Additive [1,1,S,past+S] causal mask (transformers' mask builder reads values meta lacks)."""
    s_new = inputs_embeds.shape[1]
    full = torch.full(
        (s_new, past + s_new),
        torch.finfo(inputs_embeds.dtype).min,
        device=inputs_embeds.device,
        dtype=inputs_embeds.dtype,
    )
    return full.triu(past + 1)[None, None]


class LanguageModel(nn.Module):
    """12-layer decoder plus untied lm_head applied to every position."""

    def __init__(self):
        super().__init__()
        cfg = text_config()
        self.model = DeepseekOcr2TextModel(cfg)
        for i, layer in enumerate(self.model.layers):
            layer.self_attn = LayerRopeAttention(cfg, i)
        self.lm_head = nn.Linear(HIDDEN, cfg.vocab_size, bias=False)

    def forward(self, inputs_embeds, past_key_values=None):
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        mask = causal_mask(inputs_embeds, past)
        out = self.model(
            inputs_embeds=inputs_embeds,
            past_key_values=past_key_values,
            attention_mask=mask,
            use_cache=past_key_values is not None,
        )
        return self.lm_head(out.last_hidden_state)


class DeepseekOcrV1(nn.Module):
    """Whole v1 model: vision tower, layout vectors, language model."""

    def __init__(self):
        super().__init__()
        self.vision = VisionTower()
        self.image_newline = nn.Parameter(torch.zeros(HIDDEN))
        self.view_seperator = nn.Parameter(torch.zeros(HIDDEN))  # vendor spelling
        self.language = LanguageModel()
