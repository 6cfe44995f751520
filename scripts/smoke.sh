#!/usr/bin/env bash
# Seed 001's production smoke tests ("AI Image Enhancer - Go-Live Runbook", Smoke Tests),
# runnable against any deployment of imageopt:
#
#   scripts/smoke.sh BASE_URL            e.g. scripts/smoke.sh https://images.example.com
#
# 1. generate (POST /api/ai-image/generate): 200, success, a non-empty data.imageUrl, and
#    usage.used one more than before;
# 2. owner-gating of the result: 200 with the owner's guest_id cookie, 403 without;
# 3. CSRF negative: a generate without Origin and CSRF token is 403;
# 4. the SDXL variant with steps=20 (200), and steps=21 refused (400: 20 is SDXL's cap);
# 5. the security headers (HSTS, X-Frame-Options, Referrer-Policy, Permissions-Policy, nosniff).
#
# The commands are the seed's, with our base URL and model names, python3 instead of node
# to read JSON, and two changes the seed's text needs here: our guest_id cookie is HttpOnly, so
# curl's cookie jar writes it as a "#HttpOnly_" line, which the seed's awk would skip; and our
# SDXL is image-to-image with a required prompt, so its request sends one.
#
# Environment: SMOKE_IMAGE (a local JPEG/PNG/WebP; default: the seed's sample, downloaded),
# SMOKE_MODEL (default nightmareai/real-esrgan), SMOKE_SDXL_MODEL (default stability-ai/sdxl).
# Needs curl and python3. Exit status 0 when every check passed, 1 otherwise.
# Each run creates two guest sessions and two generations (counted in their quotas).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BASE_URL" >&2
  exit 2
fi
export APP_ORIGIN="${1%/}"
MODEL="${SMOKE_MODEL:-nightmareai/real-esrgan}"
SDXL_MODEL="${SMOKE_SDXL_MODEL:-stability-ai/sdxl}"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
failures=0
pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; failures=$((failures + 1)); }
json() { python3 -c 'import json,sys; o=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"o": o}))' "$@"; }
status_of() { awk 'toupper($1) ~ /^HTTP\// {code=$2} END {print code}' "$1"; }

# 1) a sample image (~35 KB) and helper vars
if [ -n "${SMOKE_IMAGE:-}" ]; then
  IMAGE=$(cd "$(dirname "$SMOKE_IMAGE")" && pwd)/$(basename "$SMOKE_IMAGE")
else
  curl -fsSL -o eh_test.jpg https://upload.wikimedia.org/wikipedia/commons/3/3f/JPEG_example_flower.jpg
  IMAGE="$WORK/eh_test.jpg"
fi

# 2) successful generate
CSRF=$(LC_ALL=C tr -dc A-Za-z0-9 </dev/urandom | head -c 16 || true)
# Seed a guest_id cookie
curl -s -c jar.txt -b jar.txt -o usage.json "$APP_ORIGIN/api/ai-image/usage"
GUEST_ID=$(awk '($0 !~ /^#/ || $0 ~ /^#HttpOnly_/) && $6=="guest_id"{print $7}' jar.txt | tail -n1)
USED_BEFORE=$(json usage.json 'o["data"]["usage"]["used"]' 2>/dev/null || echo "?")
if [ -n "$GUEST_ID" ]; then pass "usage seeds a guest_id cookie"; else fail "usage gave no guest_id cookie"; fi

curl -sS -D gen_headers.txt -o resp.json \
  -H "Origin: $APP_ORIGIN" \
  -H "Cookie: guest_id=$GUEST_ID; csrf_token=$CSRF" \
  -H "X-CSRF-Token: $CSRF" \
  -F "image=@$IMAGE" \
  --form-string "model=$MODEL" \
  "$APP_ORIGIN/api/ai-image/generate"
json resp.json '(o["success"], o.get("data", {}).get("imageUrl"), o.get("data", {}).get("usage"))' || true
CODE=$(status_of gen_headers.txt)
IMG_URL=$(json resp.json 'o.get("data", {}).get("imageUrl") or ""' 2>/dev/null || true)
USED_AFTER=$(json resp.json 'o["data"]["usage"]["used"]' 2>/dev/null || echo "?")
if [ "$CODE" = "200" ] && [ "$(json resp.json 'o["success"]' 2>/dev/null)" = "True" ] && [ -n "$IMG_URL" ]; then
  pass "generate: HTTP 200, success, imageUrl $IMG_URL"
