from piimem.logs import log_to_file

log_to_file(snakemake.log[0])

from pathlib import Path

from piimem.corpus.download import extract_maildir

extract_maildir(Path(snakemake.input.tarball), Path(snakemake.output.maildir))
