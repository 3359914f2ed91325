//! Who may do what. API clients present a bearer token scoped to one organisation (or an
//! operator token, scoped to all); the server keeps only the tokens' SHA-256, so a leaked
//! database reveals none. Uploads go to a signed, expiring URL bound to one deployment, so a
//! client can `PUT` its code there without the token (as the real platform's clients do).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The organisation an operator token is scoped to: every organisation, and the operator
/// routes.
pub const OPERATOR_SCOPE: &str = "*";

/// How long an upload URL stays valid.
pub const UPLOAD_URL_TTL_SECS: u64 = 3600;

/// A new random API token (`fnvm_` and 64 hex digits: 256 bits).
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    format!("fnvm_{}", hex(&b))
}

/// What the server stores of a token.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why an upload URL was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum UploadUrlError {
    /// Its time is over.
    #[error("the upload URL has expired; create a new deployment")]
    Expired,
    /// It was not signed by this platform for this deployment.
    #[error("the upload URL's signature is invalid")]
    BadSignature,
}

/// Signs and checks upload URLs with the platform's key (shared by every API process through
/// the metadata store).
#[derive(Clone)]
pub struct UploadSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UploadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadSigner { key: <secret> }")
    }
}

impl UploadSigner {
    /// A signer with `key`.
    pub fn new(key: Vec<u8>) -> UploadSigner {
        UploadSigner { key }
    }

    /// A new random key.
    pub fn new_key() -> Vec<u8> {
        let mut b = vec![0u8; 32];
        getrandom::fill(&mut b).expect("the operating system's random source failed");
        b
    }

    fn mac(&self, deployment_id: &str, expires: u64) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC accepts every key length");
        mac.update(b"fnvm-upload\0");
        mac.update(deployment_id.as_bytes());
        mac.update(b"\0");
        mac.update(&expires.to_le_bytes());
        mac
    }

    /// The signature for an upload to `deployment_id` valid until `expires` (Unix seconds).
    pub fn sign(&self, deployment_id: &str, expires: u64) -> String {
        hex(&self.mac(deployment_id, expires).finalize().into_bytes())
    }

    /// Checks a signature (in constant time) and the expiry against `now` (Unix seconds).
    pub fn verify(
        &self,
        deployment_id: &str,
        expires: u64,
        signature: &str,
        now: u64,
    ) -> Result<(), UploadUrlError> {
        let sig = unhex(signature).ok_or(UploadUrlError::BadSignature)?;
        self.mac(deployment_id, expires)
            .verify_slice(&sig)
            .map_err(|_| UploadUrlError::BadSignature)?;
        if now > expires {
            return Err(UploadUrlError::Expired);
        }
        Ok(())
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hash_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with("fnvm_") && a.len() == 69);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
        assert_eq!(hash_token(&a).len(), 64);
    }

    #[test]
    fn upload_urls_are_bound_and_expire() {
        let s = UploadSigner::new(b"key".to_vec());
        let sig = s.sign("d1", 100);
        assert_eq!(s.verify("d1", 100, &sig, 50), Ok(()));
        assert_eq!(
            s.verify("d2", 100, &sig, 50),
            Err(UploadUrlError::BadSignature)
        );
        assert_eq!(
            s.verify("d1", 101, &sig, 50),
            Err(UploadUrlError::BadSignature)
        );
        assert_eq!(s.verify("d1", 100, &sig, 101), Err(UploadUrlError::Expired));
        assert_eq!(
            s.verify("d1", 100, "zz", 50),
            Err(UploadUrlError::BadSignature)
        );
        let other = UploadSigner::new(b"other".to_vec());
        assert_eq!(
            other.verify("d1", 100, &sig, 50),
            Err(UploadUrlError::BadSignature)
        );
    }
}
