"""Field mapping: compiled mappings from raw provider records to shard structured data,
built-in and per-integration custom transforms, and shard data validation."""

from core.mapping.custom import (
    CustomTransformConfig,
    registry_for_integration,
    validate_custom_transforms,
)
from core.mapping.errors import FieldError, MappingConfigError
from core.mapping.mapper import (
    CompiledMapping,
    FieldSpec,
    MappingResult,
    compile_mapping,
    validate_mapping_config,
)
from core.mapping.transforms import BUILTIN_TRANSFORMS, TransformDescription, TransformRegistry
from core.mapping.validator import ShardValidator, ValidationMode, ValidationOutcome

__all__ = [
    "BUILTIN_TRANSFORMS",
    "CompiledMapping",
    "CustomTransformConfig",
    "FieldError",
    "FieldSpec",
    "MappingConfigError",
    "MappingResult",
    "ShardValidator",
    "TransformDescription",
    "TransformRegistry",
    "ValidationMode",
    "ValidationOutcome",
    "compile_mapping",
    "registry_for_integration",
    "validate_custom_transforms",
    "validate_mapping_config",
]
