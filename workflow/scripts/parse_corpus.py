from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.corpus.maildir import parse_maildir
from piimem.io import write_private_parquet, write_table

result = parse_maildir(
    snakemake.input.maildir,
    text_headers=tuple(snakemake.params.text_headers),
    max_file_bytes=snakemake.params.max_file_bytes,
    mailboxes=snakemake.params.mailboxes,
)
write_private_parquet(result.messages, snakemake.output.messages)
write_table(result.quarantine, snakemake.output.quarantine)
log.info("parsed %d messages, quarantined %d files", result.messages.height, result.quarantine.height)
