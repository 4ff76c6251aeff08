//! Identity and access the way hospitals and staff really connect: SMART Backend
//! Services for hospitals' systems (with a client built on the `jose` library, not
//! careloop's code), OpenID Connect sign-in for staff (against a real `oidc-provider`),
//! registered facilities only, and the audit log.

use std::time::Duration;

use serde_json::{Value, json};

use careloop_test_support::{TestEnv, eventually};

use crate::node::{self, Jar};
use crate::*;

const ALL_SCOPES: &str =
    "system/ServiceRequest.write system/Task.read system/Consent.write system/Patient.read";

async fn admin_post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let admin = app.token("admin", None, None);
    app.post(path, &admin, &body).await
}

/// Asks for a token as the SMART client would; the HTTP status and body.
async fn token(app: &TestApp, client: &str, key: &Value, extra: &[&str]) -> (u16, Value) {
    let token_url = format!("{}/auth/token", app.base);
    let key = key.to_string();
    let mut args = vec![
        "token",
        "--token-url",
        &token_url,
        "--key",
        &key,
        "--client-id",
        client,
    ];
    if !extra.contains(&"--scope") {
        args.extend(["--scope", "system/Task.read"]);
    }
    args.extend(extra);
    let out = node::smart(&args).await;
    (out["status"].as_u64().unwrap() as u16, out["body"].clone())
}

