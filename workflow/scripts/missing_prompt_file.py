from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

name, path = snakemake.params.name, snakemake.output[0]
message = (f"extraction.prompt_files.{name}: {path} does not exist. Put the prompt texts there (UTF-8, one "
           f"text per line; docs/attacks.md ('PII extraction') shows how to write WikiText-2's) and run snakemake "
           f"again: only the extraction jobs wait for it.")
log.error(message)
raise FileNotFoundError(message)
