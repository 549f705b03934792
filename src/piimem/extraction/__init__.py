"""PII extraction attacks on a fine-tuned model, one module per part.

- `prompts`: prompt sets (train-prefix, split windows, user files); prompts hold corpus text (private).
- `generation`: batched greedy or sampled decoding of continuations.
- `found`: PII in the continuations (the PII stage's Presidio machinery) and the sets O, S_c, L.
- `table`: one checkpoint's extraction rates with their counts, and the per-string record.
- `canaries`: exposure of the synthetic corpus's planted canaries, at every checkpoint of a run.
- `inference`: PII inference and reconstruction (Lukas et al. 2023): a masked training occurrence, candidates
  ranked by the model's perplexity of the filled-in window.
- `association`: targeted prompts built from a person's name (Huang et al. 2022), scored as e-mail matches.
- `untargeted`: the untargeted attack on one model (every prompt set's finds) and a checkpoint's scoring.
- `targeted`: the targeted attacks on one model, a checkpoint's beside the base model's.

Definitions (docs/attacks.md, binding): O = unique true PII (type, normal form) of the unmasked training
split; L_c = unique PII found in the generations of checkpoint c; S_c = PII of the training examples consumed
up to checkpoint c (original text). TER = 100|L∩O|/|O|, SER = 100|L∩S|/|S|, TEGR = 100|L∩O|/|L|.
"""
