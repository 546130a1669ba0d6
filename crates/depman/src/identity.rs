//! Who the caller is in `DEPMAN_AUTH=jwt` (contract: "Authentication"): an
//! OpenID Connect ID or access token, verified against the issuer's keys
//! (JWKS), its user and groups taken from its claims.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{Jwk, JwkSet},
};
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use crate::settings::JwtSettings;

/// The only algorithms taken: asymmetric, so that no key depman holds can
/// sign (HMAC with a public key as secret is refused by name).
const ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// How often an unknown key id may send depman back to the JWKS.
const REFETCH_AFTER: Duration = Duration::from_secs(60);

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// Why a token is not taken; the words go into the `401`, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("an `Authorization: Bearer` token is required")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted (RS256, ES256 or EdDSA only)")]
    Algorithm,
    #[error("the token is signed with a key the issuer does not publish")]
    UnknownKey,
    #[error("the token's signature is not valid")]
    Signature,
    #[error("the token has expired, or carries no expiry")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer, or names none")]
    Issuer,
    #[error("the token is meant for another audience, or names none")]
    Audience,
    #[error("the token has no `{0}` claim naming the user")]
    NoUser(String),
    /// The issuer's keys could not be fetched: not the caller's fault.
    #[error("the identity provider is unreachable: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    settings: JwtSettings,
    http: reqwest::Client,
    keys: RwLock<Keys>,
}

#[derive(Default)]
struct Keys {
    jwks_url: Option<String>,
    set: Option<JwkSet>,
    fetched: Option<Instant>,
}

impl TokenVerifier {
    pub fn new(settings: JwtSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        anyhow::ensure!(
            !settings.jwt_issuer.is_empty() && !settings.jwt_audience.is_empty(),
            "DEPMAN_AUTH=jwt needs DEPMAN_JWT_ISSUER and DEPMAN_JWT_AUDIENCE"
        );
        let keys = Keys {
            jwks_url: Some(settings.jwt_jwks_url.clone()).filter(|url| !url.is_empty()),
            ..Keys::default()
        };
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                http,
                keys: RwLock::new(keys),
            }),
        })
    }

    /// The caller `token` names, once its signature, issuer, audience and
    /// times are checked.
    pub async fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| unreadable(token))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        // A key published for one algorithm is used for no other.
        let published = jwk.common.key_algorithm.map(|alg| format!("{alg:?}"));
        if published.is_some_and(|alg| alg != format!("{:?}", header.alg)) {
            return Err(TokenError::Algorithm);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| TokenError::UnknownKey)?;
        let settings = &self.inner.settings;
        let claims = checked_claims(token, &key, header.alg, settings)?;
        identity(
            &claims,
            &settings.jwt_user_claim,
            &settings.jwt_groups_claim,
        )
    }

    /// The issuer's key `kid` (the only key when the token names none),
    /// fetching the key set when it is unknown and the last fetch is a
    /// minute old.
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, TokenError> {
        // Every call with a known key takes the read lock only.
        if let Some(jwk) =
            (self.inner.keys.read().await.set.as_ref()).and_then(|set| find(set, kid))
        {
            return Ok(jwk);
        }
        let url = {
            let mut keys = self.inner.keys.write().await;
            // Another call may have fetched since.
            if let Some(jwk) = keys.set.as_ref().and_then(|set| find(set, kid)) {
                return Ok(jwk);
            }
            // A fetch that failed counts too: an unreachable issuer is not
            // asked again for every forged key id.
            if keys.fetched.is_some_and(|at| at.elapsed() < REFETCH_AFTER) {
                return Err(match keys.set {
                    Some(_) => TokenError::UnknownKey,
                    None => {
                        TokenError::Unavailable("the issuer's keys could not be fetched".into())
                    }
                });
            }
            keys.fetched = Some(Instant::now());
            keys.jwks_url.clone()
        };
        // Fetched without the lock: tokens with known keys are verified
        // meanwhile.
        let url = match url {
            Some(url) => url,
            None => self.discover().await?,
        };
        let set: JwkSet = self.get_json(&url).await?;
        let jwk = find(&set, kid);
        let mut keys = self.inner.keys.write().await;
        keys.set = Some(set);
        keys.jwks_url = Some(url);
        jwk.ok_or(TokenError::UnknownKey)
    }

    /// The `jwks_uri` of the issuer's discovery document.
    async fn discover(&self) -> Result<String, TokenError> {
        let issuer = self.inner.settings.jwt_issuer.trim_end_matches('/');
        let document: Value = self
            .get_json(&format!("{issuer}/.well-known/openid-configuration"))
            .await?;
        document["jwks_uri"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| TokenError::Unavailable("the discovery document has no jwks_uri".into()))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, TokenError> {
        let unavailable = |e: reqwest::Error| TokenError::Unavailable(format!("{url}: {e}"));
        self.inner
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)
    }
}

