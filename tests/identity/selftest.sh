#!/usr/bin/env bash
# Self-check of the identity harness: provider.mjs (oidc-provider) and smart-client.mjs (jose).
# Needs node (>= 20.12), npm (only if node_modules is missing) and curl. Talks to 127.0.0.1 only.
# Prints one line per check and ends with "N passed, M failed"; exits non-zero on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

if [[ ! -d node_modules/oidc-provider || ! -d node_modules/jose ]]; then
  echo "== npm ci"
  npm ci --no-audit --no-fund
fi

T="$(mktemp -d)"
PIDS=()
cleanup() {
  exec 7>&- 2>/dev/null || true
  exec 8>&- 2>/dev/null || true
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'echo "FAIL - aborted at line $LINENO"; echo "$PASSED passed, $((FAILED + 1)) failed"' ERR

PASSED=0
FAILED=0
ok()   { PASSED=$((PASSED + 1)); echo "ok   - $*"; }
bad()  { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }
check() { # check "description" <command...>
  local what="$1"; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
die() { bad "$*"; echo "$PASSED passed, $FAILED failed"; exit 1; }

# js EXPR: evaluate a JS expression over the JSON document on stdin (bound to `d`).
js() {
  node -e '
    let s = ""; process.stdin.on("data", (c) => (s += c)).on("end", () => {
      const d = JSON.parse(s);
      const v = Function("d", "return (" + process.argv[1] + ")")(d);
      process.stdout.write(typeof v === "string" ? v : JSON.stringify(v));
    });' "$1"
}
# jwt_part N TOKEN: decode part N (0 header, 1 payload) of a compact JWS as JSON.
jwt_part() {
  node -e 'process.stdout.write(Buffer.from(process.argv[2].split(".")[+process.argv[1]], "base64url").toString())' "$1" "$2"
}
# wait_line FILE: wait until FILE holds a full line (max 20 s)
wait_line() {
  for _ in $(seq 1 200); do
    if [[ -s "$1" ]] && [[ "$(tail -c1 "$1" | od -An -c | tr -d ' ')" == '\n' ]]; then return 0; fi
    sleep 0.1
  done
  return 1
}
urlencode() { node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' "$1"; }

CB_PORT=9   # nothing listens there: we never follow the final redirect to the client
REDIRECT_URI="http://127.0.0.1:${CB_PORT}/session/callback"
CLIENT_ID=careloop-console
CLIENT_SECRET='s3cret/with+special&chars'
SCRIPT_SECRET=script-secret

ACCOUNTS="$HERE/accounts.sample.json"   # alice (coordinator), bob (facility_staff, fac-01), careloop-script

# ----------------------------------------------------------------------------------------------
echo "== SMART keys and JWKS server"
node smart-client.mjs keys --alg RS384 --kid rsa-1 >"$T/k-rsa.json"
node smart-client.mjs keys --alg ES384 --kid ec-1 >"$T/k-ec.json"
check "keys RS384: public JWK has kid/alg/use and no private part" \
  test "$(js '[d.public.kid, d.public.alg, d.public.use, d.public.kty, "d" in d.public, !!d.private.d].join(",")' <"$T/k-rsa.json")" = "rsa-1,RS384,sig,RSA,false,true"
check "keys ES384: P-384 EC key" \
  test "$(js '[d.public.kid, d.public.alg, d.public.crv].join(",")' <"$T/k-ec.json")" = "ec-1,ES384,P-384"

mkfifo "$T/jwks.in"
node smart-client.mjs serve-jwks --port 0 --jwks "$T/k-rsa.json" <"$T/jwks.in" >"$T/jwks.out" 2>"$T/jwks.err" &
JWKS_PID=$!; PIDS+=("$JWKS_PID")
exec 8>"$T/jwks.in"
wait_line "$T/jwks.out" || die "serve-jwks did not start: $(cat "$T/jwks.err")"
JWKS_URL="$(js d.url <"$T/jwks.out")"
echo "     jwks url: $JWKS_URL"
check "serve-jwks serves only the public key" \
  test "$(curl -sf "$JWKS_URL" | js 'd.keys.map(k => k.kid + ":" + ("d" in k)).join()')" = "rsa-1:false"

# ----------------------------------------------------------------------------------------------
echo "== provider"
mkfifo "$T/prov.in"
node provider.mjs --port 0 --client-id "$CLIENT_ID" --client-secret "$CLIENT_SECRET" \
  --redirect-uri "$REDIRECT_URI" --accounts "$ACCOUNTS" \
  --script-client-secret "$SCRIPT_SECRET" \
  --smart-client-id smart-backend --smart-jwks-uri "$JWKS_URL" \
  <"$T/prov.in" >"$T/prov.out" 2>"$T/prov.err" &
PROV_PID=$!; PIDS+=("$PROV_PID")
exec 7>"$T/prov.in"
wait_line "$T/prov.out" || die "provider did not start: $(cat "$T/prov.err")"
echo "     provider stdout: $(cat "$T/prov.out")"
check "provider printed exactly one stdout line" test "$(wc -l <"$T/prov.out")" -eq 1
ISSUER="$(js d.issuer <"$T/prov.out")"
PORT="$(js d.port <"$T/prov.out")"
check "issuer is http://127.0.0.1:<port>" test "$ISSUER" = "http://127.0.0.1:$PORT"

curl -sf "$ISSUER/.well-known/openid-configuration" >"$T/disc.json"
check "discovery issuer matches" test "$(js d.issuer <"$T/disc.json")" = "$ISSUER"
AUTH_EP="$(js d.authorization_endpoint <"$T/disc.json")"
TOKEN_EP="$(js d.token_endpoint <"$T/disc.json")"
USERINFO_EP="$(js d.userinfo_endpoint <"$T/disc.json")"
JWKS_URI="$(js d.jwks_uri <"$T/disc.json")"
END_SESSION_EP="$(js d.end_session_endpoint <"$T/disc.json")"
echo "     authorization=$AUTH_EP token=$TOKEN_EP userinfo=$USERINFO_EP jwks=$JWKS_URI end_session=$END_SESSION_EP"
check "discovery advertises S256, careloop scope and careloop_* claims" \
  test "$(js '[d.code_challenge_methods_supported.includes("S256"), d.scopes_supported.includes("careloop"), d.claims_supported.includes("careloop_role"), !!d.end_session_endpoint].join()' <"$T/disc.json")" = "true,true,true,true"
check "provider JWKS has an RS256 key" \
  test "$(curl -sf "$JWKS_URI" | js 'd.keys.some(k => k.alg === "RS256" && k.kty === "RSA" && !("d" in k))')" = "true"

# ----------------------------------------------------------------------------------------------
# login USER JAR EXTRA_AUTH_PARAMS... -> sets CODE, STATE_BACK, ISS_BACK, VERIFIER; uses only curl.
login() {
  local user="$1" jar="$2"; shift 2
  VERIFIER="$(node -e 'process.stdout.write(require("crypto").randomBytes(32).toString("base64url"))')"
  local challenge state nonce r code loc html action
  challenge="$(node -e 'process.stdout.write(require("crypto").createHash("sha256").update(process.argv[1]).digest("base64url"))' "$VERIFIER")"
  state="st-$RANDOM"; nonce="n-$RANDOM"; NONCE="$nonce"
  # 1. authorization request -> 303 to /interaction/<uid>
  r="$(curl -s -c "$jar" -b "$jar" -o /dev/null -w '%{http_code} %{redirect_url}' -G "$AUTH_EP" \
    --data-urlencode "client_id=$CLIENT_ID" --data-urlencode response_type=code \
    --data-urlencode "scope=openid profile email careloop" \
    --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "state=$state" \
    --data-urlencode "nonce=$nonce" --data-urlencode "code_challenge=$challenge" \
    --data-urlencode code_challenge_method=S256 "$@")"
  code="${r%% *}"; loc="${r#* }"
  [[ "$code" == 303 && "$loc" == "$ISSUER/interaction/"* ]] || { echo "     /auth answered $r" >&2; return 1; }
  # 2. GET the interaction page: the login form
  html="$(curl -s -c "$jar" -b "$jar" "$loc")"
  action="$(printf '%s' "$html" | sed -n 's/.*<form[^>]*action="\([^"]*\)".*/\1/p' | head -1 | sed 's/&amp;/\&/g')"
  [[ "$html" == *'name="prompt" value="login"'* && "$html" == *'name="login"'* && "$html" == *'name="password"'* ]] \
    || { echo "     unexpected interaction page" >&2; return 1; }
  # 3. POST the login form -> 303 to /auth/<uid> (resume)
  r="$(curl -s -c "$jar" -b "$jar" -o /dev/null -w '%{http_code} %{redirect_url}' \
    --data-urlencode prompt=login --data-urlencode "login=$user" --data-urlencode password=anything "$action")"
  code="${r%% *}"; loc="${r#* }"
  [[ "$code" == 303 && "$loc" == "$ISSUER/auth/"* ]] || { echo "     login POST answered $r" >&2; return 1; }
  # 4. GET the resume URL -> 303 to redirect_uri?code=...&state=...&iss=... (consent is automatic)
  r="$(curl -s -c "$jar" -b "$jar" -o /dev/null -w '%{http_code} %{redirect_url}' "$loc")"
  code="${r%% *}"; loc="${r#* }"
  [[ "$code" == 303 && "$loc" == "$REDIRECT_URI?"* ]] || { echo "     resume answered $r" >&2; return 1; }
  CALLBACK="$loc"
  CODE="$(node -e 'const u = new URL(process.argv[1]); process.stdout.write(u.searchParams.get("code") || "")' "$loc")"
  STATE_BACK="$(node -e 'process.stdout.write(new URL(process.argv[1]).searchParams.get("state") || "")' "$loc")"
  ISS_BACK="$(node -e 'process.stdout.write(new URL(process.argv[1]).searchParams.get("iss") || "")' "$loc")"
  [[ -n "$CODE" && "$STATE_BACK" == "$state" && "$ISS_BACK" == "$ISSUER" ]]
}
BASIC="$(node -e 'const e = (s) => encodeURIComponent(s); process.stdout.write(Buffer.from(e(process.argv[1]) + ":" + e(process.argv[2])).toString("base64"))' "$CLIENT_ID" "$CLIENT_SECRET")"

echo "== authorization code + PKCE login as alice (curl + cookie jar)"
check "login flow: /auth -> /interaction/<uid> -> POST login -> /auth/<uid> -> callback" login alice "$T/jar-alice"
echo "     callback: $CALLBACK"
echo "     cookies: $(grep -v '^# ' "$T/jar-alice" | awk 'NF >= 7 {print $6 "(path " $3 ")"}' | sort -u | tr '\n' ' ')"
check "provider cookies are op_session / op_interaction / op_interaction_resume" \
  bash -c 'grep -q "	op_session	" "$1" && grep -q "	op_interaction	" "$1" && grep -q "	op_interaction_resume	" "$1"' _ "$T/jar-alice"
curl -s -o "$T/tok-alice.json" -w '%{http_code}' -H "authorization: Basic $BASIC" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER" \
  "$TOKEN_EP" >"$T/status"
check "token exchange (client_secret_basic) -> 200" test "$(cat "$T/status")" = 200
ID_TOKEN="$(js d.id_token <"$T/tok-alice.json")"
AT_ALICE="$(js d.access_token <"$T/tok-alice.json")"
jwt_part 1 "$ID_TOKEN" >"$T/idt.json"
echo "     id_token header:  $(jwt_part 0 "$ID_TOKEN")"
echo "     id_token payload: $(cat "$T/idt.json")"
check "ID token: sub=alice, aud=client, iss, nonce" \
  test "$(js '[d.sub, d.aud, d.iss, d.nonce].join()' <"$T/idt.json")" = "alice,$CLIENT_ID,$ISSUER,$NONCE"
check "ID token: careloop_role=coordinator, careloop_facility=null, careloop_peer_id=null, name" \
  test "$(js 'JSON.stringify([d.careloop_role, d.careloop_facility, d.careloop_peer_id, d.name, "careloop_facility" in d, "careloop_peer_id" in d])' <"$T/idt.json")" \
  = '["coordinator",null,null,"Alice Coordinator",true,true]'
check "ID token verifies with jose against the provider JWKS (smart-client verify)" \
  test "$(node smart-client.mjs verify --jwks-url "$JWKS_URI" --token "$ID_TOKEN" --issuer "$ISSUER" --audience "$CLIENT_ID" | js d.valid)" = true
curl -s -H "authorization: Bearer $AT_ALICE" "$USERINFO_EP" >"$T/ui.json"
echo "     userinfo: $(cat "$T/ui.json")"
check "userinfo carries careloop_role and name" \
  test "$(js '[d.sub, d.careloop_role, d.name].join()' <"$T/ui.json")" = "alice,coordinator,Alice Coordinator"
check "authorization code cannot be redeemed twice" \
  test "$(curl -s -H "authorization: Basic $BASIC" --data-urlencode grant_type=authorization_code \
    --data-urlencode "code=$CODE" --data-urlencode "redirect_uri=$REDIRECT_URI" \
    --data-urlencode "code_verifier=$VERIFIER" "$TOKEN_EP" | js d.error)" = invalid_grant

echo "== SSO: a second /auth with alice's cookie jar skips the login form"
r="$(curl -s -c "$T/jar-alice" -b "$T/jar-alice" -o /dev/null -w '%{http_code} %{redirect_url}' -G "$AUTH_EP" \
  --data-urlencode "client_id=$CLIENT_ID" --data-urlencode response_type=code --data-urlencode scope=openid \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode state=s2 \
  --data-urlencode code_challenge=E9Melhoa2OwvFrEMTJguCdLUp9l7bXaiu-qZVX6-DSw --data-urlencode code_challenge_method=S256)"
check "existing session: /auth answers 303 straight to the callback (no form)" \
  bash -c '[[ "$1" == "303 $2?code="* ]]' _ "$r" "$REDIRECT_URI"

echo "== PKCE is enforced"
r="$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -G "$AUTH_EP" \
  --data-urlencode "client_id=$CLIENT_ID" --data-urlencode response_type=code --data-urlencode scope=openid \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode state=s3)"
check "authorization request without code_challenge is refused" \
  bash -c '[[ "$1" == *"error=invalid_request"* ]]' _ "$r"
login bob "$T/jar-bob" >/dev/null || true
check "wrong code_verifier -> invalid_grant" \
  test "$(curl -s -H "authorization: Basic $BASIC" --data-urlencode grant_type=authorization_code \
    --data-urlencode "code=$CODE" --data-urlencode "redirect_uri=$REDIRECT_URI" \
    --data-urlencode "code_verifier=${VERIFIER}x" "$TOKEN_EP" | js d.error)" = invalid_grant

echo "== login with resource=urn:careloop-api -> JWT access token (bob, client_secret_post)"
check "login flow with resource" login bob "$T/jar-bob2" --data-urlencode resource=urn:careloop-api
curl -s -o "$T/tok-bob.json" --data-urlencode "client_id=$CLIENT_ID" --data-urlencode "client_secret=$CLIENT_SECRET" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER" "$TOKEN_EP"
AT_BOB="$(js d.access_token <"$T/tok-bob.json")"
echo "     access_token header:  $(jwt_part 0 "$AT_BOB")"
echo "     access_token payload: $(jwt_part 1 "$AT_BOB")"
check "token exchange (client_secret_post) returned a JWT access token + ID token" \
  test "$(js '[d.token_type, d.access_token.split(".").length, !!d.id_token].join()' <"$T/tok-bob.json")" = "Bearer,3,true"
check "JWT access token: aud=careloop-api, sub=bob, careloop_facility=fac-01, scope=careloop, typ at+jwt" \
  test "$(node smart-client.mjs verify --jwks-url "$JWKS_URI" --token "$AT_BOB" --issuer "$ISSUER" --audience careloop-api --typ at+jwt \
    | js '[d.valid, d.payload.sub, d.payload.careloop_role, d.payload.careloop_facility, d.payload.scope, d.protectedHeader.alg].join()')" \
  = "true,bob,facility_staff,fac-01,careloop,RS256"
check "ID token of bob carries careloop_facility=fac-01" \
  test "$(jwt_part 1 "$(js d.id_token <"$T/tok-bob.json")" | js d.careloop_facility)" = fac-01

echo "== unmapped user (not in --accounts) can log in, without careloop claims"
check "login flow as mallory" login mallory "$T/jar-mallory"
curl -s -o "$T/tok-m.json" -H "authorization: Basic $BASIC" --data-urlencode grant_type=authorization_code \
  --data-urlencode "code=$CODE" --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER" "$TOKEN_EP"
echo "     id_token payload: $(jwt_part 1 "$(js d.id_token <"$T/tok-m.json")")"
check "ID token of mallory: sub=mallory and no careloop_role" \
  test "$(jwt_part 1 "$(js d.id_token <"$T/tok-m.json")" | js '[d.sub, "careloop_role" in d].join()')" = "mallory,false"

echo "== RP-initiated logout"
html="$(curl -s -c "$T/jar-alice" -b "$T/jar-alice" -G "$END_SESSION_EP" --data-urlencode "id_token_hint=$ID_TOKEN" \
  --data-urlencode "post_logout_redirect_uri=http://127.0.0.1:${CB_PORT}/" --data-urlencode state=bye)"
LOGOUT_ACTION="$(printf '%s' "$html" | sed -n 's/.*<form[^>]*action="\([^"]*\)".*/\1/p' | head -1)"
XSRF="$(printf '%s' "$html" | sed -n 's/.*name="xsrf" value="\([^"]*\)".*/\1/p' | head -1)"
r="$(curl -s -c "$T/jar-alice" -b "$T/jar-alice" -o /dev/null -w '%{http_code} %{redirect_url}' \
  --data-urlencode "xsrf=$XSRF" --data-urlencode logout=yes "$LOGOUT_ACTION")"
echo "     logout form action: $LOGOUT_ACTION -> $r"
check "logout confirm -> 303 to post_logout_redirect_uri with state" \
  bash -c '[[ "$1" == "303 http://127.0.0.1:$2/?state=bye" ]]' _ "$r" "$CB_PORT"

echo "== client_credentials for careloop-script -> JWT access token"
curl -s -o "$T/tok-script.json" -u "careloop-script:$SCRIPT_SECRET" \
  --data-urlencode grant_type=client_credentials --data-urlencode scope=careloop "$TOKEN_EP"
AT_SCRIPT="$(js d.access_token <"$T/tok-script.json")"
echo "     token response: $(js '({token_type: d.token_type, expires_in: d.expires_in, scope: d.scope})' <"$T/tok-script.json")"
echo "     access_token header:  $(jwt_part 0 "$AT_SCRIPT")"
echo "     access_token payload: $(jwt_part 1 "$AT_SCRIPT")"
check "script token verifies: sub=careloop-script, aud=careloop-api, careloop_role=coordinator" \
  test "$(node smart-client.mjs verify --jwks-url "$JWKS_URI" --token "$AT_SCRIPT" --issuer "$ISSUER" --audience careloop-api \
    | js '[d.valid, d.payload.sub, d.payload.aud, d.payload.careloop_role, d.payload.client_id].join()')" \
  = "true,careloop-script,careloop-api,coordinator,careloop-script"

# ----------------------------------------------------------------------------------------------
echo "== SMART Backend Services assertion"
TOKEN_URL_FOR_AUD="https://careloop.example.test/oauth/token"
node smart-client.mjs assert --key "$T/k-rsa.json" --client-id smart-app --aud "$TOKEN_URL_FOR_AUD" --jku "$JWKS_URL" >"$T/assert.json"
ASSERTION="$(js d.assertion <"$T/assert.json")"
echo "     assertion header:  $(jwt_part 0 "$ASSERTION")"
echo "     assertion payload: $(jwt_part 1 "$ASSERTION")"
check "assertion header {alg RS384, kid rsa-1, typ JWT, jku}" \
  test "$(jwt_part 0 "$ASSERTION" | js '[d.alg, d.kid, d.typ, d.jku].join()')" = "RS384,rsa-1,JWT,$JWKS_URL"
check "assertion claims iss=sub=client_id, aud, exp-iat=240, jti" \
  test "$(jwt_part 1 "$ASSERTION" | js '[d.iss, d.sub, d.aud, d.exp - d.iat, typeof d.jti].join()')" = "smart-app,smart-app,$TOKEN_URL_FOR_AUD,240,string"
node smart-client.mjs verify --jwks-url "$JWKS_URL" --token "$ASSERTION" --issuer smart-app --audience "$TOKEN_URL_FOR_AUD" >"$T/verify.json"
echo "     verify: $(cat "$T/verify.json")"
check "verify (createRemoteJWKSet + jwtVerify) against serve-jwks -> valid" test "$(js d.valid <"$T/verify.json")" = true
check "verify with the wrong audience -> invalid" \
  test "$(node smart-client.mjs verify --jwks-url "$JWKS_URL" --token "$ASSERTION" --issuer smart-app --audience other | js '[d.valid, d.code].join()')" = "false,ERR_JWT_CLAIM_VALIDATION_FAILED"

echo "== JWKS rotation via POST /set"
ASSERT_EC="$(node smart-client.mjs assert --key "$T/k-ec.json" --client-id smart-app --aud "$TOKEN_URL_FOR_AUD" | js d.assertion)"
check "ES384 assertion with unknown kid -> invalid before rotation" \
  test "$(node smart-client.mjs verify --jwks-url "$JWKS_URL" --token "$ASSERT_EC" --issuer smart-app | js d.code)" = ERR_JWKS_NO_MATCHING_KEY
JWKS_BASE="${JWKS_URL%/jwks.json}"
check "POST /set replaces the keys" \
  test "$(curl -sf -X POST --data-binary @"$T/k-ec.json" "$JWKS_BASE/set" | js 'd.kids.join()')" = "ec-1"
check "ES384 assertion valid after rotation" \
  test "$(node smart-client.mjs verify --jwks-url "$JWKS_URL" --token "$ASSERT_EC" --issuer smart-app | js d.valid)" = true
check "GET /__stats counts JWKS fetches" test "$(curl -sf "$JWKS_BASE/__stats" | js 'd.requests > 0 && d.sets === 1')" = true
# put both keys back for the token endpoint test
node -e 'const fs=require("fs");const a=JSON.parse(fs.readFileSync(process.argv[1]));const b=JSON.parse(fs.readFileSync(process.argv[2]));process.stdout.write(JSON.stringify({keys:[a.public,b.public]}))' \
  "$T/k-rsa.json" "$T/k-ec.json" | curl -sf -X POST --data-binary @- "$JWKS_BASE/set" >/dev/null

echo "== SMART token request (private_key_jwt client_credentials) against the provider"
node smart-client.mjs token --token-url "$TOKEN_EP" --key "$T/k-rsa.json" --client-id smart-backend \
  --scope "system/Task.read system/ServiceRequest.write" >"$T/smart-tok.json"
echo "     token: $(js '({status: d.status, token_type: d.body.token_type, scope: d.body.scope, expires_in: d.body.expires_in})' <"$T/smart-tok.json")"
check "token (RS384) -> 200 with a JWT access token for careloop-api" \
  test "$(js '[d.status, d.body.scope, JSON.parse(Buffer.from(d.body.access_token.split(".")[1], "base64url")).aud].join()' <"$T/smart-tok.json")" \
  = "200,system/Task.read system/ServiceRequest.write,careloop-api"
check "token (ES384) -> 200" \
  test "$(node smart-client.mjs token --token-url "$TOKEN_EP" --key "$T/k-ec.json" --client-id smart-backend --scope system/Task.read | js d.status)" = 200
REPLAY="$(js d.assertion <"$T/smart-tok.json")"
check "replayed assertion (same jti) -> 400/401 invalid_client" \
  test "$(node smart-client.mjs token --token-url "$TOKEN_EP" --assertion "$REPLAY" --client-id smart-backend --scope system/Task.read | js '[d.status >= 400, d.body.error].join()')" = "true,invalid_client"
check "expired assertion -> invalid_client" \
  test "$(node smart-client.mjs token --token-url "$TOKEN_EP" --key "$T/k-rsa.json" --client-id smart-backend --scope system/Task.read --iat-offset -600 --exp-in -300 | js d.body.error)" = invalid_client

# ----------------------------------------------------------------------------------------------
echo "== lifetime: closing stdin stops the processes"
exec 7>&-
exec 8>&-
stopped() { for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
check "provider exits when its stdin closes" stopped "$PROV_PID"
check "serve-jwks exits when its stdin closes" stopped "$JWKS_PID"

trap - ERR
echo "$PASSED passed, $FAILED failed"
if [[ "$FAILED" -eq 0 ]]; then exit 0; else exit 1; fi
