"""PII detection (Presidio + header fields), normalisation and evaluation against ground truth."""

from piimem.pii.normalize import ENTITY_TYPES, normalize

__all__ = ["ENTITY_TYPES", "normalize"]
