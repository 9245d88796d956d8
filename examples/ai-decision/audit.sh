#!/bin/sh
# The AI-decision audit, end to end (README.md here walks through it). Against a running cluster
# (`stateledger dev`, its profile in STATELEDGER_PROFILE) it:
#
#   1. records the credit-decision service's declared state with the collectors: the model file
#      and the program as code artifacts, the prompt template and the sampling parameters as
#      configuration, the runtime as environment, the sampling seed as captured nondeterminism;
#   2. lets the tiny model decide five credit requests, recording each request as a mutation
#      (with its payload digest and Kafka offset) and each decision's digest as a state digest;
#   3. restores the state at T with `stateledger materialize` and replays every request through
#      the restored program, model and configuration: each decision comes out byte for byte;
#   4. shows the two ways it becomes impossible: the seed was never captured (a second service
#      that forgot to), and the model file the auditor was given is not the one recorded.
#
# Environment: STATELEDGER (the stateledger binary), AI_DECISION (the ai-decision binary, from
# `cargo build -p stateledger-example-ai-decision`), WORK (a new directory for everything this
# writes), SYSTEM (default credit-decisions).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
# Paths given relative to where this was started still work after the `cd` below.
abs() {
  case "$1" in
    /*) printf %s "$1" ;;
    */*) printf %s/%s "$PWD" "$1" ;;
    *) printf %s "$1" ;;   # a command on PATH
  esac
}
SL=$(abs "${STATELEDGER:-stateledger}")
AI=$(abs "${AI_DECISION:-ai-decision}")
STATELEDGER_PROFILE=${STATELEDGER_PROFILE:-stateledger-dev/client.toml}
case "$STATELEDGER_PROFILE" in /*) ;; *) STATELEDGER_PROFILE="$PWD/$STATELEDGER_PROFILE" ;; esac
export STATELEDGER_PROFILE
WORK=${WORK:-$(mktemp -d)}
SYSTEM=${SYSTEM:-credit-decisions}
NOSEED="$SYSTEM-noseed"
MODEL=model/tiny-credit-lm-1.0.0.json
mkdir -p "$WORK"
cd "$WORK"
say() { printf '\n== %s\n' "$*"; }

say "the service's repository: the model, the prompt template and the parameters, committed"
mkdir -p service/model service/config service/bin
cp "$here/$MODEL" service/model/
cp "$here/config/prompt-template.txt" "$here/config/params.toml" service/config/
cp "$here/../../Cargo.lock" service/          # the lockfile the program was built with
cp "$AI" service/bin/ai-decision               # the build artifact (not committed)
printf 'bin/\n' > service/.gitignore
git -C service init -q
git -C service add -A
git -C service -c user.name=ci -c user.email=ci@example.com commit -q -m "credit-decisions: tiny-credit-lm 1.0.0"

say "a writer key, allowed to record both services"
"$SL" keygen --name credit-collector --out keys >/dev/null
"$SL" grant --system "$SYSTEM" --writer keys/credit-collector.pub >/dev/null
"$SL" grant --system "$NOSEED" --writer keys/credit-collector.pub >/dev/null
submit() { "$SL" submit --key keys/credit-collector.key --no-receipts "$@" >/dev/null; }

SEED=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
for system in "$SYSTEM" "$NOSEED"; do
  say "$system: code, configuration, environment$( [ "$system" = "$SYSTEM" ] && echo ', the sampling seed')"
  (cd service && "$SL" collect code --system "$system" --repo . --repo-name example.com/acme/credit-decisions \
      --artifact bin/ai-decision --artifact "$MODEL") | submit
  # params.toml holds no secret, but its `max_tokens` reads like a credential to the collector's
  # heuristics ("token"): say so, and it is recorded in clear.
  (cd service && "$SL" collect config --system "$system" --config-version prompt-v3 \
      --file config/prompt-template.txt --file config/params.toml --not-secret params.toml) | submit
  "$SL" collect env --system "$system" --runtime ai-decision=0.1.0 --no-runtime-probes \
      --flag explanations=off --time-source host-chrony --time-synchronized | submit
  if [ "$system" = "$SYSTEM" ]; then
    "$SL" collect capture seed --system "$system" --capture-id sampling-seed --name tiny-lm-sampler \
        --hex "$SEED" | submit
  fi

  say "$system: five decisions, each request a mutation and each decision's digest a state digest"
  "$AI" decide --model "service/$MODEL" --template service/config/prompt-template.txt \
      --params service/config/params.toml --out "decisions/$system" --seed-hex "$SEED" \
      --system "$system" --requests "$here/requests" \
      --mutations "mutations-$system.jsonl" --state-digests "state-digests-$system.jsonl"
  "$SL" collect mutations --system "$system" --jsonl "mutations-$system.jsonl" | submit
  submit "state-digests-$system.jsonl"
done
T=$(date +%s%N)

# The auditor's artifact store, by other names: materialize matches by digest.
mkdir -p store
cp service/bin/ai-decision store/ai-decision-build-417
cp "service/$MODEL" store/
REPLAY="artifacts/bin/ai-decision reduce --model artifacts/$MODEL \
  --template config/files/config/prompt-template.txt --params config/files/config/params.toml --out replayed"

say "materialize $SYSTEM at T and replay every request"
"$SL" materialize --system "$SYSTEM" --at "$T" --out restore --repo service --artifacts store \
    --payloads "$here/requests" --replay "$REPLAY"
for d in decisions/"$SYSTEM"/*.json; do
  cmp "$d" "restore/replayed/$(basename "$d")"
done
echo "every decision reproduced byte for byte"

say "materialize $NOSEED: the seed was never captured"
status=0
"$SL" materialize --system "$NOSEED" --at "$T" --out restore-noseed --repo service --artifacts store \
    --payloads "$here/requests" --replay "$REPLAY" || status=$?
[ "$status" = 1 ] || { echo "expected exit 1, got $status" >&2; exit 1; }

say "materialize $SYSTEM with a swapped model file in the artifact store"
mkdir -p store-swapped
cp store/ai-decision-build-417 store-swapped/
sed 's/"approve": 1500/"approve": 2500/' "store/$(basename "$MODEL")" > "store-swapped/$(basename "$MODEL")"
status=0
"$SL" materialize --system "$SYSTEM" --at "$T" --out restore-swapped --repo service --artifacts store-swapped \
    --payloads "$here/requests" --replay "$REPLAY" || status=$?
[ "$status" = 1 ] || { echo "expected exit 1, got $status" >&2; exit 1; }

say "done: $WORK/restore/RESTORE.md, $WORK/restore-noseed/RESTORE.md, $WORK/restore-swapped/RESTORE.md"
