//! A Function's Pulsar trigger as the API shows it (`.../functions/{functionId}/trigger-pulsar`),
//! with the real platform's snake_case field names (`pulsar_url`, `pulsar_token`,
//! `pulsar_topic_fqdn`, `pulsar_topic_fqdn_is_regex`; the details add `external`), and the
//! validation of what clients send. The token is write-only: it is stored encrypted and never
//! shown again.

use super::{Timestamp, ValidationError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest broker URL, topic name or pattern, in bytes.
pub const MAX_PULSAR_FIELD: usize = 2048;
/// Longest token, in bytes.
pub const MAX_PULSAR_TOKEN: usize = 16 << 10;

/// What a client sends to set a Function's Pulsar trigger. Unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PulsarTriggerSpec {
    /// The broker's service URL: `pulsar://host:port` or `pulsar+ssl://host:port`.
    pub pulsar_url: String,
    /// A token for the broker's token authentication (stored encrypted, never shown).
    #[serde(default)]
    pub pulsar_token: Option<String>,
    /// The topic (`persistent://tenant/namespace/topic`), or with
    /// `pulsar_topic_fqdn_is_regex` a pattern over the topics of one namespace
    /// (`persistent://tenant/namespace/orders-.*`).
    pub pulsar_topic_fqdn: String,
    /// Whether `pulsar_topic_fqdn` is a regular expression.
    #[serde(default)]
    pub pulsar_topic_fqdn_is_regex: bool,
    /// Whether the Function gets the message as the Pulsar trigger's JSON document (topic, id,
    /// key, properties, times, payload) instead of the raw payload on stdin. An fnvm
    /// extension.
    #[serde(default)]
    pub structured: bool,
    /// Where messages go after the Function's `maxAttempts` failed deliveries (default:
    /// `fnvm-{functionId}-DLQ` in the topic's namespace). An fnvm extension.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
}

/// A Function's Pulsar trigger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PulsarTrigger {
    /// The Function.
    pub function_id: String,
    /// The broker's service URL.
    pub pulsar_url: String,
    /// The topic or pattern.
    pub pulsar_topic_fqdn: String,
    /// Whether `pulsar_topic_fqdn` is a regular expression.
    pub pulsar_topic_fqdn_is_regex: bool,
    /// Whether the broker is one the user runs rather than the platform's (always, in fnvm).
    pub external: bool,
    /// Whether a token was given (it is never shown).
    pub has_token: bool,
    /// Whether the Function gets the structured JSON document.
    pub structured: bool,
    /// Where failed messages go.
    pub dead_letter_topic: String,
    /// The shared subscription the workers consume with.
    pub subscription: String,
    /// When it was set.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it last changed.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// The subscription every worker consumes a Function's topic with (shared: each message goes
/// to one of them).
pub fn pulsar_subscription(function_id: &str) -> String {
    format!("fnvm-{function_id}")
}

/// A topic name's parts: `(persistence, tenant, namespace, local name)`.
pub fn topic_parts(topic: &str) -> Option<(&str, &str, &str, &str)> {
    let (persistence, rest) = topic.split_once("://")?;
    if persistence != "persistent" && persistence != "non-persistent" {
        return None;
    }
    let mut parts = rest.splitn(3, '/');
    let (tenant, namespace, local) = (parts.next()?, parts.next()?, parts.next()?);
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.=:".contains(&b))
    };
    (plain(tenant) && plain(namespace) && !local.is_empty()).then_some((
        persistence,
        tenant,
        namespace,
        local,
    ))
}

fn check_topic(field: &str, topic: &str) -> Result<(), ValidationError> {
    let bad = || {
        ValidationError::new(
            field,
            "a topic is `persistent://tenant/namespace/name` (or non-persistent://)",
        )
    };
    let (_, _, _, local) = topic_parts(topic).ok_or_else(bad)?;
    if !local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.=:".contains(&b))
    {
        return Err(bad());
    }
    Ok(())
}

