#!/bin/sh
# Demo traffic for the compose stack (runs in the curlimages/curl container). Creates, through
# LiteLLM's admin API, a team and a key with budgets and rate limits (fixed ids, so a restart
# reuses them; "already exists" errors are ignored), then sends one chat request a second with
# that key, one in ten to the always-failing mock model.
set -u
API=http://litellm:4000
ADMIN="Authorization: Bearer ${LITELLM_MASTER_KEY}"
JSON="Content-Type: application/json"
KEY=sk-demo-traffic-0001

curl -sS -o /dev/null -H "$ADMIN" -H "$JSON" "$API/team/new" \
  -d '{"team_id": "demo-team", "team_alias": "demo-team", "max_budget": 5, "budget_duration": "30d", "rpm_limit": 600, "tpm_limit": 200000}' || true
curl -sS -o /dev/null -H "$ADMIN" -H "$JSON" "$API/user/new" \
  -d '{"user_id": "demo-user", "max_budget": 2, "budget_duration": "7d"}' || true
curl -sS -o /dev/null -H "$ADMIN" -H "$JSON" "$API/key/generate" \
  -d "{\"key\": \"$KEY\", \"key_alias\": \"demo-key\", \"team_id\": \"demo-team\", \"user_id\": \"demo-user\", \"max_budget\": 1, \"budget_duration\": \"7d\", \"rpm_limit\": 120, \"tpm_limit\": 50000}" || true

i=0
while true; do
  i=$((i + 1))
  model=demo-gpt
  [ $((i % 10)) -eq 0 ] && model=demo-failing
  curl -sS -o /dev/null -w "%{http_code} $model\n" -H "Authorization: Bearer $KEY" -H "$JSON" \
    "$API/v1/chat/completions" \
    -d "{\"model\": \"$model\", \"messages\": [{\"role\": \"user\", \"content\": \"Say hello ($i)\"}]}" || true
  sleep 1
done
