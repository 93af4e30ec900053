"""GFTI's ComfyUI nodes (V1 API): one flat module per node, all in category "GFTI", ids prefixed "GFTI"."""
from .encode import GFTIEncodeWithInversion
from .es_step import GFTIESOptimizeStep
from .initialize import GFTIInitializeInversion
from .load_images import GFTILoadTrainingImages
from .save_embedding import GFTISaveEmbedding
from .settings import GFTISettings

_NODES = {
    "GFTILoadTrainingImages": (GFTILoadTrainingImages, "GFTI Load Training Images"),
    "GFTISettings": (GFTISettings, "GFTI Settings"),
    "GFTIInitializeInversion": (GFTIInitializeInversion, "GFTI Initialize Inversion"),
    "GFTIESOptimizeStep": (GFTIESOptimizeStep, "GFTI ES Optimize Step"),
    "GFTISaveEmbedding": (GFTISaveEmbedding, "GFTI Save Embedding"),
    "GFTIEncodeWithInversion": (GFTIEncodeWithInversion, "GFTI Encode With Inversion"),
}
NODE_CLASS_MAPPINGS = {key: cls for key, (cls, _) in _NODES.items()}
NODE_DISPLAY_NAME_MAPPINGS = {key: title for key, (_, title) in _NODES.items()}
