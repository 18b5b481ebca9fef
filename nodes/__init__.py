"""ComfyUI node adapters over relumix_core (classic node API).

Load -> ReferenceReplace -> EmbeddingFuse -> ReLumixSampler: a video and one relit frame in, the relit video out.
ComfyUI itself is only touched through :mod:`.services`, at call time, so the pack imports without it.
"""

from .conditioning import EmbeddingFuse
from .loader import LoadReLumixModel
from .reference import ReferenceReplace
from .relight import ReLumixSimpleRelight
from .sampler import ReLumixSampler

NODE_CLASS_MAPPINGS: dict[str, type] = {
    "LoadReLumixModel": LoadReLumixModel,
    "ReferenceReplace": ReferenceReplace,
    "EmbeddingFuse": EmbeddingFuse,
    "ReLumixSampler": ReLumixSampler,
    "ReLumixSimpleRelight": ReLumixSimpleRelight,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "LoadReLumixModel": "Load ReLumix Model",
    "ReferenceReplace": "ReLumix Reference Replace",
    "EmbeddingFuse": "ReLumix Embedding Fuse",
    "ReLumixSampler": "ReLumix Sampler",
    "ReLumixSimpleRelight": "ReLumix Simple Relight (image)",
}
