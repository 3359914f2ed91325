//! API tokens and server-wide secrets in the metadata store. Tokens are kept only as the hash
//! the caller computes, each scoped to one organisation. Secrets (the upload-URL signing key,
//! ...) are created once by whichever API process asks first and read by all the others.

use super::{now, MetadataStore, StoreError};

impl MetadataStore {
    /// Registers an API token (by its hash) for the organisation `org`. Registering it again
    /// for the same organisation does nothing; for another one it is
    /// [`StoreError::TokenTaken`].
    pub async fn add_token(
        &self,
        org: &str,
        token_hash: &str,
        label: Option<&str>,
    ) -> Result<(), StoreError> {
        const OP: &str = "add_token";
        let done = sqlx::query(
            "INSERT INTO api_tokens (token_hash, org_id, label, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(token_hash)
        .bind(org)
        .bind(label)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(OP))?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        match self.org_of_token(token_hash).await? {
            Some(owner) if owner == org => Ok(()),
            _ => Err(StoreError::TokenTaken),
        }
    }

    /// The organisation of the token whose hash is `token_hash`; `None` for an unknown token.
    pub async fn org_of_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT org_id FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("org_of_token"))
    }

    /// The server-wide secret `name`, created from `make()` if there is none yet. Processes
    /// asking at once all end with the value of the first to store one.
    pub async fn secret(
        &self,
        name: &str,
        make: impl FnOnce() -> Vec<u8> + Send,
    ) -> Result<Vec<u8>, StoreError> {
        const OP: &str = "secret";
        let read = || async {
            let value: Option<String> =
                sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::query(OP))?;
            value
                .map(|v: String| {
                    from_hex(&v).ok_or_else(|| StoreError::Corrupt {
                        what: format!("secret {name}"),
                        detail: "not hex".into(),
                    })
                })
                .transpose()
        };
        if let Some(value) = read().await? {
            return Ok(value);
        }
        sqlx::query(
            "INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(to_hex(&make()))
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(OP))?;
        // Ours, or the one a concurrent caller stored first.
        read().await?.ok_or_else(|| StoreError::Corrupt {
            what: format!("secret {name}"),
            detail: "missing right after it was stored".into(),
        })
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| match *pair {
            [hi, lo] => Some(nibble(hi)? << 4 | nibble(lo)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{from_hex, to_hex};

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("+1"), None, "from_str_radix accepts a sign");
    }
}