/// The claims of `token`, its signature checked with `key` and its
/// issuer, audience, expiry and start checked against `settings`; `iss`,
/// `aud` and `exp` must be there (the library checks them only when present).
fn checked_claims(
    token: &str,
    key: &DecodingKey,
    algorithm: Algorithm,
    settings: &JwtSettings,
) -> Result<Map<String, Value>, TokenError> {
    let mut validation = Validation::new(algorithm);
    validation.leeway = settings.jwt_leeway.as_secs().min(30);
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.set_issuer(&[&settings.jwt_issuer]);
    validation.set_audience(&[&settings.jwt_audience]);
    jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|error| match error.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::Issuer,
            ErrorKind::InvalidAudience => TokenError::Audience,
            ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => TokenError::Issuer,
            ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => TokenError::Audience,
            ErrorKind::MissingRequiredClaim(_) => TokenError::Expired,
            ErrorKind::InvalidAlgorithm => TokenError::Algorithm,
            ErrorKind::InvalidSignature => TokenError::Signature,
            _ => TokenError::Malformed,
        })
}

/// Why a token's header does not parse: an algorithm this library does not
/// even name (`none`) is an algorithm refused; anything else is malformed.
fn unreadable(token: &str) -> TokenError {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let header = token
        .split('.')
        .next()
        .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    match header {
        Some(header) if header.get("alg").is_some() => TokenError::Algorithm,
        _ => TokenError::Malformed,
    }
}

fn find(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => set.find(kid).cloned(),
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    }
}

/// The user (a string claim) and groups (an array of strings, or none).
fn identity(
    claims: &Map<String, Value>,
    user_claim: &str,
    groups_claim: &str,
) -> Result<Identity, TokenError> {
    let user = claims
        .get(user_claim)
        .and_then(Value::as_str)
        .filter(|user| !user.is_empty())
        .ok_or_else(|| TokenError::NoUser(user_claim.to_owned()))?;
    let groups = claims
        .get(groups_claim)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|group| group.as_str().map(str::to_owned))
        .collect();
    Ok(Identity {
        user: user.to_owned(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings() -> JwtSettings {
        JwtSettings {
            jwt_issuer: "https://issuer.example".into(),
            jwt_jwks_url: String::new(),
            jwt_audience: "depman".into(),
            jwt_user_claim: "sub".into(),
            jwt_groups_claim: "groups".into(),
            jwt_leeway: Duration::from_secs(30),
        }
    }

    /// `claims` signed with a fresh Ed25519 key, and that key to check it.
    fn signed(claims: &Value) -> (String, DecodingKey) {
        use ring::signature::KeyPair;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("a key");
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a pair");
        let encoding = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
        let header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        let token = jsonwebtoken::encode(&header, claims, &encoding).expect("a token");
        (token, DecodingKey::from_ed_der(pair.public_key().as_ref()))
    }

    #[test]
    fn issuer_audience_and_expiry_are_required_not_only_checked_when_present() {
        let exp = chrono::Utc::now().timestamp() + 600;
        let full =
            json!({"sub": "a", "iss": "https://issuer.example", "aud": "depman", "exp": exp});
        let (token, key) = signed(&full);
        assert!(checked_claims(&token, &key, Algorithm::EdDSA, &settings()).is_ok());
        for (missing, error) in [
            ("aud", TokenError::Audience),
            ("iss", TokenError::Issuer),
            ("exp", TokenError::Expired),
        ] {
            let mut claims = full.clone();
            claims.as_object_mut().expect("an object").remove(missing);
            let (token, key) = signed(&claims);
            assert_eq!(
                checked_claims(&token, &key, Algorithm::EdDSA, &settings()),
                Err(error),
                "without {missing}"
            );
        }
    }

    #[test]
    fn a_header_without_a_known_algorithm_is_refused_for_it() {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        assert_eq!(unreadable(&format!("{none}.e30.")), TokenError::Algorithm);
        assert_eq!(unreadable("garbage"), TokenError::Malformed);
    }

    #[test]
    fn the_user_and_groups_come_from_the_named_claims() {
        let claims =
            json!({"sub": "abc", "email": "a@example.com", "groups": ["team-a", 7, "ops"]});
        let claims = claims.as_object().expect("an object");
        assert_eq!(
            identity(claims, "sub", "groups"),
            Ok(Identity {
                user: "abc".into(),
                groups: vec!["team-a".into(), "ops".into()],
            })
        );
        assert_eq!(
            identity(claims, "email", "roles").map(|i| (i.user, i.groups.len())),
            Ok(("a@example.com".into(), 0))
        );
        assert_eq!(
            identity(claims, "preferred_username", "groups"),
            Err(TokenError::NoUser("preferred_username".into()))
        );
    }
}
