"""The two papers' reported numbers (docs/statistics.md, "Claims"), each with the model and data set it
was measured on. Tables and the claims table take every paper figure from here, and show it only with
its label, so that no paper number stands unlabelled beside a run of another model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from piimem import tuning as tuning_methods


@dataclass(frozen=True)
class PaperFigure:
    value: float | tuple[float, float]  # a number, or a (low, high) range the paper gives
    source: str  # "Joshi & Smith, abstract" or "Hou et al., Table 3"
    model: str
    data: str

    @property
    def label(self) -> str:
        """"<model>, <data>; <source>": what the number was measured on."""
        return f"{self.model}, {self.data}; {self.source}"

    def text(self, decimals: int = 3) -> str:
        """The value as a table cell: "0.601", or "0.48–0.50" for a range."""
        if isinstance(self.value, tuple):
            return f"{self.value[0]:.2f}–{self.value[1]:.2f}"
        return f"{self.value:.{decimals}f}"


# Joshi & Smith (RMFT), Enron, GPT-2 family: reductions vs plain fine-tuning, averaged over checkpoints,
# e-mail addresses (the paper's TER and SER count e-mail addresses only).
_RMFT = dict(source="Joshi & Smith", model="GPT-2", data="Enron e-mail")
RMFT_TER_REDUCTION = PaperFigure(80.81, **_RMFT)
RMFT_SER_REDUCTION = PaperFigure(80.17, **_RMFT)
RMFT_PPL_INCREASE = PaperFigure(5.73, **_RMFT)

# Hou et al., Table 2: Llama-2-7B after 5 epochs, LOSS AUC per data set and tuning method.
TABLE2 = {
    data: {method: PaperFigure(auc, "Hou et al., Table 2 (5 epochs)", "Llama-2-7B", data)
           for method, auc in values.items()}
    for data, values in {
        "WebNLG": {"head": 0.905, "lora": 0.852, "prefix": 0.621, "prompt": 0.582, "ptuning": 0.626},
        "WikiText-2": {"head": 0.889, "lora": 0.787, "prefix": 0.484, "prompt": 0.478, "ptuning": 0.487},
        "XSum": {"head": 0.823, "lora": 0.716, "prefix": 0.522, "prompt": 0.528, "ptuning": 0.532},
    }.items()
}

# Hou et al., Table 3: WikiText-2 LOSS AUC by model size, full fine-tuning; prompt-based methods stay
# within .48-.50 at every size. Keys: the model's name as in its Hugging Face id (lower case).
_TABLE3_FULL = {"gpt2": ("GPT-2", 0.601), "gpt2-medium": ("GPT-2 medium", 0.697),
                "gpt2-large": ("GPT-2 large", 0.904), "gpt2-xl": ("GPT-2 XL", 0.990),
                "llama-3.2-1b": ("Llama-3-1B", 0.9999)}


def _model_key(base_model: str) -> str:
    """"openai-community--gpt2" or "openai-community/gpt2" -> "gpt2": the model's own name, lower case."""
    return re.split(r"--|/", base_model)[-1].lower()


def table3_figure(base_model: str, tuning: str) -> PaperFigure | None:
    """Hou et al.'s Table 3 LOSS AUC for this base model (by its name) and tuning method, or None."""
    known = _TABLE3_FULL.get(_model_key(base_model))
    if known is None:
        return None
    model, full_auc = known
    source = "Hou et al., Table 3"
    if tuning == "full":
        return PaperFigure(full_auc, source, model, "WikiText-2")
    if tuning in tuning_methods.PROMPT_BASED:
        return PaperFigure((0.48, 0.50), source, model, "WikiText-2")
    return None


def table2_figure(base_model: str, tuning: str) -> PaperFigure | None:
    """Hou et al.'s Table 2 (WikiText-2) LOSS AUC when the base model is Llama-2-7B, else None."""
    if _model_key(base_model) not in ("llama-2-7b", "llama-2-7b-hf"):
        return None
    return TABLE2["WikiText-2"].get(tuning)


def finetuning_figure(base_model: str, tuning: str) -> PaperFigure | None:
    """The paper's LOSS AUC for the same model and tuning method, where the paper has that model."""
    return table3_figure(base_model, tuning) or table2_figure(base_model, tuning)


# Parameters of GPT-2's sizes (Radford et al. 2019, as the Hugging Face checkpoints count them).
GPT2_PARAMETERS = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080,
                   "gpt2-xl": 1_557_611_200}


def model_size(base_model: str, known: dict[str, int] | None = None) -> int | None:
    """The parameter count of a base model for the model-size claim: from `known` (the workflow's tiny
    GPT-2s), else a GPT-2 size by its name; None for other models."""
    if known and base_model in known:
        return known[base_model]
    return GPT2_PARAMETERS.get(_model_key(base_model))
