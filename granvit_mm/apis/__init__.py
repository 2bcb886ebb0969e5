"""Inference: ask a GranViT checkpoint about images (captions, grounding) and look at its dense features.

- :class:`GranViTInferencer`: config + checkpoint -> region captions, global caption, grounding.
- :class:`DenseFeatureExtractor`: the encoder alone (stage-1 checkpoints, downstream configs, converted
  SigLIP2).
- :func:`feature_view` / :func:`pca_rgb` / :func:`side_by_side`: DINOv2-style PCA pictures.
- :func:`draw_result`: boxes and texts drawn on the image.
- :class:`InferenceInputError`: the one error for bad inputs.
- :func:`register_chat_model_loader`: the loaders of each kind of model ('stage1', 'stage2' XTuner
  checkpoints, 'hf_llava' transformers exports).
- :class:`PipelinePreprocessor` / :class:`ImageProcessorPreprocessor`: pre-processing built from the config.
"""
from . import llava_chat_models  # noqa: F401  (registers the 'stage2' and 'hf_llava' loaders)
from .chat_model import (CHAT_MODEL_LOADERS, Stage1ChatModel, VisionChatModel, build_chat_model, detect_stage,
                         is_hf_llava_dir, register_chat_model_loader)
from .checkpoint import find_checkpoint, load_checkpoint_dict
from .dense_features import DenseFeatureExtractor, DenseFeatures
from .drawing import draw_result
from .errors import InferenceInputError
from .feature_view import feature_view, pca_components, pca_rgb, side_by_side
from .granvit_inferencer import GranViTInferencer
from .inputs import DEFAULT_MAX_PIXELS, check_boxes, check_phrase, list_images, load_image, parse_box_text
from .preprocessing import ImageProcessorPreprocessor, PipelinePreprocessor

__all__ = [
    'GranViTInferencer', 'DenseFeatureExtractor', 'DenseFeatures', 'InferenceInputError', 'VisionChatModel',
    'Stage1ChatModel', 'build_chat_model', 'register_chat_model_loader', 'CHAT_MODEL_LOADERS',
    'find_checkpoint', 'load_checkpoint_dict', 'draw_result', 'feature_view', 'pca_components', 'pca_rgb',
    'side_by_side',
    'DEFAULT_MAX_PIXELS', 'check_boxes', 'check_phrase', 'list_images', 'load_image', 'parse_box_text',
    'PipelinePreprocessor', 'ImageProcessorPreprocessor', 'is_hf_llava_dir', 'detect_stage'
]
