"""`rmft`: RMFT (piimem.masking.apply_rmft): repeated PII strings replaced by surrogates, in the types of the
variant's scope; one text per epoch where the surrogates are re-drawn per epoch."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from piimem.config import ConfigError
from piimem.defense.base import REPLACEMENT_SCHEMA, Defense, Rewrite, spans_of
from piimem.masking import RmftConfig, apply_rmft
from piimem.plan import NamedOption, _as_list

# RMFT's scopes: the PII types each rewrites. None: the types listed in rmft.entity_types.
RMFT_SCOPES: dict[str, tuple[str, ...] | None] = {"email": ("EMAIL_ADDRESS",), "all": None}


def rmft_entity_types(config: dict, scope: str) -> list[str]:
    """The PII types an RMFT variant of `scope` rewrites (`RMFT_SCOPES`)."""
    types = RMFT_SCOPES[scope]
    return list(config["rmft"]["entity_types"] if types is None else types)


@dataclass(frozen=True)
class Rmft(Defense):
    def check(self, config: dict) -> None:
        """It can only rewrite PII the PII stage detects."""
        detected = config["pii"]["entity_types"]
        for scope in _as_list(config["rmft"]["scope"]):
            missing = [t for t in rmft_entity_types(config, scope) if t not in detected]
            if missing:
                key = "rmft.scope" if RMFT_SCOPES[scope] else "rmft.entity_types"
                raise ConfigError(f"{key}: RMFT scope {scope!r} rewrites {missing}, which pii.entity_types "
                                  f"{detected} does not detect")

    def options(self, config: dict, variant: dict) -> dict:
        """The rmft section with the variant's p and its scope's entity types, and `epochs`, the texts to
        write."""
        options = {key: value for key, value in config["rmft"].items() if key != "scope"}
        options.update(p=variant["p"], entity_types=rmft_entity_types(config, variant["scope"]))
        options["epochs"] = config["train"]["epochs"] if options["redraw_per_epoch"] else 1
        return options

    def training_text(self, train: pl.DataFrame, spans: pl.DataFrame | None, dedup_texts: pl.DataFrame | None,
                      options: dict) -> Rewrite:
        options = dict(options)
        epochs = options.pop("epochs", 1)
        cfg = RmftConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
        targeted = spans_of(train, spans, cfg.entity_types)
        texts_by_epoch, maps = [], []
        for epoch in range(epochs if cfg.redraw_per_epoch else 1):
            masked, mapping = apply_rmft(train.select("doc_id", "text"), targeted, cfg, epoch=epoch)
            texts_by_epoch.append(masked.select(pl.lit(epoch, dtype=pl.Int64).alias("epoch"), "doc_id", "text"))
            maps.append(
                mapping.select(
                    pl.lit(epoch, dtype=pl.Int64).alias("epoch"), "doc_id", "start", "end", "entity_type",
                    "original", pl.col("surrogate").alias("replacement"),
                )
            )
        return Rewrite(pl.concat(texts_by_epoch), pl.concat(maps).cast(REPLACEMENT_SCHEMA), targeted)


# The paper's settings (docs/defenses.md): e-mail scope, first occurrence kept, p = 1, masked once.
DEFENSE = Rmft(
    "rmft", rewrites_text=True, reads_spans=True, compared_with=("dedup",),
    named_options=(NamedOption("scope", str, sweepable=True, paper=True),
                   NamedOption("p", lambda v: f"p{v:g}", sweepable=True, paper=True),
                   NamedOption("keep", lambda v: f"keep{v}", paper=True),
                   NamedOption("redraw_per_epoch", lambda v: "redraw" if v else "static", paper=True)),
)
