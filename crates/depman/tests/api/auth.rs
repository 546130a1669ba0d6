//! Authentication with `DEPMAN_AUTH=jwt` (contract: "Authentication")
//! against Dex, a real OpenID Connect provider of `make env`: its tokens
//! are taken, every forged, expired or misdirected one is `401`.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use depman::settings::{ApiSettings, AuthMode};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    DEX_CLIENT as CLIENT, TestApp, dex_token, environment, free_port, test_api_settings, unique,
};

const ALICE: (&str, &str) = ("alice@example.com", "password");
const BOB: (&str, &str) = ("bob@example.com", "bob-secret");

pub fn jwt_settings(issuer: &str, audience: &str) -> ApiSettings {
    let mut settings = test_api_settings();
    settings.auth.auth = AuthMode::Jwt;
    settings.auth.jwt.jwt_issuer = issuer.to_owned();
    settings.auth.jwt.jwt_audience = audience.to_owned();
    settings
}

/// An ID token from the password grant of the Dex at `issuer`.
async fn token(issuer: &str, (user, password): (&str, &str)) -> String {
    dex_token(issuer, user, password).await
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

async fn call(app: &TestApp, method: Method, path: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("a response")
}

/// Asserts a `401` for a refused token, with the challenge RFC 6750 asks.
async fn refused(response: reqwest::Response, words: &str) {
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    let problem: Value = response.json().await.expect("a problem");
    assert_eq!(problem["code"], "invalid-token");
    let detail = problem["detail"].as_str().expect("a detail");
    assert!(detail.contains(words), "{detail}");
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn dex_tokens_name_the_caller_and_forgeries_are_refused() {
    let issuer = environment("DEPMAN_TEST_OIDC_ISSUER");
    let app = TestApp::spawn_with_api(jwt_settings(&issuer, CLIENT.0)).await;
    let alice = token(&issuer, ALICE).await;
    let sub = claims(&alice)["sub"].as_str().expect("a sub").to_owned();

    let mut body = crate::helpers::deployment("web");
    body["identifier"] = json!(unique("web").replace('_', "-"));
    let created = reqwest::Client::new()
        .post(app.url("/api/v1/deployments/requests/create"))
        .bearer_auth(&alice)
        .json(&body)
        .send()
        .await
        .expect("a response");
    assert_eq!(created.status(), 202);
    let created: Value = created.json().await.expect("the request");
    let id = created["id"].as_str().expect("an id");
    // The owner is the token's `sub`.
    let owner: String = sqlx::query_scalar(
        "SELECT u.user_external_id FROM deployment_requests r JOIN users u ON u.id = r.user_id WHERE r.id = $1::uuid",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .expect("the owner");
    assert_eq!(owner, sub);
    // Bob's token sees nothing of Alice's.
    let bob = token(&issuer, BOB).await;
    let path = format!("/api/v1/deployments/requests/{id}");
    assert_eq!(call(&app, Method::GET, &path, &bob).await.status(), 404);
    assert_eq!(call(&app, Method::GET, &path, &alice).await.status(), 200);

    // The document says how to call this api.
    let document: Value = reqwest::get(app.url("/api-docs/openapi.json"))
        .await
        .expect("the document")
        .json()
        .await
        .expect("JSON");
    let scheme = &document["components"]["securitySchemes"]["caller"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&json!("http"), &json!("bearer"))
    );

    // X-User-ID is no way in.
    let header_only = app.get(&sub, "/api/v1/deployments").await;
    assert_eq!(header_only.status(), 401);
    assert_eq!(header_only.headers()["www-authenticate"], "Bearer");

    let parts: Vec<&str> = alice.split('.').collect();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("base64url"))
            .expect("JSON");
    let mut forged = claims(&alice);
    forged["sub"] = json!("someone-else");
    let tampered = format!("{}.{}.{}", parts[0], encode(&forged), parts[2]);
    refused(
        call(&app, Method::GET, "/api/v1/deployments", &tampered).await,
        "signature",
    )
    .await;

    let none = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    refused(
        call(&app, Method::GET, "/api/v1/deployments", &none).await,
        "algorithm",
    )
    .await;

    // HMAC keyed with the issuer's public key: refused by its algorithm.
    let hmac_header = json!({"alg": "HS256", "typ": "JWT", "kid": header["kid"]});
    let signed = format!("{}.{}", encode(&hmac_header), parts[1]);
    let jwks: Value = reqwest::get(format!("{issuer}/keys"))
        .await
        .expect("the key set")
        .json()
        .await
        .expect("JSON");
    let public = jwks["keys"][0]["n"]
        .as_str()
        .expect("an RSA key")
        .as_bytes();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public);
    let mac = ring::hmac::sign(&key, signed.as_bytes());
    let hmac = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    refused(
        call(&app, Method::GET, "/api/v1/deployments", &hmac).await,
        "algorithm",
    )
    .await;

    // A well-formed token signed with a key the issuer never published.
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("a key");
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key pair");
    let stranger = format!(
        "{}.{}",
        encode(&json!({"alg": "EdDSA", "typ": "JWT", "kid": "not-dex"})),
        parts[1]
    );
    let signature = pair.sign(stranger.as_bytes());
    let stranger = format!("{stranger}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
    refused(
        call(&app, Method::GET, "/api/v1/deployments", &stranger).await,
        "key",
    )
    .await;
    app.finish().await;

    // The same good token, to an api that expects another audience or issuer.
    let elsewhere = TestApp::spawn_with_api(jwt_settings(&issuer, "another-client")).await;
    refused(
        call(&elsewhere, Method::GET, "/api/v1/deployments", &alice).await,
        "audience",
    )
    .await;
    elsewhere.finish().await;
    let mut settings = jwt_settings("http://127.0.0.1:9/not-dex", CLIENT.0);
    settings.auth.jwt.jwt_jwks_url = format!("{issuer}/keys");
    let other_issuer = TestApp::spawn_with_api(settings).await;
    refused(
        call(&other_issuer, Method::GET, "/api/v1/deployments", &alice).await,
        "issuer",
    )
    .await;
    other_issuer.finish().await;
}

#[tokio::test]
async fn groups_from_the_token_meet_the_namespace_policy() {
    let issuer = environment("DEPMAN_TEST_OIDC_ISSUER");
    let file = std::env::temp_dir().join(format!("{}.yaml", unique("policy")));
    std::fs::write(&file, "groups:\n  team-a: ['team-a-*']\n").expect("write the policy");
    let mut settings = jwt_settings(&issuer, CLIENT.0);
    settings.namespace_policy = file.display().to_string();
    let app = TestApp::spawn_with_api(settings).await;
    for (user, allowed) in [(ALICE, true), (BOB, false)] {
        let token = token(&issuer, user).await;
        let mut body = crate::helpers::deployment("web");
        body["namespace"] = json!("team-a-web");
        body["identifier"] = json!(unique("web").replace('_', "-"));
        let response = reqwest::Client::new()
            .post(app.url("/api/v1/deployments/requests/create"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("a response");
        let expected = if allowed { 202 } else { 403 };
        assert_eq!(response.status(), expected, "{}", user.0);
    }
    app.finish().await;
    std::fs::remove_file(file).ok();
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    // A Dex of this test's own, whose ID tokens live one second.
    let dex = OwnDex::start("expiry:\n  idTokens: \"1s\"\n").await;
    let mut settings = jwt_settings(&dex.issuer, CLIENT.0);
    settings.auth.jwt.jwt_leeway = Duration::ZERO;
    let app = TestApp::spawn_with_api(settings).await;
    let alice = token(&dex.issuer, ALICE).await;
    assert_eq!(
        call(&app, Method::GET, "/api/v1/deployments", &alice)
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    refused(
        call(&app, Method::GET, "/api/v1/deployments", &alice).await,
        "expired",
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_but_the_key_set_is_fetched_at_most_once_a_minute() {
    // Dex checks for rotation every 30 s; with a 10 s period it rotates
    // at each check.
    let dex =
        OwnDex::start("signer:\n  type: local\n  config:\n    keysRotationPeriod: \"10s\"\n").await;
    let app = TestApp::spawn_with_api(jwt_settings(&dex.issuer, CLIENT.0)).await;
    let first = token(&dex.issuer, ALICE).await;
    let fetched = std::time::Instant::now();
    assert_eq!(
        call(&app, Method::GET, "/api/v1/deployments", &first)
            .await
            .status(),
        200
    );
    let kid = |token: &str| {
        let header = token.split('.').next().expect("a header");
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url"))
                .expect("JSON");
        header["kid"].clone()
    };
    let mut rotated = first.clone();
    while kid(&rotated) == kid(&first) {
        assert!(
            fetched.elapsed() < Duration::from_secs(50),
            "Dex never rotated its key"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        rotated = token(&dex.issuer, ALICE).await;
    }
    // Within the minute the new key is unknown: no second fetch yet.
    if fetched.elapsed() < Duration::from_secs(55) {
        refused(
            call(&app, Method::GET, "/api/v1/deployments", &rotated).await,
            "key",
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(61).saturating_sub(fetched.elapsed())).await;
    assert_eq!(
        call(&app, Method::GET, "/api/v1/deployments", &rotated)
            .await
            .status(),
        200
    );
    app.finish().await;
}

/// A Dex process of the test's own: the environment's configuration on a
/// port of its own, with `extra` configuration.
struct OwnDex {
    issuer: String,
    process: tokio::process::Child,
    folder: std::path::PathBuf,
}

impl OwnDex {
    async fn start(extra: &str) -> Self {
        depman::dependencies::install_crypto_provider();
        let port = free_port();
        let issuer = format!("http://127.0.0.1:{port}/dex");
        let folder = std::env::temp_dir().join(unique("dex"));
        std::fs::create_dir_all(&folder).expect("a folder");
        let shared = std::fs::read_to_string(environment("DEPMAN_TEST_DEX_CONFIG"))
            .expect("the environment's Dex config");
        let config = shared
            .replace(&environment("DEPMAN_TEST_OIDC_ISSUER"), &issuer)
            .lines()
            .map(|line| {
                if line.starts_with("  http: ") {
                    format!("  http: 127.0.0.1:{port}")
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
            + extra;
        let path = folder.join("config.yaml");
        std::fs::write(&path, config).expect("write the config");
        let process = tokio::process::Command::new(environment("DEPMAN_TEST_DEX_BIN"))
            .arg("serve")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("dex starts");
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        for _ in 0..100 {
            if reqwest::get(&discovery)
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return Self {
                    issuer,
                    process,
                    folder,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the test's Dex did not come up");
    }
}

impl Drop for OwnDex {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}