/// Guarantee: a hospital's system gets a short-lived, scoped token only with a client
/// assertion that passes every SMART check, and every refusal says why (RFC 6749).
#[tokio::test]
async fn smart_backend_clients_get_scoped_tokens_and_each_refusal_is_explained() {
    let app = spawn_app().await;
    let es = node::smart(&["keys", "--alg", "ES384", "--kid", "es-1"]).await;
    let rs = node::smart(&["keys", "--alg", "RS384", "--kid", "rs-1"]).await;
    let stranger = node::smart(&["keys", "--alg", "ES384", "--kid", "es-1"]).await;
    // Client A's keys are served at a JWKS URL (and rotate); client B's are inline.
    let jwks = json!({"keys": [es["public"]]}).to_string();
    let jwks_server = node::serve("smart-client.mjs", &["serve-jwks", "--jwks", &jwks]).await;
    let jwks_url = jwks_server.info["url"].as_str().unwrap().to_string();
    let (s, r) = admin_post(
        &app,
        "/v1/clients",
        json!({"client_id": "st-marys-ehr", "facility": "st-marys", "name": "St. Mary's EHR",
               "jwks_url": jwks_url, "scopes": ALL_SCOPES.split(' ').collect::<Vec<_>>()}),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    let (s, r) = admin_post(
        &app,
        "/v1/clients",
        json!({"client_id": "mercy-reader", "facility": "mercy", "name": "Mercy reader",
               "jwks": {"keys": [rs["public"]]}, "scopes": ["system/Task.read"]}),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    // Unknown facilities and private keys are refused at registration.
    let (s, r) = admin_post(
        &app,
        "/v1/clients",
        json!({"facility": "nowhere", "name": "x", "jwks": {"keys": [rs["public"]]},
               "scopes": ["system/Task.read"]}),
    )
    .await;
    assert_eq!((s, r["field"].as_str()), (422, Some("facility")), "{r}");
    let (s, r) = admin_post(
        &app,
        "/v1/clients",
        json!({"facility": "mercy", "name": "x", "jwks": {"keys": [rs["private"]]},
               "scopes": ["system/Task.read"]}),
    )
    .await;
    assert_eq!((s, r["field"].as_str()), (422, Some("jwks")), "{r}");

    // Success: ES384 over a JWKS URL, two scopes.
    let scope = "system/Task.read system/ServiceRequest.write";
    let (s, body) = token(&app, "st-marys-ehr", &es["private"], &["--scope", scope]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["scope"], scope);
    assert!(body["expires_in"].as_i64().unwrap() <= 300);
    let access = body["access_token"].as_str().unwrap().to_string();
    // careloop's token is a standard JWT: a JOSE library verifies it with the
    // published JWKS.
    let verified = node::smart(&[
        "verify",
        "--jwks-url",
        &format!("{}/.well-known/jwks.json", app.base),
        "--token",
        &access,
        "--issuer",
        &app.base,
        "--audience",
        "careloop",
    ])
    .await;
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["protectedHeader"]["alg"], "ES256");
    assert_eq!(verified["payload"]["facility"], "st-marys");
    let conf = app.get("/.well-known/smart-configuration", "").await.1;
    assert_eq!(
        conf["token_endpoint"],
        format!("{}/auth/token", app.base).as_str()
    );
    assert!(
        conf["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("client-confidential-asymmetric"))
    );

    // The token works for what its scopes grant, for its own facility only.
    let discharged = at(recent_discharge());
    let (s, r) = app
        .post(
            "/v1/referrals",
            &access,
            &referral_body("MRN-SMART-1", &discharged),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let mut elsewhere = referral_body("MRN-SMART-2", &discharged);
    elsewhere["facility"] = json!("mercy");
    let (s, _) = app.post("/v1/referrals", &access, &elsewhere).await;
    assert_eq!(s, 403);
    let (s, r) = app
        .post(
            "/v1/persons/x/consent/revoke",
            &access,
            &json!({"reason": "asked"}),
        )
        .await;
    assert_eq!(s, 403, "Consent.write was not asked for: {r}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("system/Consent.write"),
        "{r}"
    );

    // Each refusal, with its reason.
    let refused = |(s, body): (u16, Value), error: &str, because: &str| {
        assert_eq!(body["error"], error, "{because}: {body}");
        assert_eq!(
            s,
            if error == "invalid_client" { 401 } else { 400 },
            "{because}"
        );
    };
    refused(
        token(&app, "st-marys-ehr", &stranger["private"], &[]).await,
        "invalid_client",
        "a key the client did not register (same kid)",
    );
    refused(
        token(&app, "st-marys-ehr", &es["private"], &["--exp-in", "-10"]).await,
        "invalid_client",
        "an expired assertion",
    );
    refused(
        token(&app, "st-marys-ehr", &es["private"], &["--exp-in", "3600"]).await,
        "invalid_client",
        "exp more than five minutes ahead",
    );
    refused(
        token(
            &app,
            "st-marys-ehr",
            &es["private"],
            &["--aud", "https://elsewhere.example/token"],
        )
        .await,
        "invalid_client",
        "an assertion for another audience",
    );
    refused(
        token(&app, "st-marys-ehr", &es["private"], &["--kid", "unknown"]).await,
        "invalid_client",
        "an unknown kid",
    );
    refused(
        token(
            &app,
            "st-marys-ehr",
            &es["private"],
            &["--jku", "https://attacker.example/jwks.json"],
        )
        .await,
        "invalid_client",
        "a jku that is not the registered JWKS URL",
    );
    refused(
        token(
            &app,
            "mercy-reader",
            &rs["private"],
            &["--scope", "system/ServiceRequest.write"],
        )
        .await,
        "invalid_scope",
        "a scope not registered for the client",
    );
    // A replayed assertion (the same jti) is refused the second time.
    let assertion = node::smart(&[
        "assert",
        "--key",
        &rs["private"].to_string(),
        "--client-id",
        "mercy-reader",
        "--aud",
        &format!("{}/auth/token", app.base),
    ])
    .await["assertion"]
        .as_str()
        .unwrap()
        .to_string();
    let first = token(
        &app,
        "mercy-reader",
        &json!({}),
        &["--assertion", &assertion],
    )
    .await;
    assert_eq!(first.0, 200, "{}", first.1);
    refused(
        token(
            &app,
            "mercy-reader",
            &json!({}),
            &["--assertion", &assertion],
        )
        .await,
        "invalid_client",
        "a replayed jti",
    );

    // Keys rotate at the client: an unknown kid makes careloop fetch its JWKS again.
    let es2 = node::smart(&["keys", "--alg", "ES384", "--kid", "es-2"]).await;
    let rotated = json!({"keys": [es["public"], es2["public"]]});
    reqwest::Client::new()
        .post(jwks_url.replace("/jwks.json", "/set"))
        .json(&rotated)
        .send()
        .await
        .unwrap();
    let fetched = |()| async {
        reqwest::get(jwks_url.replace("/jwks.json", "/__stats"))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["requests"]
            .as_u64()
            .unwrap()
    };
    let before = fetched(()).await;
    // careloop refreshes a key set at most every 10 s, so the new kid may need a
    // second try.
    let (s, body) = eventually(
        "the rotated key is accepted",
        Duration::from_secs(20),
        || async {
            let r = token(&app, "st-marys-ehr", &es2["private"], &[]).await;
            (r.0 == 200).then_some(r)
        },
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(
        fetched(()).await > before,
        "careloop fetched the JWKS again"
    );

    // A revoked client gets nothing more.
    let (s, _) = admin_post(&app, "/v1/clients/mercy-reader/revoke", json!({})).await;
    assert_eq!(s, 200);
    refused(
        token(&app, "mercy-reader", &rs["private"], &[]).await,
        "invalid_client",
        "a revoked client",
    );

    // Every decision is in the audit log, the refusals with their reason.
    let admin = app.token("admin", None, None);
    let log = eventually("the token decisions are audited", WAIT, || async {
        let (_, r) = app.get("/v1/audit?sub=mercy-reader", &admin).await;
        let items = r["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= 4).then_some(items)
    })
    .await;
    assert!(log.iter().all(|e| e["action"] == "token"), "{log:?}");
    assert!(
        log.iter().any(|e| e["outcome"] == "refused"
            && e["detail"].as_str().unwrap().contains("revoked")),
        "{log:?}"
    );
    app.shutdown().await;
}

/// Walks a sign-in as a browser would, with plain HTTP and a cookie jar:
/// careloop → the provider's login form → back to careloop. Returns the final page.
async fn sign_in(app: &TestApp, jar: &mut Jar, login: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut url = format!("{}/session/login?return_to=/%23/today", app.base);
    let mut form_posted = false;
    for _ in 0..10 {
        let res = http
            .get(&url)
            .header("cookie", jar.header())
            .send()
            .await
            .unwrap();
        jar.take(&res);
        if res.status().is_redirection() {
            url = res.headers()["location"].to_str().unwrap().to_string();
            if url.starts_with('/') {
                let origin = url::origin_of(&res);
                url = format!("{origin}{url}");
            }
            continue;
        }
        let body = res.text().await.unwrap();
        if url.contains("/interaction/") && !form_posted {
            // The provider's login form: post the login name (any password).
            let res = http
                .post(&url)
                .header("cookie", jar.header())
                .form(&[("prompt", "login"), ("login", login), ("password", "x")])
                .send()
                .await
                .unwrap();
            jar.take(&res);
            assert!(res.status().is_redirection(), "{}", res.status());
            url = res.headers()["location"].to_str().unwrap().to_string();
            form_posted = true;
            continue;
        }
        return body;
    }
    panic!("the sign-in did not finish");
}

mod url {
    pub fn origin_of(res: &reqwest::Response) -> String {
        let u = res.url();
        format!("{}://{}", u.scheme(), u.authority())
    }
}

async fn session(app: &TestApp, jar: &Jar) -> Value {
    reqwest::Client::new()
        .get(format!("{}/session", app.base))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Guarantee: staff sign in through the organisation's OpenID provider (code flow
/// with PKCE); their role comes from the provider's claims or from the account an
/// administrator keeps; someone with neither is refused; scripts use the provider's
/// own tokens; sign-out and idleness end the session; every sign-in decision is
/// audited. careloop runs in standard mode here: no dev token is accepted.
#[tokio::test]
async fn staff_sign_in_through_a_real_openid_provider() {
    node::require_installed();
    let accounts = json!({
        "alice": {"name": "Alice Moreno", "careloop_role": "coordinator"},
        "pat": {"name": "Pat Quinn"},
        "mallory": {"name": "Mallory"},
        "careloop-script": {"name": "Nightly export", "careloop_role": "admin"},
    });
    let file = std::env::temp_dir().join(format!("accounts-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, accounts.to_string()).unwrap();
    // The provider must know careloop's callback, and careloop the provider's issuer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let provider = node::serve(
        "provider.mjs",
        &[
            "--client-id",
            "careloop-console",
            "--client-secret",
            "console-secret",
            "--redirect-uri",
            &format!("http://{addr}/session/callback"),
            "--post-logout-redirect-uri",
            &format!("http://{addr}/"),
            "--accounts",
            &file.to_string_lossy(),
        ],
    )
    .await;
    let issuer = provider.info["issuer"].as_str().unwrap().to_string();
    let app = spawn_app_at(listener, TestEnv::new(), |settings, _| {
        settings.identity.mode = careloop_config::AuthMode::Standard;
        settings.identity.oidc = Some(careloop_config::OidcSettings {
            issuer: issuer.clone(),
            client_id: "careloop-console".into(),
            client_secret: "console-secret".into(),
            scopes: "openid profile email careloop".into(),
            audience: "careloop-api".into(),
            api_scope: "careloop".into(),
            role_claim: "careloop_role".into(),
            facility_claim: "careloop_facility".into(),
            peer_claim: "careloop_peer_id".into(),
            name_claim: "name".into(),
        });
    })
    .await;

    // Dev tokens are refused outside dev mode.
    let dev = app.token("admin", None, None);
    assert_eq!(app.get("/v1/referrals", &dev).await.0, 401);

    // A script uses the provider's own access token (client credentials here).
    let script: Value = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("careloop-script", Some("careloop-script-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "careloop")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let script = script["access_token"]
        .as_str()
        .expect("a provider token")
        .to_string();
    let (s, r) = app.get("/v1/referrals", &script).await;
    assert_eq!(s, 200, "the provider's token, role from its claims: {r}");
    // The administrator links Pat's sign-in to a roster entry.
    let (s, r) = app
        .put(
            "/v1/staff/pat",
            &script,
            &json!({"name": "Pat Quinn", "role": "peer", "peer_id": "peer-pat"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = app
        .put(
            "/v1/staff/someone-else",
            &script,
            &json!({"role": "peer", "peer_id": "peer-pat"}),
        )
        .await;
    assert_eq!(
        (s, r["field"].as_str()),
        (409, Some("peer_id")),
        "one account per roster entry"
    );

    // Alice: a coordinator by the provider's claim.
    let mut alice = Jar::default();
    let page = sign_in(&app, &mut alice, "alice").await;
    assert!(page.contains("Signed in"), "{page}");
    let s = session(&app, &alice).await;
    assert_eq!(s["signed_in"], true, "{s}");
    assert_eq!(s["user"]["role"], "coordinator");
    assert_eq!(s["user"]["name"], "Alice Moreno");
    let csrf = s["csrf_token"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    // No CSRF token, no access token.
    let res = http
        .post(format!("{}/session/token", app.base))
        .header("cookie", alice.header())
        .json(&json!({"active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let console: Value = http
        .post(format!("{}/session/token", app.base))
        .header("cookie", alice.header())
        .header("x-csrf-token", &csrf)
        .json(&json!({"active": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let console = console["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.get("/v1/referrals", &console).await.0, 200);
    let (s, _) = app.get("/v1/audit", &console).await;
    assert_eq!(s, 403, "a coordinator does not read the audit log");

    // Pat: a peer by the account the administrator keeps.
    let mut pat = Jar::default();
    sign_in(&app, &mut pat, "pat").await;
    let s = session(&app, &pat).await;
    assert_eq!(
        (s["user"]["role"].as_str(), s["user"]["peer_id"].as_str()),
        (Some("peer"), Some("peer-pat")),
        "{s}"
    );

    // Mallory: no role anywhere, no session.
    let mut mallory = Jar::default();
    let page = sign_in(&app, &mut mallory, "mallory").await;
    assert!(page.contains("did not work"), "{page}");
    assert_eq!(session(&app, &mallory).await["signed_in"], false);

    // Sign-out ends Alice's session and names the provider's sign-out page.
    let out: Value = http
        .post(format!("{}/session/logout", app.base))
        .header("cookie", alice.header())
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        out["end_session_url"]
            .as_str()
            .unwrap()
            .starts_with(&issuer),
        "{out}"
    );
    assert_eq!(session(&app, &alice).await["signed_in"], false);

    // A session unused past the idle time ends (the clock moved by hand).
    let pool = sqlx_pool(&app).await;
    sqlx::query("UPDATE intake.sessions SET last_active_at = now() - interval '31 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(session(&app, &pat).await["signed_in"], false);

    // Sign-ins and the refusal are audited, with where they came from.
    let log = eventually("the sign-ins are audited", WAIT, || async {
        let (_, r) = app.get("/v1/audit", &script).await;
        let items: Vec<Value> = r["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["action"] == "sign-in")
            .collect();
        (items.len() >= 3).then_some(items)
    })
    .await;
    assert!(
        log.iter()
            .any(|e| e["sub"] == "alice" && e["outcome"] == "success")
    );
    assert!(
        log.iter()
            .any(|e| e["outcome"] == "refused" && e["detail"].as_str().unwrap().contains("mallory")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .all(|e| e["address"].as_str() == Some("127.0.0.1")),
        "{log:?}"
    );
    let _ = std::fs::remove_file(file);
    app.shutdown().await;
}

/// Guarantee: facilities are registered, not invented. An HL7 message from a sender
/// no facility registered is refused whole (AR naming MSH-4) and writes nothing;
/// REST for an unregistered facility is refused naming the field.
#[tokio::test]
async fn only_registered_facilities_are_served() {
    let app = spawn_app().await;
    let pool = sqlx_pool(&app).await;
    let stored = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM intake.events WHERE aggregate_type NOT IN ('Facility')",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let before = stored().await;
    let addr = eventually("the MLLP listener", WAIT, || async {
        app.intake.mllp_addr()
    })
    .await;
    let message = format!(
        "MSH|^~\\&|EHR|ST. MARY'S ANNEX|CARELOOP|CL|20261120153500||ADT^A03|ANNEX-1|P|2.5\rPID|1||MRN-ANNEX^^^HOSP&2.16.840.1.113883.3.999.1&ISO^MR||Rivera^Alex\rPV1|1|I|PSYCH{}20261120150000\rZPS|Y|20261120140000|planner|high",
        "|".repeat(42)
    );
    let ack = crate::edges::send_mllp(addr, &message).await;
    assert!(ack.contains("MSA|AR|ANNEX-1"), "{ack}");
    assert!(ack.contains("MSH-4"), "{ack}");
    assert_eq!(stored().await, before, "nothing stored");

    let hospital = app.token("hospital", Some("annex"), None);
    let mut body = referral_body("MRN-ANNEX", &at(recent_discharge()));
    body["facility"] = json!("annex");
    let (s, r) = app.post("/v1/referrals", &hospital, &body).await;
    assert_eq!((s, r["field"].as_str()), (422, Some("facility")), "{r}");
    assert_eq!(stored().await, before, "nothing stored");

    // An administrator registers it, with its HL7 codes; the same message is taken.
    let (s, r) = admin_post(
        &app,
        "/v1/facilities",
        json!({"id": "annex", "name": "St. Mary's Annex",
               "hl7_senders": [{"facility": "ST. MARY'S ANNEX"}]}),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    let ack = eventually("the registry knows the annex", WAIT, || async {
        let ack = crate::edges::send_mllp(addr, &message.replace("ANNEX-1", "ANNEX-2")).await;
        ack.contains("MSA|AA").then_some(ack)
    })
    .await;
    assert!(ack.contains("referral"), "{ack}");
    app.shutdown().await;
}

/// Guarantee: every read of a person's details is in the audit log with who read it
/// (subject, role), which person (never their details), and from where; the log
/// exports as FHIR AuditEvent resources.
#[tokio::test]
async fn every_read_of_a_persons_details_is_audited() {
    let app = spawn_app().await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let (s, r) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body("MRN-AUDIT", &at(recent_discharge())),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let id = r["referral_id"].as_str().unwrap().to_string();
    let coordinator = app.token("coordinator", None, None);
    let card = eventually("the referral is known", WAIT, || async {
        let (s, card) = app
            .get(&format!("/v1/referrals/{id}/contact-card"), &coordinator)
            .await;
        (s == 200).then_some(card)
    })
    .await;
    let person_ref = card["person_ref"].as_str().unwrap().to_string();
    let (s, people) = app
        .post(
            "/v1/referrals/people",
            &coordinator,
            &json!({"referral_ids": [id]}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(people["items"][0]["name"]["given"], "Alex");
    let admin = app.token("admin", None, None);
    let log = eventually("the reads are audited", WAIT, || async {
        let (_, r) = app
            .get(&format!("/v1/audit?person_ref={person_ref}"), &admin)
            .await;
        let items = r["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= 3).then_some(items)
    })
    .await;
    let kinds: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["resource"].as_str().unwrap(),
                e["role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("create", "person", "hospital"),
            ("read", "contact-card", "coordinator"),
            ("read", "person-summary", "coordinator")
        ]
    );
    assert!(
        log[1]["sub"]
            .as_str()
            .unwrap()
            .starts_with("dev-coordinator")
    );
    assert_eq!(log[1]["referral_id"], id.as_str());
    let text = serde_json::to_string(&log).unwrap();
    for phi in ["Alex", "Rivera", "555-0134", "MRN-AUDIT", "1990-04-12"] {
        assert!(!text.contains(phi), "the audit log holds no PHI ({phi})");
    }
    // As FHIR AuditEvent resources.
    let res = app
        .http
        .get(format!("{}/v1/audit?person_ref={person_ref}", app.base))
        .bearer_auth(&admin)
        .header("accept", "application/fhir+json")
        .send()
        .await
        .unwrap();
    let bundle: Value = res.json().await.unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    let event = &bundle["entry"][1]["resource"];
    assert_eq!(event["resourceType"], "AuditEvent");
    assert_eq!(event["action"], "R");
    assert_eq!(
        event["entity"][1]["what"]["reference"],
        format!("Patient/{person_ref}").as_str()
    );
    app.shutdown().await;
}
