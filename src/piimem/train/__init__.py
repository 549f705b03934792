"""Fine-tuning with checkpoints at fixed fractions of an epoch, resumable, one data order for all defenses.

`train(model, tokenizer, texts, cfg, run_dir, fingerprint=...)` is the entry point; its parts, each
readable alone:

  config       TrainConfig (`train.*`), StateEvery (`train.state_every`), the checkpoint schedule, precision
  data         the data plan: data order, tokenized documents, blocks or messages, each step's examples,
               micro-batches, consumed documents
  loss         the step loss: the NLL of the real target tokens, from logits or from hidden states in
               vocabulary chunks
  state        the run's folder, its fingerprint, the resumable state and the random generators
  checkpoints  checkpoint folders
  train_log    train_log.tsv, appended across attempts, and `read_train_log`
  distributed  several processes (data parallel) in one run
  loop         `train()`: set-up, the optimizer steps, saving on the way, the manifest
"""

from piimem.train.config import (
    PACKINGS,
    PRECISIONS,
    Checkpoint,
    StateEvery,
    TrainConfig,
    checkpoint_schedule,
    checkpoint_steps,
    resolve_precision,
)
from piimem.train.data import (
    EpochPlan,
    RunPlan,
    TokenizedTexts,
    build_plans,
    collate,
    document_order,
    first_steps,
    plan_epoch,
    plan_run,
    tokenize_texts,
)
from piimem.train.loop import train
from piimem.train.train_log import read_train_log

__all__ = [
    "PACKINGS", "PRECISIONS", "Checkpoint", "EpochPlan", "RunPlan", "StateEvery", "TokenizedTexts",
    "TrainConfig",
    "build_plans", "checkpoint_schedule", "checkpoint_steps", "collate", "document_order", "first_steps",
    "plan_epoch", "plan_run", "read_train_log", "resolve_precision", "tokenize_texts", "train",
]
