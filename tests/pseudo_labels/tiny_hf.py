"""Tiny, randomly initialised Grounding DINO and SAM saved like downloaded checkpoints."""

from __future__ import annotations

from pathlib import Path

IMAGE_SIZE = 128
VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".",
    "sky", "building", "road", "side", "walk", "sidewalk", "tree", "car", "pole", "person",
]  # fmt: skip


def save_tiny_detector(folder: Path, *, max_text_len: int = 64) -> Path:
    import torch
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        SwinConfig,
    )

    backbone = SwinConfig(
        embed_dim=32,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        image_size=IMAGE_SIZE,
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=max_text_len,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,  # a multiple of 32
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=12,
        max_text_len=max_text_len,
    )
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)})
    images = GroundingDinoImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE, "longest_edge": 2 * IMAGE_SIZE}
    )
    GroundingDinoProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def save_tiny_segmenter(folder: Path) -> Path:
    import torch
    from transformers import (
        SamConfig,
        SamImageProcessorPil,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    vision = SamVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=16,
        output_channels=32,
        global_attn_indexes=[1],
        mlp_dim=64,
        window_size=4,
        num_pos_feats=16,
    )
    prompt = SamPromptEncoderConfig(hidden_size=32, image_size=IMAGE_SIZE, patch_size=16)
    decoder = SamMaskDecoderConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_dim=64,
        iou_head_hidden_dim=32,
    )
    torch.manual_seed(0)
    config = SamConfig(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder
    )
    SamModel(config).save_pretrained(folder)
    mask_side = IMAGE_SIZE // 4
    images = SamImageProcessorPil(
        size={"longest_edge": IMAGE_SIZE},
        pad_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        mask_size={"longest_edge": mask_side},
        mask_pad_size={"height": mask_side, "width": mask_side},
    )
    SamProcessor(image_processor=images).save_pretrained(folder)
    return folder
