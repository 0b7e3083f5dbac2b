# plinth's recipes. Run them through ./dev on a fresh machine (it installs what
# they need first), or with `just` once .venv exists.

set shell := ["bash", "-euo", "pipefail", "-c"]

env := "source scripts/env.sh &&"
plinth := env + " \"$CARGO_TARGET_DIR/release/plinth\""

# list the recipes
default:
    @just --list

# install PyTorch 2.11.0, numpy, tokenizers, transformers, peft and just into .venv (idempotent)
setup:
    scripts/setup-venv.sh

# delete the build caches (~/.cache/plinth/target-*) of plinth clones that no longer exist
gc *args:
    scripts/gc-cache.sh {{args}}

# build everything in release mode (tests run in the same profile, so libtorch's wrapper is built once)
build: setup
    {{env}} cargo build --release --workspace --all-targets

# the main job: molecule discovery, training (or reusing) a SMILES base and an ESOL adapter first
demo: build
    {{plinth}} pretrain --config configs/pretrain/molecule-tiny.toml --resume
    {{plinth}} finetune --config configs/finetune/esol.toml --resume
    {{plinth}} run configs/pipelines/molecule-discovery.toml

# the text demo: pretrain the tiny masked model on WordNet (or reuse it), then fill blanks
demo-text: build
    {{plinth}} pretrain --config configs/pretrain/tiny-mlm.toml --resume
    {{plinth}} info runs/tiny-mlm/checkpoint
    {{plinth}} fill "breakfast: the first ___ of the day"
    {{plinth}} fill "Paris, City of Light: the capital and largest city of ___"
    {{plinth}} fill "run: move fast by using one's ___"

# Ansible end to end: pretrain, finetune (name -> task), assistant pipeline, one request
ansible: build
    {{plinth}} pretrain --config configs/pretrain/ansible-tiny.toml --resume
    {{plinth}} finetune --config configs/finetune/ansible.toml --resume
    {{plinth}} run configs/pipelines/ansible-assistant.toml
    -{{plinth}} generate --plugin codegen "Install nginx and make sure it is running"

# run a pipeline (default: molecule discovery)
run pipeline="configs/pipelines/molecule-discovery.toml": build
    {{plinth}} run {{pipeline}}

# pretrain with a config (default: the tiny masked model)
pretrain config="configs/pretrain/tiny-mlm.toml" *flags="": build
    {{plinth}} pretrain --config {{config}} {{flags}}

# finetune a base for a plugin task (default: LoRA sentiment on the tiny masked base)
finetune config="configs/finetune/sentiment.toml" *flags="": build
    {{plinth}} finetune --config {{config}} {{flags}}

# run the plinth CLI with arguments, e.g. `just plinth fill "breakfast: the first ___ of the day"`
[positional-arguments]
plinth *args: build
    {{plinth}} "$@"

# the whole test suite (CPU-only, offline once setup ran)
test: build
    {{env}} cargo test --release --workspace

# formatting and lints, as CI would want them
lint: setup
    {{env}} cargo fmt --all --check
    {{env}} cargo clippy --release --workspace --all-targets -- -D warnings

# throughput against PyTorch eager, torch.compile and HF generate, then AdamW fused vs composed
bench: build
    {{env}} python bench/bench.py --plinth "$CARGO_TARGET_DIR/release/plinth-bench"
    {{env}} python bench/optimizer.py

# fuzz each parser for SECONDS (default 120), or only the TARGETs named (nightly + cargo-fuzz, installed if missing)
fuzz seconds="120" *targets="": setup
    scripts/fuzz.sh {{seconds}} {{targets}}

# Lipophilicity and BBC News used as a user's own CSV files (file tasks) on the tiny bases (BENCHMARKS.md, "Your own data")
bench-file-tasks: build
    bench/file_tasks.sh

# ESOL and BBBP on DeepChem's scaffold split, three seeds each, with their baselines (BENCHMARKS.md, "Molecules")
bench-molecule-seeds *tasks="": build
    bench/molecule_seeds.sh {{tasks}}
