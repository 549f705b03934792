"""`dp`: the train split as is, trained with DP-SGD (piimem.train.dp) at the `dp` section's settings."""

from __future__ import annotations

from dataclasses import dataclass

from piimem.config import ConfigError
from piimem.defense.base import Defense
from piimem.plan import NamedOption, _value_label, defense_variants, run_names, tuning_variants
from piimem.runs import RunId

# Tuning methods DP-SGD cannot train: a parameter the layer shares across the batch has no per-example
# gradient to clip (tests/test_dp.py).
DP_UNSUPPORTED = {
    "prompt": "its soft prompt is one embedding lookup shared by the whole batch",
    "ptuning": "its prompt encoder runs once for the whole batch",
}


@dataclass(frozen=True)
class DifferentialPrivacy(Defense):
    def check(self, config: dict) -> None:
        """DP-SGD runs in one process, without compilation or fp16, on methods with per-example gradients."""
        train = config["train"]
        if train["gpus"] > 1:
            raise ConfigError(f"train.gpus: {train['gpus']} with the dp defense; DP-SGD's sampling, noise and "
                              f"accounting are for one process's batch, so dp runs take one GPU (set train.gpus: 1, "
                              f"or run dp in a config of its own)")
        if train["compile"]:
            raise ConfigError("train.compile: not with the dp defense (its per-example gradient hooks need the "
                              "eager model)")
        if train["precision"] == "fp16":
            raise ConfigError("train.precision: fp16 is not supported with the dp defense (its loss scaling would "
                              "scale the per-example gradients before clipping); use bf16, fp32 or auto")
        variants, tunings = defense_variants(config), tuning_variants(config)  # once, not once per run
        for run in run_names(config):
            parsed = RunId.parse(run)
            method = tunings[parsed.tuning]["tuning"]
            if variants[parsed.defense]["defense"] == self.name and method in DP_UNSUPPORTED:
                raise ConfigError(f"defenses: the dp defense cannot train tuning method {method!r} "
                                  f"({DP_UNSUPPORTED[method]}, so DP-SGD has no per-example gradient to clip); leave "
                                  f"the run {run!r} out with "
                                  f"exclude: [{{defense: dp, tuning: {method}}}]")

    def dp_options(self, config: dict, variant: dict) -> dict:
        """The `dp` section with the variant's ε, batch size and learning rate (`lr`, None: the run's own; the
        other keys are piimem.train.dp.DPConfig's)."""
        return {**{key: config["dp"][key] for key in ("delta", "max_grad_norm", "accountant")},
                "epsilon": float(variant["epsilon"]), "batch_size": variant["batch_size"], "lr": variant["lr"]}


DEFENSE = DifferentialPrivacy(
    "dp", rewrites_text=False, private_training=True,
    # a DP run always names its ε: "dp" alone would hide the one number that says what it guarantees
    named_options=(NamedOption("epsilon", lambda v: f"e{v:g}", sweepable=True, always=True),
                   NamedOption("batch_size", lambda v: f"b{v}", sweepable=True),
                   NamedOption("lr", lambda v: f"lr{_value_label(v)}", sweepable=True)),
)
