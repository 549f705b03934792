from piimem.logs import log_to_file

log_to_file(snakemake.log[0])

from pathlib import Path

from piimem.models import export_smollm2

export_smollm2(Path(snakemake.output.model).parent)
