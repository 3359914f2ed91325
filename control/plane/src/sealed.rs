//! Values the metadata store keeps but must never show, such as a Pulsar trigger's token:
//! sealed with ChaCha20-Poly1305 under a key kept among the store's server-wide secrets
//! (created by the first process that needs it), a random nonce per value. What this protects
//! against: the value turning up in an API answer, a log, or a dump of the table that holds
//! it. A dump of the whole database includes the key.

use crate::store::{MetadataStore, StoreError};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

/// The name of the key among the store's secrets.
const KEY_NAME: &str = "sealing-key";
/// The version prefix of a sealed value (`v1:` then hex of nonce and ciphertext with tag).
const PREFIX: &str = "v1:";

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key could not be read or created.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored key is not a key.
    #[error("the sealing key in the metadata store is damaged")]
    BadKey,
    /// The random source failed.
    #[error("the operating system's random source failed")]
    Random,
    /// The sealed value is damaged, or was sealed under another key.
    #[error("a sealed value could not be opened (damaged, or sealed under another key)")]
    Damaged,
}

/// Seals and opens values under the store's key.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// The sealer of `store` (its key, made on first use).
    pub async fn of(store: &MetadataStore) -> Result<Sealer, SealError> {
        let key = store
            .secret(KEY_NAME, || {
                let mut k = vec![0u8; 32];
                // The secret's maker cannot fail; an all-zero key would be caught below.
                let _ = getrandom::fill(&mut k);
                k
            })
            .await?;
        if key.len() != 32 || key.iter().all(|b| *b == 0) {
            return Err(SealError::BadKey);
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, &key).map_err(|_| SealError::BadKey)?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
        })
    }

    /// `plain` sealed, as text; `aad` (e.g. the owning row's id) must be given again to open
    /// it, so a sealed value copied to another row does not open.
    pub fn seal(&self, plain: &[u8], aad: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SealError::Random)?;
        let mut out = String::with_capacity(PREFIX.len() + 2 * (NONCE_LEN + buf.len()));
        out.push_str(PREFIX);
        for b in nonce.iter().chain(&buf) {
            out.push_str(&format!("{b:02x}"));
        }
        Ok(out)
    }

    /// The value `sealed` holds, if it was sealed under this key with `aad`.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<Vec<u8>, SealError> {
        let hex = sealed.strip_prefix(PREFIX).ok_or(SealError::Damaged)?;
        if hex.len() % 2 != 0 || hex.len() < 2 * NONCE_LEN {
            return Err(SealError::Damaged);
        }
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        for pair in hex.as_bytes().chunks(2) {
            let text = std::str::from_utf8(pair).map_err(|_| SealError::Damaged)?;
            bytes.push(u8::from_str_radix(text, 16).map_err(|_| SealError::Damaged)?);
        }
        let (nonce, sealed) = bytes.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Damaged)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), sealed)
            .map_err(|_| SealError::Damaged)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        let key = UnboundKey::new(&CHACHA20_POLY1305, &[byte; 32]).unwrap();
        Sealer {
            key: LessSafeKey::new(key),
        }
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_row() {
        let s = sealer(7);
        let sealed = s.seal(b"token-123", "f1").unwrap();
        assert!(sealed.starts_with("v1:") && !sealed.contains("token"));
        assert_ne!(sealed, s.seal(b"token-123", "f1").unwrap(), "nonces repeat");
        assert_eq!(s.open(&sealed, "f1").unwrap(), b"token-123");
        assert!(matches!(s.open(&sealed, "f2"), Err(SealError::Damaged)));
        assert!(matches!(
            sealer(8).open(&sealed, "f1"),
            Err(SealError::Damaged)
        ));
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(matches!(s.open(&flipped, "f1"), Err(SealError::Damaged)));
        for junk in ["", "v1:", "v1:zz", "v2:00", "v1:0", "plain"] {
            assert!(
                matches!(s.open(junk, "f1"), Err(SealError::Damaged)),
                "{junk}"
            );
        }
    }
}
