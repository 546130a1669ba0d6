//! Signing secrets: generated here, shown to their owner once, and kept
//! encrypted (ChaCha20-Poly1305 under `DEPMAN_WEBHOOK_KEY`, bound to their
//! webhook's id) so that a database dump does not reveal them. A signature
//! needs the secret itself, so it cannot be hashed like a password.

use std::{fmt, str::FromStr};

use base64::{Engine, engine::general_purpose::STANDARD};
use ring::{
    aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};
use uuid::Uuid;

/// The key that encrypts signing secrets: 32 bytes.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for SecretKey {
    type Err = String;

    /// 32 bytes in base64 (`openssl rand -base64 32`).
    fn from_str(text: &str) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| "must be base64 (openssl rand -base64 32)".to_owned())?;
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| "must be 32 bytes, base64-encoded (openssl rand -base64 32)".to_owned())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "a webhook secret cannot be read: it was sealed with another DEPMAN_WEBHOOK_KEY, or altered"
)]
pub struct Unreadable;

impl SecretKey {
    fn key(&self) -> LessSafeKey {
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("32 bytes is the key length");
        LessSafeKey::new(unbound)
    }

    /// The secret sealed for webhook `id`: a random nonce, then the
    /// ciphertext and its tag.
    pub fn seal(&self, id: Uuid, secret: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut sealed = secret.as_bytes().to_vec();
        self.key()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(id.as_bytes()),
                &mut sealed,
            )
            .expect("sealing a short secret cannot fail");
        [nonce.as_slice(), &sealed].concat()
    }

    pub fn open(&self, id: Uuid, sealed: &[u8]) -> Result<String, Unreadable> {
        if sealed.len() < NONCE_LEN {
            return Err(Unreadable);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unreadable)?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key()
            .open_in_place(nonce, Aad::from(id.as_bytes()), &mut buffer)
            .map_err(|_| Unreadable)?;
        String::from_utf8(plain.to_vec()).map_err(|_| Unreadable)
    }
}

/// A new signing secret, in the Standard Webhooks form: `whsec_` and 32
/// random bytes in base64.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    format!("whsec_{}", STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        STANDARD.encode([byte; 32]).parse().expect("a key")
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_its_webhook() {
        let (id, other) = (Uuid::new_v4(), Uuid::new_v4());
        let secret = generate();
        let sealed = key(1).seal(id, &secret);
        assert!(
            !sealed
                .windows(8)
                .any(|w| secret.as_bytes().windows(8).any(|s| s == w))
        );
        assert_eq!(key(1).open(id, &sealed).expect("opens"), secret);
        assert!(key(2).open(id, &sealed).is_err());
        assert!(key(1).open(other, &sealed).is_err());
        let mut altered = sealed.clone();
        altered[20] ^= 1;
        assert!(key(1).open(id, &altered).is_err());
        assert!(key(1).open(id, &sealed[..4]).is_err());
    }

    #[test]
    fn keys_are_32_bytes_of_base64_and_never_print() {
        assert!("c2hvcnQ=".parse::<SecretKey>().is_err());
        assert!("not base64!".parse::<SecretKey>().is_err());
        assert_eq!(format!("{:?}", key(7)), "[redacted]");
        assert!(generate().starts_with("whsec_"));
        assert_ne!(generate(), generate());
    }
}
