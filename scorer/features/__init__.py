"""OCSF event → numeric and categorical model inputs, driven by a declarative feature spec."""

from scorer.features.encoder import EncodedBatch, FeatureEncoder
from scorer.features.infer import infer_spec
from scorer.features.spec import FeatureDef, FeatureSpec, default_spec, load_spec

__all__ = [
    "EncodedBatch",
    "FeatureDef",
    "FeatureEncoder",
    "FeatureSpec",
    "default_spec",
    "infer_spec",
    "load_spec",
]
