from piimem.logs import log_to_file

log_to_file(snakemake.log[0])

from pathlib import Path

from piimem.corpus.download import download

tarball = Path(snakemake.output.tarball)
download(
    snakemake.params.url,
    tarball,
    sha256=snakemake.params.sha256,
    checksum_record=tarball.with_name(tarball.name + ".sha256"),
)