else
  fail "generate: HTTP $CODE, expected 200 with data.imageUrl: $(head -c 300 resp.json)"
fi
if [ "$USED_BEFORE" != "?" ] && [ "$USED_AFTER" = "$((USED_BEFORE + 1))" ]; then
  pass "generate: usage.used incremented ($USED_BEFORE -> $USED_AFTER)"
else
  fail "generate: usage.used $USED_BEFORE -> $USED_AFTER, expected one more"
fi

# 3) R2 owner-gating
if [ -n "$IMG_URL" ]; then
  # 200 with owner cookie
  OWNER=$(curl -s -o /dev/null -w "%{http_code}\n" -H "Cookie: guest_id=$GUEST_ID" "$IMG_URL")
  # 403 without cookie
  ANON=$(curl -s -o /dev/null -w "%{http_code}\n" "$IMG_URL")
  if [ "$OWNER" = "200" ]; then pass "result: 200 with the owner's cookie"; else fail "result: $OWNER with the owner's cookie, expected 200"; fi
  if [ "$ANON" = "403" ]; then pass "result: 403 without cookie"; else fail "result: $ANON without cookie, expected 403"; fi
else
  fail "owner-gating: no imageUrl to check"
fi

# 4) CSRF negative
CSRF_CODE=$(curl -s -o /dev/null -w "%{http_code}\n" \
  -F "image=@$IMAGE" \
  --form-string "model=$MODEL" \
  "$APP_ORIGIN/api/ai-image/generate")
if [ "$CSRF_CODE" = "403" ]; then pass "CSRF negative: 403"; else fail "CSRF negative: $CSRF_CODE, expected 403"; fi

# 5) SDXL generate (steps=20, the cap), and one step more refused
CSRF=$(LC_ALL=C tr -dc A-Za-z0-9 </dev/urandom | head -c 16 || true)
curl -sS -D gen_cf_sdxl.txt -o resp_cf_sdxl.json \
  -H "Origin: $APP_ORIGIN" \
  -H "Cookie: csrf_token=$CSRF" \
  -H "X-CSRF-Token: $CSRF" \
  -F "image=@$IMAGE" \
  --form-string "model=$SDXL_MODEL" \
  --form-string "prompt=the same photo, sharper" \
  --form-string "steps=20" \
  "$APP_ORIGIN/api/ai-image/generate"
SDXL_CODE=$(status_of gen_cf_sdxl.txt)
if [ "$SDXL_CODE" = "200" ]; then pass "SDXL steps=20: HTTP 200"; else fail "SDXL steps=20: HTTP $SDXL_CODE: $(head -c 300 resp_cf_sdxl.json)"; fi
OVER_CODE=$(curl -s -o over.json -w "%{http_code}\n" \
  -H "Origin: $APP_ORIGIN" \
  -H "Cookie: guest_id=$GUEST_ID; csrf_token=$CSRF" \
  -H "X-CSRF-Token: $CSRF" \
  -F "image=@$IMAGE" \
  --form-string "model=$SDXL_MODEL" \
  --form-string "prompt=the same photo, sharper" \
  --form-string "steps=21" \
  "$APP_ORIGIN/api/ai-image/generate")
if [ "$OVER_CODE" = "400" ]; then pass "SDXL steps=21: 400"; else fail "SDXL steps=21: $OVER_CODE, expected 400"; fi

# 6) security headers on the generate response
for header in Strict-Transport-Security X-Frame-Options Referrer-Policy Permissions-Policy; do
  if grep -qi "^$header:" gen_headers.txt; then pass "header $header"; else fail "header $header missing"; fi
done
if grep -qi '^X-Content-Type-Options: *nosniff' gen_headers.txt; then pass "header X-Content-Type-Options: nosniff"; else fail "header X-Content-Type-Options: nosniff missing"; fi

if [ "$failures" -ne 0 ]; then
  echo "smoke: $failures check(s) failed against $APP_ORIGIN"
  exit 1
fi
echo "smoke: all checks passed against $APP_ORIGIN"
