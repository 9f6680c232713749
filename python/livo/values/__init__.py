"""Value principles and adaptive value selection.

A registry (YAML) lists the value principles; :func:`build_index` embeds their exemplars into a
FAISS index saved as a folder, with a value classifier fitted on labelled prompts;
:class:`ValueSelector` loads it and decides, per prompt, every value that applies (harm values
first; none for a benign prompt) from keywords, retrieval, the classifier and stated attributes,
with an optional judge for borderline prompts. Heavy libraries
(torch, faiss, sentence-transformers) are imported only when an embedder or index is used.
"""

from livo.value_types import ValueChoice
from livo.values.aligned_prompt import aligned_prompt
from livo.values.classifier import ValueClassifier
from livo.values.embedders import Embedder, EmbedderIdentity, load_embedder
from livo.values.index import ValueIndex, build_index, load_index, save_index
from livo.values.registry import (
    Registry,
    ValuePrinciple,
    builtin_registry_path,
    load_registry,
    parse_registry,
)
from livo.values.selector import Selection, ValueDecision, ValueJudge, ValueSelector

__all__ = [
    "Embedder",
    "EmbedderIdentity",
    "Registry",
    "Selection",
    "ValueChoice",
    "ValueClassifier",
    "ValueDecision",
    "ValueIndex",
    "ValueJudge",
    "ValuePrinciple",
    "ValueSelector",
    "aligned_prompt",
    "build_index",
    "builtin_registry_path",
    "load_embedder",
    "load_index",
    "load_registry",
    "parse_registry",
    "save_index",
]
