//! Pulsar triggers in the store, on both databases: set (create, then replace in place),
//! scoped by owner, the token kept only as given (sealed by the caller), deleted with their
//! Function, and the list workers read.

use super::{func, TestDb, R};
use fnvm_control::model::PulsarTriggerSpec;

both!(triggers_are_set_replaced_scoped_and_deleted);

fn spec(topic: &str) -> PulsarTriggerSpec {
    PulsarTriggerSpec {
        pulsar_url: "pulsar://broker:6650".into(),
        pulsar_token: None,
        pulsar_topic_fqdn: topic.into(),
        pulsar_topic_fqdn_is_regex: false,
        structured: true,
        dead_letter_topic: None,
    }
}

async fn triggers_are_set_replaced_scoped_and_deleted(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    let g = func(&st, "org", "g").await?;
    let t1 = "persistent://public/default/a";
    let set = st
        .set_pulsar_trigger(
            "org",
            &f.id,
            &spec(t1),
            "persistent://p/d/dlq",
            Some("v1:sealed"),
        )
        .await?
        .unwrap();
    assert_eq!(set.pulsar_topic_fqdn, t1);
    assert!(set.has_token && set.structured && set.external);
    assert_eq!(set.subscription, format!("fnvm-{}", f.id));
    assert_eq!(set.dead_letter_topic, "persistent://p/d/dlq");
    // Another owner can neither set nor see it.
    assert!(st
        .set_pulsar_trigger("other", &f.id, &spec(t1), "persistent://p/d/x", None)
        .await?
        .is_none());
    assert!(st.pulsar_trigger("other", &f.id).await?.is_none());
    assert!(!st.delete_pulsar_trigger("other", &f.id).await?);
    assert!(st.pulsar_trigger("org", &g.id).await?.is_none());

    // Replaced in place: one row, the new settings, the creation time kept.
    super::tick().await;
    let t2 = "persistent://public/default/b";
    let replaced = st
        .set_pulsar_trigger("org", &f.id, &spec(t2), "persistent://p/d/dlq", None)
        .await?
        .unwrap();
    assert_eq!(replaced.pulsar_topic_fqdn, t2);
    assert!(!replaced.has_token);
    assert_eq!(replaced.created_at, set.created_at);
    assert!(replaced.updated_at > set.updated_at);
    st.set_pulsar_trigger("org", &g.id, &spec(t1), "persistent://p/d/g", Some("v1:g"))
        .await?
        .unwrap();
    let all = st.pulsar_triggers().await?;
    assert_eq!(all.len(), 2);
    let of_g = all.iter().find(|t| t.trigger.function_id == g.id).unwrap();
    assert_eq!(of_g.sealed_token.as_deref(), Some("v1:g"));

    // Deleted by itself, or with its Function.
    assert!(st.delete_pulsar_trigger("org", &f.id).await?);
    assert!(!st.delete_pulsar_trigger("org", &f.id).await?);
    assert!(st.delete_function("org", &g.id).await?);
    assert!(st.pulsar_triggers().await?.is_empty());
    assert_eq!(db.count("pulsar_triggers").await, 0);
    Ok(())
}
