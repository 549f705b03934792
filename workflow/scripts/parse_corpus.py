from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.plan import corpus_name
from piimem.corpus.maildir import parse_maildir, quarantine_counts, require_messages
from piimem.io import write_private_parquet, write_table

result = parse_maildir(
    snakemake.input.maildir,
    text_headers=tuple(snakemake.params.text_headers),
    max_file_bytes=snakemake.params.max_file_bytes,
    mailboxes=snakemake.params.mailboxes,
)
log.info("parsed %d messages, quarantined %d files", result.messages.height, result.quarantine.height)
for reason, n in quarantine_counts(result.quarantine).items():
    log.info("quarantined: %d x %s", n, reason)
# Read from the config rather than params: naming the corpus in an error must not rerun the stage.
require_messages(result, f"{corpus_name(snakemake.config)!r} at {snakemake.input.maildir!r}")
write_private_parquet(result.messages, snakemake.output.messages)
write_table(result.quarantine, snakemake.output.quarantine)
