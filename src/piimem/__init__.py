"""piimem: measure and mitigate memorisation of personal data in fine-tuned language models."""

__version__ = "0.1.0"