impl PulsarTriggerSpec {
    /// Checks every field; the dead-letter topic it resolves to for `function_id`.
    pub fn validate(&self, function_id: &str) -> Result<String, ValidationError> {
        let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        if self.pulsar_url.len() > MAX_PULSAR_FIELD || !printable(&self.pulsar_url) {
            return Err(ValidationError::new("pulsar_url", "not a URL"));
        }
        let rest = self
            .pulsar_url
            .strip_prefix("pulsar://")
            .or_else(|| self.pulsar_url.strip_prefix("pulsar+ssl://"))
            .ok_or_else(|| {
                ValidationError::new(
                    "pulsar_url",
                    "the broker's URL is pulsar://host:port or pulsar+ssl://host:port",
                )
            })?;
        let host_port = rest.trim_end_matches('/');
        let port_ok = host_port
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok || host_port.contains(['/', '@', '?', '#']) {
            return Err(ValidationError::new(
                "pulsar_url",
                "the broker's URL is pulsar://host:port or pulsar+ssl://host:port (one broker)",
            ));
        }
        if let Some(t) = &self.pulsar_token {
            if t.is_empty()
                || t.len() > MAX_PULSAR_TOKEN
                || !t.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(ValidationError::new(
                    "pulsar_token",
                    format!("a token is printable ASCII, at most {MAX_PULSAR_TOKEN} bytes"),
                ));
            }
        }
        let topic = &self.pulsar_topic_fqdn;
        if topic.len() > MAX_PULSAR_FIELD {
            return Err(ValidationError::new("pulsar_topic_fqdn", "too long"));
        }
        let (persistence, tenant, namespace, local) = if self.pulsar_topic_fqdn_is_regex {
            let parts = topic_parts(topic).ok_or_else(|| {
                ValidationError::new(
                    "pulsar_topic_fqdn",
                    "a pattern is `persistent://tenant/namespace/` followed by a regular \
                     expression over the namespace's topic names",
                )
            })?;
            regex::Regex::new(topic).map_err(|e| {
                ValidationError::new(
                    "pulsar_topic_fqdn",
                    format!("not a regular expression: {e}"),
                )
            })?;
            parts
        } else {
            check_topic("pulsar_topic_fqdn", topic)?;
            topic_parts(topic).unwrap_or_default()
        };
        let _ = local;
        let dead_letter = match &self.dead_letter_topic {
            Some(d) => {
                check_topic("dead_letter_topic", d)?;
                d.clone()
            }
            None => format!("{persistence}://{tenant}/{namespace}/fnvm-{function_id}-DLQ"),
        };
        let feeds_itself = if self.pulsar_topic_fqdn_is_regex {
            regex::Regex::new(&format!("^(?:{topic})$")).is_ok_and(|r| r.is_match(&dead_letter))
        } else {
            dead_letter == *topic
        };
        if feeds_itself {
            return Err(ValidationError::new(
                "dead_letter_topic",
                "the dead-letter topic must not be one the trigger consumes",
            ));
        }
        Ok(dead_letter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, topic: &str, regex: bool) -> PulsarTriggerSpec {
        PulsarTriggerSpec {
            pulsar_url: url.into(),
            pulsar_token: None,
            pulsar_topic_fqdn: topic.into(),
            pulsar_topic_fqdn_is_regex: regex,
            structured: false,
            dead_letter_topic: None,
        }
    }

    #[test]
    fn triggers_are_checked_and_get_a_dead_letter_topic() {
        let ok = spec(
            "pulsar://broker:6650",
            "persistent://public/default/orders",
            false,
        );
        assert_eq!(
            ok.validate("f1").unwrap(),
            "persistent://public/default/fnvm-f1-DLQ"
        );
        let re = spec(
            "pulsar+ssl://b.example:6651",
            "persistent://t/ns/orders-.*",
            true,
        );
        assert_eq!(re.validate("f1").unwrap(), "persistent://t/ns/fnvm-f1-DLQ");
        for (s, field) in [
            (
                spec("http://b:6650", "persistent://a/b/c", false),
                "pulsar_url",
            ),
            (
                spec("pulsar://b", "persistent://a/b/c", false),
                "pulsar_url",
            ),
            (
                spec("pulsar://u@b:1", "persistent://a/b/c", false),
                "pulsar_url",
            ),
            (
                spec("pulsar://b:0", "persistent://a/b/c", false),
                "pulsar_url",
            ),
            (spec("pulsar://b:1", "orders", false), "pulsar_topic_fqdn"),
            (
                spec("pulsar://b:1", "persistent://a/b/c d", false),
                "pulsar_topic_fqdn",
            ),
            (
                spec("pulsar://b:1", "persistent://a/b/(", true),
                "pulsar_topic_fqdn",
            ),
            // A pattern that would consume its own dead letters.
            (
                spec("pulsar://b:1", "persistent://a/b/.*", true),
                "dead_letter_topic",
            ),
        ] {
            assert_eq!(s.validate("f1").unwrap_err().field, field, "{s:?}");
        }
        let mut own = ok.clone();
        own.dead_letter_topic = Some(own.pulsar_topic_fqdn.clone());
        assert_eq!(own.validate("f").unwrap_err().field, "dead_letter_topic");
        let mut token = ok;
        token.pulsar_token = Some("two words".into());
        assert_eq!(token.validate("f").unwrap_err().field, "pulsar_token");
    }
}
