#!/usr/bin/env bash
# The life of a job in Veil, told one role after another. Run by `make demo`.
# Usage: scripts/demo.sh [WORKDIR]   (default /tmp/veil-demo; it is recreated)
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${1:-/tmp/veil-demo}
RESIDENTS=${RESIDENTS:-100000}
VEIL=$PWD/bin/veil
DATA=$WORK/data
CITY=$WORK/city
export VEIL_CONFIG=$WORK/config.yaml
export VEIL_HOST=unix://$DATA/veil.sock
unset VEIL_TOKEN VEIL_PROFILE

bold=$'\033[1m'; dim=$'\033[2m'; off=$'\033[0m'
[ -t 1 ] || { bold=; dim=; off=; }
say()  { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
note() { printf '%s   %s%s\n' "$dim" "$*" "$off"; }
run()  { printf '%s$ veil %s%s\n' "$dim" "$*" "$off"; "$VEIL" "$@"; }
as()   { local who=$1; shift; printf '%s[%s]$ veil %s%s\n' "$dim" "$who" "$*" "$off"; "$VEIL" --profile "$who" "$@"; }
refused() { local who=$1; shift; printf '%s[%s]$ veil %s%s\n' "$dim" "$who" "$*" "$off"
  if "$VEIL" --profile "$who" "$@"; then echo "demo: expected a refusal" >&2; exit 1; fi; }
field() { awk -v k="$1:" '$1 == k { print $2 }'; }
# digest JOB: the digest of an output as the reviewer saw it; an approval names it.
digest() { "$VEIL" --profile reviewer review show "$1" | field digest; }

if [ -d "$WORK" ] && [ -f "$WORK/daemon.pid" ]; then kill "$(cat "$WORK/daemon.pid")" 2>/dev/null || true; sleep 0.5; fi
rm -rf "$WORK"; mkdir -p "$WORK"

say "0. The data: a generated city of $RESIDENTS residents (deterministic, no real person)"
note "residents, social insurance, medical visits and an enterprise registry, as Parquet with schema files."
./bin/citygen -out "$CITY" -residents "$RESIDENTS" -customers 2000
mv "$CITY/customers.csv" "$WORK/acme-customers.csv"   # the vendor's own data, not the platform's
ls -l "$CITY"

say "1. Operator: initialise the platform and start the daemon"
note "veil init creates the store, the platform's ed25519 signing key and a first operator token (shown once)."
OP=$("$VEIL" init --data-dir "$DATA" | tail -1)
"$VEIL" config set-profile operator --host "$VEIL_HOST" --token "$OP" >/dev/null
ISOLATION=container
if [ "$(id -u)" != 0 ]; then ISOLATION=process; note "not root: jobs run without a sandbox (development only)"; fi
# --listen also serves the API and the web console (/ui/) on loopback; port 0 picks a free one.
"$VEIL" serve --data-dir "$DATA" --isolation "$ISOLATION" --approvals 1 --listen "127.0.0.1:${CONSOLE_PORT:-0}" >"$WORK/daemon.log" 2>&1 &
echo $! >"$WORK/daemon.pid"
trap 'kill $(cat "$WORK/daemon.pid") 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$DATA/veil.sock" ] && break; sleep 0.1; done
run --profile operator whoami

say "2. Operator: one token per principal, each with a role (and a tenant for vendors and providers)"
mk() { # profile name role tenant
  local tok; tok=$("$VEIL" --profile operator principal create --name "$2" --role "$3" ${4:+--tenant "$4"} | field token)
  "$VEIL" config set-profile "$1" --host "$VEIL_HOST" --token "$tok" >/dev/null
  if [ "$1" = reviewer ]; then REVIEWER_TOKEN=$tok; fi
  printf '   %-12s %-10s %s\n' "$1" "$3" "${4:-}"
}
mk civil    "Civil Affairs Bureau"       provider civil-affairs
mk hr       "Human Resources Bureau"     provider human-resources
mk health   "Health Commission"          provider health-commission
mk market   "Market Regulation Bureau"   provider market-regulation
mk bureau   "Municipal Data Bureau"      authority
mk acme     "Acme Credit analyst"        vendor acme
mk rival    "Rival Analytics analyst"    vendor rival
mk reviewer "Export reviewer"            reviewer
mk auditor  "Inspector"                  auditor
"$VEIL" config use operator

say "3. Providers: register their datasets with a schema that classifies every column"
note "levels 1-4 (level 4 is never granted), kind of personal data, privacy unit, bounds, masking rules."
as civil  dataset register --schema "$CITY/residents.yaml" "$CITY/residents.parquet"
as hr     dataset register --schema "$CITY/social_insurance.yaml" "$CITY/social_insurance.parquet"
as health dataset register --schema "$CITY/medical_visits.yaml" "$CITY/medical_visits.parquet"
as market dataset register --schema "$CITY/enterprises.yaml" "$CITY/enterprises.parquet"
as acme dataset list
as acme dataset show residents

say "4. Vendor: apply for a grant for one scenario, naming only the columns it needs"
note "A level-4 column can never be granted:"
refused acme grant apply --scenario "faith census" --purpose "x" --dataset residents:district,religion --mode threshold --k 10
G=$("$VEIL" --profile acme grant apply --scenario "District wage report" \
    --purpose "Average insured wage per district for a labour-market study" \
    --dataset social_insurance:year,monthly_wage,months_paid --dataset residents:district,phone \
    --mode threshold --k 10 --round-to 5 --valid-for 180d -o json | awk -F'"' '/"id":/ {print $4; exit}')
as acme grant show "$G"

say "5. Review of the application: operator, then the data bureau, then each provider"
note "Each stage has a deadline; an overdue stage takes its configured default (超期审核视为同意)."
as operator grant approve "$G"
note "A vendor cannot review its own application:"
refused acme grant approve "$G"
as bureau grant approve "$G"
note "Each provider whose data is asked for approves its own part:"
as civil grant approve "$G"
as hr grant approve "$G"

say "6. Tenant isolation: another vendor cannot see the grant (same answer as for one that does not exist)"
refused rival grant show "$G"
refused rival grant show g-doesnotexist

say "7. Vendor: queries are checked before anything runs"
note "Ungranted columns, files, table functions, several statements, SET/COPY/ATTACH, filters on the person: refused."
refused acme job submit --grant "$G" --sql "SELECT year, AVG(pension_contribution) FROM social_insurance GROUP BY year"
refused acme job submit --grant "$G" --sql "SELECT COUNT(*) FROM read_csv('/etc/passwd')"
refused acme job submit --grant "$G" --sql "SELECT year, COUNT(*) FROM social_insurance GROUP BY year; COPY social_insurance TO '/tmp/x.csv'"
refused acme job submit --grant "$G" --sql "SELECT year, COUNT(*) FROM social_insurance WHERE resident_id = 42 GROUP BY year"

say "8. Vendor: submit a job and follow it (it runs in a sandbox, then through the threshold gate)"
J=$("$VEIL" --profile acme job submit --grant "$G" --wait \
    --sql "SELECT year, COUNT(*) AS insured, AVG(monthly_wage) AS avg_wage, SUM(months_paid) AS months FROM social_insurance GROUP BY year ORDER BY year" | field job)
as acme job show "$J"
note "Joined with the residents' districts: two districts have fewer than k=10 insured persons and are removed by the gate."
J2=$("$VEIL" --profile acme job submit --grant "$G" --wait \
    --sql "SELECT r.district, COUNT(DISTINCT s.resident_id) AS persons, AVG(s.monthly_wage) AS avg_wage FROM social_insurance s JOIN residents r ON s.resident_id = r.resident_id WHERE s.year = 2024 GROUP BY r.district ORDER BY r.district" | field job)
as acme job show "$J2"

say "9. Reviewer: sees the query, the grant, the mechanism, warnings and the output as it would leave"
as reviewer review list
as reviewer review show "$J"
as reviewer review approve "$J" --digest "$(digest "$J")"
as reviewer review show "$J2" | tail -14
as reviewer review approve "$J2" --digest "$(digest "$J2")"

say "10. Vendor: fetch the export with its signed certificate; anyone can verify it offline"
as acme export get "$J" -o "$WORK/wages.csv"
cat "$WORK/wages.csv"
as acme export verify "$WORK/wages.csv" --key "$DATA/platform.pub" -o yaml | head -20
note "Change one byte and the certificate no longer verifies:"
sed -i '2s/1/2/' "$WORK/wages.csv"
refused acme export verify "$WORK/wages.csv" --key "$DATA/platform.pub"

say "11. Authority: suspend the grant; jobs are refused until it is reinstated"
as bureau grant suspend "$G" --reason "quarterly inspection"
refused acme job submit --grant "$G" --sql "SELECT year, COUNT(*) FROM social_insurance GROUP BY year"
as bureau grant reinstate "$G" --reason "inspection passed"

say "12. Differential privacy: the default release path, with a global budget ledger"
note "Each dataset has a total epsilon its provider declared; a grant receives a slice when approved."
GD=$("$VEIL" --profile acme grant apply --scenario "Outpatient cost by district" \
    --purpose "Average outpatient cost per district for a health-insurance product" \
    --dataset medical_visits:hospital,cost --dataset residents:district \
    --mode dp --epsilon 2 --delta 1e-7 --max-query-epsilon 1 --valid-for 180d -o json | awk -F'"' '/"id":/ {print $4; exit}')
for who in operator bureau civil health; do as $who grant approve "$GD" >/dev/null; done
as bureau budget show
note "DP queries state their epsilon and contribution bounds; filters on the person, ROLLUP and casts that can fail are refused and spend nothing:"
refused acme job submit --grant "$GD" --epsilon 0.5 --sql "SELECT hospital, COUNT(*) FROM medical_visits WHERE resident_id = 42 GROUP BY hospital"
refused acme job submit --grant "$GD" --epsilon 0.5 --delta 1e-8 --sql "SELECT hospital, COUNT(*) FROM medical_visits GROUP BY ROLLUP (hospital)"
refused acme job submit --grant "$GD" --epsilon 0.5 --delta 1e-8 --sql "SELECT hospital, COUNT(*) FROM medical_visits WHERE CAST(hospital AS INTEGER) > 1 GROUP BY hospital"
refused acme job submit --grant "$GD" --epsilon 1.5 --sql "SELECT COUNT(*) FROM medical_visits"
note "Districts have a public domain: every district is released, with noise, and no delta is needed."
note "Each person counts in one district with at most 5 visits; costs are clamped to the catalog's [0, 50000]."
JD=$("$VEIL" --profile acme job submit --grant "$GD" --wait --epsilon 0.5 --max-rows 5 \
    --sql "SELECT r.district, COUNT(DISTINCT v.resident_id) AS patients, AVG(v.cost) AS mean_cost FROM medical_visits v JOIN residents r ON v.resident_id = r.resident_id GROUP BY r.district" | field job)
note "Hospitals have no public domain: which hospitals appear is decided by DP partition selection (it needs a delta)."
JH=$("$VEIL" --profile acme job submit --grant "$GD" --wait --epsilon 0.5 --delta 1e-8 --max-rows 5 \
    --sql "SELECT hospital, COUNT(*) AS visits, MEDIAN(cost) AS median_cost FROM medical_visits GROUP BY hospital" | field job)
as reviewer review show "$JD"
as reviewer review approve "$JD" --digest "$(digest "$JD")"
as reviewer review approve "$JH" --digest "$(digest "$JH")"
as acme export get "$JD" -o "$WORK/district_costs.csv"
cat "$WORK/district_costs.csv"
note "What the vendor has left, and what the provider's dataset has given and spent:"
as acme budget show
as health budget show

say "13. Homomorphic encryption: a credit vendor scores the data with a model the platform never sees"
note "On the vendor's own machine: a CKKS key set (the secret key never leaves it) and the model, encrypted."
HE=$WORK/acme-he
run he keygen --groups 16 --dir "$HE"
cat >"$HE/model.json" <<'MODEL'
{"kind": "logistic", "input_range": 8, "bias": -0.5,
 "features": [
   {"name": "monthly_wage",         "lower": 0, "upper": 30000, "mean": 8000, "scale": 4000},
   {"name": "months_paid",          "lower": 0, "upper": 12,    "mean": 10,   "scale": 2},
   {"name": "pension_contribution", "lower": 0, "upper": 3000,  "mean": 800,  "scale": 400}],
 "weights": [0.5, 0.4, 0.2]}
MODEL
run he encrypt-model --public "$HE/public.bundle" --model "$HE/model.json" --out "$HE/model.enc"
GH=$("$VEIL" --profile acme grant apply --scenario "Credit pre-screening by year" \
    --purpose "Share of insured workers a credit model would pre-approve, per year" \
    --dataset social_insurance:year,monthly_wage,months_paid,pension_contribution \
    --mode he --k 10 --valid-for 90d -o json | awk -F'"' '/"id":/ {print $4; exit}')
for who in operator bureau hr; do as $who grant approve "$GH" >/dev/null; done
note "A secret key never leaves the vendor's machine: the CLI stops it (and the daemon would refuse it, unread):"
refused acme job submit --grant "$GH" --dataset social_insurance --group-by year --model "$HE/model.enc" --public "$HE/secret.key"
note "The job uploads the public bundle and the encrypted model; the sandbox scores every row under encryption and sums per year."
JHE=$("$VEIL" --profile acme job submit --grant "$GH" --wait --dataset social_insurance --group-by year \
    --model "$HE/model.enc" --public "$HE/public.bundle" | field job)
note "The reviewer sees the years and their row counts, never a score:"
as reviewer review show "$JHE"
as reviewer review approve "$JHE" --digest "$(digest "$JHE")"
as acme export get "$JHE" -o "$WORK/scores.arrow"
note "Back on the vendor's machine, only its secret key opens the sums:"
run he decrypt --secret "$HE/secret.key" --in "$WORK/scores.arrow"

say "14. Model jobs: a built-in trainer with differential privacy"
note "A declarative spec over granted, bounded columns; the trainer runs in the sandbox and only noisy coefficients leave it."
GM=$("$VEIL" --profile acme grant apply --scenario "Pension contribution model" \
    --purpose "How contributions follow wages, for a retirement-savings product" \
    --dataset social_insurance:monthly_wage,months_paid,pension_contribution \
    --mode model --epsilon 2 --delta 1e-6 --max-query-epsilon 1 --valid-for 90d -o json | awk -F'"' '/"id":/ {print $4; exit}')
for who in operator bureau hr; do as $who grant approve "$GM" >/dev/null; done
cat >"$WORK/linreg.yaml" <<'SPEC'
dataset: social_insurance
trainer: linear_regression
features: [monthly_wage, months_paid]
label: pension_contribution
max_rows: 6          # a person has up to 6 yearly records; more would count as 6 at their average
epsilon: 1
delta: 1.0e-6
SPEC
cat "$WORK/linreg.yaml"
JM=$("$VEIL" --profile acme job submit --grant "$GM" --wait --train "$WORK/linreg.yaml" | field job)
as reviewer review show "$JM"
as reviewer review approve "$JM" --digest "$(digest "$JM")" >/dev/null
as acme export get "$JM" -o "$WORK/pension_model.csv"
cat "$WORK/pension_model.csv"

say "15. Custom jobs: the vendor's own program, behind disclosure checks and a reviewer"
if [ "$ISOLATION" = container ]; then
  note "The operator registers a runtime image (here an empty root: the example programs are static binaries)."
  mkdir -p "$WORK/runtime/etc"; echo "NAME=demo-static" >"$WORK/runtime/etc/os-release"
  as operator runtime register --name static --rootfs "$WORK/runtime"
  GC=$("$VEIL" --profile acme grant apply --scenario "Own district analysis" --purpose "District profile computed by our own code" \
      --dataset residents:district,birth_year --mode model --valid-for 30d -o json | awk -F'"' '/"id":/ {print $4; exit}')
  for who in operator bureau civil; do as $who grant approve "$GC" >/dev/null; done
  note "The program finds /in/residents.parquet (the person replaced by a per-job pseudonym) and writes to /out; no network."
  note "A program that copies its input rows out is flagged and cannot leave without a recorded override:"
  JC=$("$VEIL" --profile acme job submit --grant "$GC" --wait --runtime static --program bin/vendorprog-copy --datasets residents | field job)
  as reviewer review show "$JC" | grep -E "^(mechanism|FINDING|approvals)" | head -8
  refused reviewer review approve "$JC" --digest "$(digest "$JC")"
  as reviewer review reject "$JC" --reason "row-level data"
  note "A program that writes persons per district, rounded and with small groups left out, passes the checks:"
  JA=$("$VEIL" --profile acme job submit --grant "$GC" --wait --runtime static --program bin/vendorprog-aggregate --datasets residents | field job)
  as reviewer review show "$JA" | tail -12
  as reviewer review approve "$JA" --digest "$(digest "$JA")" >/dev/null
  as acme export get "$JA" -o "$WORK/district_profile.tar"
  tar -tvf "$WORK/district_profile.tar"
else
  note "custom jobs need container isolation (root); skipped"
fi

say "16. Development: vendors write jobs on a dev twin, then promote them unchanged"
note "The provider builds a masked twin of residents (every column by its catalog rule); a reviewer releases it."
TW=$("$VEIL" --profile civil dataset twin residents --masked --rows 500 | field job)
as reviewer review show "$TW" | sed -n '1,4p;/output as it would be released/,+4p'
as reviewer review approve "$TW" --digest "$(digest "$TW")" >/dev/null
note "A synthetic twin instead: rows drawn from DP marginals (district x sex kept jointly), spending ε=1 of the dataset's budget:"
TS=$("$VEIL" --profile civil dataset synthesize residents --epsilon 1 --rows 300 --pair district,sex | field job)
as reviewer review show "$TS" | sed -n '3,4p;/output as it would be released/,+3p'
as reviewer review reject "$TS" --reason "the masked twin serves this grant" >/dev/null
note "A dev run: the same validation and sandbox, on the twin, no budget spent, the output at once:"
printf '%s[acme]$ veil dev run --grant %s --epsilon 0.5 --sql "SELECT district, COUNT(*) ..."%s\n' "$dim" "$GD" "$off"
DEV=$("$VEIL" --profile acme dev run --grant "$GD" --epsilon 0.5 --sql "SELECT district, COUNT(*) AS residents FROM residents GROUP BY district")
echo "$DEV"
JV=$(echo "$DEV" | field job)
note "Promoted, the same job runs on the data, spends its epsilon and waits for review:"
as acme dev promote "$JV"

say "17. Data fusion: the vendor's own customers joined with public data on a pseudonymized key"
note "The grant includes residents.phone as a key (its reviewers allowed it); the vendor never sees a phone of the data."
as acme fusion upload --grant "$G" --name customers --key phone --match residents.phone "$WORK/acme-customers.csv"
as bureau fusion approve fusion_acme_customers
JF=$("$VEIL" --profile acme job submit --grant "$G" --wait \
    --sql "SELECT r.district, COUNT(*) AS customers, AVG(f.spend) AS mean_spend FROM fusion_acme_customers f JOIN residents r ON f.resident_id = r.resident_id GROUP BY r.district" | field job)
as reviewer review show "$JF" | tail -8
note "Another tenant does not see it; when the grant ends, it is deleted (see the audit log)."
as rival dataset list
note "Vendors report data problems; the provider answers:"
FB=$("$VEIL" --profile acme dataset feedback social_insurance --column monthly_wage --message "some wages look monthly, others yearly" -o json | awk -F'"' '/"id":/ {print $4; exit}')
as hr dataset feedback list --status open
as hr dataset feedback resolve "$FB" --note "checked: all are monthly; documented in the schema title"

say "18. Auditor: every step is in a Merkle-tree log with signed checkpoints"
as auditor audit tail -n 12
as auditor audit verify --key "$DATA/platform.pub"
as auditor audit prove 3 --key "$DATA/platform.pub" | tail -1

say "19. Operator: probes and metrics for monitoring"
note "/healthz (alive) and /readyz (store, sandbox, disk) need no token and say only ok or not ready;"
note "/metrics (Prometheus) is the operator's. Labels are route patterns, kinds, tenants, datasets: no data."
SOCK=$DATA/veil.sock
printf '%s$ curl --unix-socket %s http://veil/healthz%s\n' "$dim" "$SOCK" "$off"
curl -fsS --unix-socket "$SOCK" http://veil/healthz
printf '%s$ curl --unix-socket %s http://veil/readyz%s\n' "$dim" "$SOCK" "$off"
curl -fsS --unix-socket "$SOCK" http://veil/readyz
printf '%s$ curl -H "Authorization: Bearer $OPERATOR_TOKEN" --unix-socket %s http://veil/metrics | grep ...%s\n' "$dim" "$SOCK" "$off"
curl -fsS -H "Authorization: Bearer $OP" --unix-socket "$SOCK" http://veil/metrics >"$WORK/metrics.txt"
grep -E '^veil_(jobs|review_queue_outputs|budget_epsilon_remaining|audit_log_entries|job_duration_seconds_count)[{ ]' "$WORK/metrics.txt"

say "20. The web console: the same work in a browser, for every role"
ADDR=$(sed -n 's/.*msg=listening addr=\(127\.0\.0\.1:[0-9]*\).*/\1/p' "$WORK/daemon.log" | head -1)
note "Sign in at http://$ADDR/ui/ with a principal's token, or use a one-time link (POST /ui/links with the token):"
LINK=$(curl -fsS -X POST -H "Authorization: Bearer $REVIEWER_TOKEN" --unix-socket "$SOCK" http://veil/ui/links | sed -n 's/.*"path":"\([^"]*\)".*/\1/p')
[ -n "$ADDR" ] && [ -n "$LINK" ] || { echo "demo: the console did not answer" >&2; exit 1; }
echo "   console:                 http://$ADDR/ui/"
echo "   reviewer's sign-in link: http://$ADDR$LINK   (one use, 15 minutes)"
if [ -t 0 ] && [ -t 1 ]; then
  read -r -p "   The daemon keeps running for the console; press Enter to stop it. " _ || true
fi

say "Done. The daemon log is $WORK/daemon.log; the data directory is $DATA."
