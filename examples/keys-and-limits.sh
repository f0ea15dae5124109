#!/usr/bin/env bash
set -u
# Scoped keys, the audit log, per-key rate limits and a user's erasure, over HTTP with curl
# and the official Personalizer client, on a throwaway server (port 8140, a temporary
# data dir). Run from a checkout after `make run` has built .venv: bash examples/keys-and-limits.sh
cd "$(dirname "$0")/.."
D=$(mktemp -d)/data
R=.venv/bin/recloop
ADMIN=$($R keys add ops --scope admin --data-dir $D)
SHOP=$($R keys add shop --scope rank --data-dir $D)
RECLOOP_PIPELINE=thread RECLOOP_RATE_LIMIT_PER_SECOND=0.2 RECLOOP_RATE_LIMIT_BURST=4 RECLOOP_RATE_LIMIT_KEYS='{"ops":{"per_second":100,"burst":100}}' \
  $R serve --data-dir $D --port 8140 --log-level warning > "$D.server.log" 2>&1 &
PID=$!
for i in $(seq 50); do curl -s localhost:8140/healthz >/dev/null && break; sleep 0.2; done
U=localhost:8140
BODY='{"context":{"user_id":"ann","time":"morning"},"actions":[{"id":"news","features":{"t":"n"}},{"id":"sport","features":{"t":"s"}}],"event_id":"demo-1"}'
echo "## rank with the rank key";  curl -s -w ' -> %{http_code}\n' -X POST $U/v1/rank -H "X-API-Key: $SHOP" -H 'content-type: application/json' -d "$BODY"
echo "## the same rank retried";  curl -s -w ' -> %{http_code}\n' -X POST $U/v1/rank -H "X-API-Key: $SHOP" -H 'content-type: application/json' -d "$BODY"
echo "## reward";  curl -s -w ' -> %{http_code}\n' -X POST $U/v1/events/demo-1/reward -H "X-API-Key: $SHOP" -H 'content-type: application/json' -d '{"value":1}'
echo "## no key";  curl -s -w ' -> %{http_code}\n' -X POST $U/v1/rank -H 'content-type: application/json' -d "$BODY"
echo "## rank key on an admin route";  curl -s -w ' -> %{http_code}\n' $U/v1/models -H "X-API-Key: $SHOP"
echo "## admin makes a key";  NEW=$(curl -s -X POST $U/v1/keys -H "X-API-Key: $ADMIN" -H 'content-type: application/json' -d '{"name":"ci","scope":"rank"}'); echo "$NEW" | sed 's/"key":"[^"]*"/"key":"rk_…"/'
CI=$(echo "$NEW" | python3 -c 'import json,sys;print(json.load(sys.stdin)["key"])')
echo "## the new key works at once";  curl -s -o /dev/null -w '%{http_code}\n' -X POST $U/v1/rank -H "X-API-Key: $CI" -H 'content-type: application/json' -d '{"context":{"u":1},"actions":[{"id":"a"}]}'
echo "## admin revokes it";  curl -s -o /dev/null -w '%{http_code}\n' -X DELETE $U/v1/keys/ci -H "X-API-Key: $ADMIN"
echo "## the revoked key";  curl -s -w ' -> %{http_code}\n' -X POST $U/v1/rank -H "X-API-Key: $CI" -H 'content-type: application/json' -d '{"context":{"u":1},"actions":[{"id":"a"}]}'
echo "## rate limit: burst 4, 0.2/s (the shop key has spent 3)"
for i in 1 2 3; do curl -s -o /dev/null -D - -X POST $U/v1/rank -H "X-API-Key: $SHOP" -H 'content-type: application/json' -d '{"context":{"u":1},"actions":[{"id":"a"}]}' | grep -i -E '^HTTP|^retry-after' | tr -d '\r' | paste -sd' '; done
curl -s -X POST $U/v1/rank -H "X-API-Key: $SHOP" -H 'content-type: application/json' -d '{"context":{"u":1},"actions":[{"id":"a"}]}'; echo
echo "## Personalizer client: the admin key (its own limit), the spent shop key, a wrong key"
.venv/bin/python - "$U" "$ADMIN" "$SHOP" <<'PY'
import sys
from azure.ai.personalizer import PersonalizerClient, PersonalizerAdministrationClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
url, admin, shop = "http://" + sys.argv[1], sys.argv[2], sys.argv[3]
req = {"contextFeatures": [{"time": "evening"}], "actions": [{"id": "a", "features": [{"x": 1}]}, {"id": "b", "features": [{"x": 2}]}]}
c = PersonalizerClient(url, AzureKeyCredential(admin), retry_total=0)
a = c.rank({**req, "eventId": "sdk-1"}); print("rank ->", a["rewardActionId"]); c.reward("sdk-1", {"value": 1.0}); print("reward -> ok")
cfg = PersonalizerAdministrationClient(url, AzureKeyCredential(admin), retry_total=0).get_service_configuration(); print("admin config ->", sorted(cfg)[:3])
for name, key in (("shop (rank key, spent)", shop), ("wrong", "rk_nope")):
    try:
        PersonalizerClient(url, AzureKeyCredential(key), retry_total=0).rank(req)
    except HttpResponseError as e:
        print(name, "->", e.status_code, e.error.code if e.error else "", e.response.headers.get("retry-after"))
try:
    PersonalizerAdministrationClient(url, AzureKeyCredential(shop), retry_total=0).get_service_configuration()
except HttpResponseError as e:
    print("shop on admin ->", e.status_code, e.error.code if e.error else "")
PY
echo "## healthz without a key, then with the admin key"
curl -s $U/healthz; echo; curl -s $U/healthz -H "X-API-Key: $ADMIN"; echo
echo "## metrics without a key"; curl -s -o /dev/null -w '%{http_code}\n' $U/metrics
curl -s $U/metrics -H "X-API-Key: $ADMIN" | grep -E '^recloop_rejected_total'
echo "## forget ann"; curl -s -X DELETE $U/v1/users/ann -H "X-API-Key: $ADMIN"; echo
echo "## audit"; $R audit --limit 10 --data-dir $D
kill $PID; wait $PID 2>/dev/null
