# membership_inference: the MIA attacks on every checkpoint of a run, on the members' original text and,
# for a run on rewritten text, on the text it trained on.
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.evaluate import evaluate_checkpoints, rule_base_model
from piimem.mia import MembershipInference

params, inputs = snakemake.params, snakemake.input
base, tokenizer = rule_base_model(params.base_model, inputs.get("base_model"), threads=snakemake.threads)
attacks = MembershipInference.from_files(
    tokenizer, members=inputs.members, reference=inputs.reference, trained=inputs.get("trained"),
    trained_reference=inputs.get("trained_reference"), mia=params.mia, base_model=params.base_model,
    max_length=params.max_length, device=params.device)
evaluate_checkpoints(inputs.manifest, snakemake.output, base, attacks.tables)
