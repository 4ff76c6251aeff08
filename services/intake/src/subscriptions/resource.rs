//! The Subscription resource (R4, Backport IG profile) careloop accepts and serves,
//! and the notifications it sends.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{BACKPORT, TOPIC};
use crate::fhir::outcome::OperationOutcome;

/// The longest heartbeat period and delivery timeout careloop takes, in seconds.
pub const MAX_HEARTBEAT_SECS: u32 = 24 * 3600;
pub const MAX_TIMEOUT_SECS: u32 = 60;

/// What a notification carries about the Task that changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Empty,
    IdOnly,
    FullResource,
}

impl Content {
    pub fn as_str(self) -> &'static str {
        match self {
            Content::Empty => "empty",
            Content::IdOnly => "id-only",
            Content::FullResource => "full-resource",
        }
    }

    pub fn parse(s: &str) -> Option<Content> {
        match s {
            "empty" => Some(Content::Empty),
            "id-only" => Some(Content::IdOnly),
            "full-resource" => Some(Content::FullResource),
            _ => None,
        }
    }
}

/// A Subscription as a client asked for it, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSubscription {
    pub endpoint: String,
    pub headers: Vec<String>,
    pub content: Content,
    pub owner: Option<String>,
    pub requester: Option<String>,
    pub statuses: Option<Vec<String>>,
    pub heartbeat_secs: Option<u32>,
    pub timeout_secs: u32,
}

fn extension<'a>(element: &'a Value, name: &str) -> Option<&'a Value> {
    element
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e["url"] == format!("{BACKPORT}/{name}"))
}

fn invalid(path: &str, why: impl Into<String>) -> OperationOutcome {
    OperationOutcome::invalid(path, why.into())
}

impl TryFrom<&Value> for NewSubscription {
    type Error = OperationOutcome;

    /// Reads a Subscription: `criteria` must be careloop's topic; filters (the
    /// `backport-filter-criteria` extension on `_criteria`) are `Task?owner=…&
    /// requester=…&status=…`; the channel is `rest-hook` with an http(s) endpoint and
    /// `application/fhir+json`; content is `id-only` (the default), `full-resource` or
    /// `empty`.
    fn try_from(s: &Value) -> Result<Self, OperationOutcome> {
        if s["resourceType"] != "Subscription" {
            return Err(invalid("Subscription", "expected a Subscription"));
        }
        match s["criteria"].as_str() {
            Some(TOPIC) => {}
            Some(other) => {
                return Err(invalid(
                    "Subscription.criteria",
                    format!("unknown topic {other}; careloop offers {TOPIC}"),
                ));
            }
            None => return Err(OperationOutcome::required("Subscription.criteria")),
        }
        let (mut owner, mut requester, mut statuses) = (None, None, None);
        if let Some(filter) = s
            .get("_criteria")
            .and_then(|c| extension(c, "backport-filter-criteria"))
        {
            let path = "Subscription._criteria.extension.valueString";
            let raw = filter["valueString"].as_str().unwrap_or_default();
            let query = raw
                .strip_prefix("Task?")
                .ok_or_else(|| invalid(path, "a filter is Task?name=value&…"))?;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (name, value) = pair
                    .split_once('=')
                    .ok_or_else(|| invalid(path, format!("{pair} is not name=value")))?;
                match name {
                    "owner" => owner = Some(value.to_string()),
                    "requester" => requester = Some(value.to_string()),
                    "status" => {
                        statuses = Some(value.split(',').map(str::to_string).collect());
                    }
                    other => {
                        return Err(invalid(
                            path,
                            format!("filter {other} is not offered (owner, requester, status)"),
                        ));
                    }
                }
            }
        }
        let channel = s
            .get("channel")
            .ok_or_else(|| OperationOutcome::required("Subscription.channel"))?;
        if channel["type"] != "rest-hook" {
            return Err(invalid(
                "Subscription.channel.type",
                "careloop notifies by rest-hook only",
            ));
        }
        let endpoint = channel["endpoint"]
            .as_str()
            .filter(|e| e.starts_with("http://") || e.starts_with("https://"))
            .ok_or_else(|| invalid("Subscription.channel.endpoint", "an http(s) URL is needed"))?
            .to_string();
        if let Some(p) = channel["payload"].as_str()
            && p != "application/fhir+json"
        {
            return Err(invalid(
                "Subscription.channel.payload",
                "careloop sends application/fhir+json",
            ));
        }
        let content = match channel
            .get("_payload")
            .and_then(|p| extension(p, "backport-payload-content"))
        {
            None => Content::IdOnly,
            Some(e) => e["valueCode"]
                .as_str()
                .and_then(Content::parse)
                .ok_or_else(|| {
                    invalid(
                        "Subscription.channel._payload.extension.valueCode",
                        "payload content is empty, id-only or full-resource",
                    )
                })?,
        };
        let seconds = |name: &str, max: u32| -> Result<Option<u32>, OperationOutcome> {
            match extension(channel, name) {
                None => Ok(None),
                Some(e) => e["valueUnsignedInt"]
                    .as_u64()
                    .filter(|n| (1..=max as u64).contains(n))
                    .map(|n| Some(n as u32))
                    .ok_or_else(|| {
                        invalid(
                            &format!("Subscription.channel.extension({name})"),
                            format!("{name} is whole seconds from 1 to {max}"),
                        )
                    }),
            }
        };
        let heartbeat_secs = seconds("backport-heartbeat-period", MAX_HEARTBEAT_SECS)?;
        let timeout_secs = seconds("backport-timeout", MAX_TIMEOUT_SECS)?.unwrap_or(10);
        let headers = match channel.get("header") {
            None => vec![],
            Some(h) => h
                .as_array()
                .filter(|a| a.len() <= 10)
                .and_then(|a| {
                    a.iter()
                        .map(|v| v.as_str().filter(|s| s.contains(':') && s.len() <= 4096))
                        .map(|v| v.map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| {
                    invalid(
                        "Subscription.channel.header",
                        "at most 10 headers, each \"Name: value\"",
                    )
                })?,
        };
        Ok(NewSubscription {
            endpoint,
            headers,
            content,
            owner,
            requester,
            statuses,
            heartbeat_secs,
            timeout_secs,
        })
    }
}

/// The SubscriptionStatus (R4: a `Parameters` resource) of a notification.
pub struct Status<'a> {
    pub subscription_url: &'a str,
    pub status: &'a str,
    /// handshake | heartbeat | event-notification | query-status
    pub kind: &'a str,
    pub events_since_start: i64,
    /// (event number, when, the Task's URL) of an event notification.
    pub event: Option<(i64, DateTime<Utc>, String)>,
    pub error: Option<&'a str>,
}

impl Status<'_> {
    pub fn parameters(&self) -> Value {
        let mut parameter = vec![
            json!({"name": "subscription", "valueReference": {"reference": self.subscription_url}}),
            json!({"name": "topic", "valueCanonical": TOPIC}),
            json!({"name": "status", "valueCode": self.status}),
            json!({"name": "type", "valueCode": self.kind}),
            json!({"name": "events-since-subscription-start",
                   "valueString": self.events_since_start.to_string()}),
        ];
        if let Some((number, at, focus)) = &self.event {
            parameter.push(json!({"name": "notification-event", "part": [
                {"name": "event-number", "valueString": number.to_string()},
                {"name": "timestamp", "valueInstant": at},
                {"name": "focus", "valueReference": {"reference": focus}},
            ]}));
        }
        if let Some(e) = self.error {
            parameter.push(json!({"name": "error", "valueCodeableConcept": {"text": e}}));
        }
        json!({
            "resourceType": "Parameters",
            "id": uuid::Uuid::new_v4().to_string(),
            "meta": {"profile": [format!("{BACKPORT}/backport-subscription-status-r4")]},
            "parameter": parameter,
        })
    }

    /// The notification Bundle: `history`, the status first, then the Task (its URL
    /// only, or the resource with `full-resource`).
    pub fn bundle(&self, task: Option<(String, Option<Value>)>) -> Value {
        let mut entry = vec![json!({
            "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            "resource": self.parameters(),
            "request": {"method": "GET", "url": format!("{}/$status", self.subscription_url)},
            "response": {"status": "200"},
        })];
        if let Some((url, resource)) = task {
            let id = url.rsplit('/').next().unwrap_or_default().to_string();
            let mut e = json!({
                "fullUrl": url,
                "request": {"method": "PUT", "url": format!("Task/{id}")},
                "response": {"status": "200"},
            });
            if let Some(r) = resource {
                e["resource"] = r;
            }
            entry.push(e);
        }
        json!({
            "resourceType": "Bundle",
            "id": uuid::Uuid::new_v4().to_string(),
            "type": "history",
            "timestamp": Utc::now(),
            "entry": entry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(filter: &str, content: &str) -> Value {
        json!({
            "resourceType": "Subscription", "status": "requested", "reason": "closed loop",
            "criteria": TOPIC,
            "_criteria": {"extension": [{"url": format!("{BACKPORT}/backport-filter-criteria"),
                                         "valueString": filter}]},
            "channel": {
                "type": "rest-hook", "endpoint": "https://ehr.example/notify",
                "payload": "application/fhir+json",
                "_payload": {"extension": [{"url": format!("{BACKPORT}/backport-payload-content"),
                                            "valueCode": content}]},
                "extension": [{"url": format!("{BACKPORT}/backport-heartbeat-period"), "valueUnsignedInt": 60}],
                "header": ["Authorization: Bearer abc"]
            }
        })
    }

    #[test]
    fn a_subscription_is_read_with_its_filters_or_refused_naming_the_element() {
        let s = NewSubscription::try_from(&subscription(
            "Task?status=completed,failed&requester=Organization/st-marys",
            "full-resource",
        ))
        .unwrap();
        assert_eq!(s.content, Content::FullResource);
        assert_eq!(s.statuses, Some(vec!["completed".into(), "failed".into()]));
        assert_eq!(s.requester.as_deref(), Some("Organization/st-marys"));
        assert_eq!((s.heartbeat_secs, s.timeout_secs), (Some(60), 10));
        assert_eq!(s.headers, vec!["Authorization: Bearer abc".to_string()]);

        let refused = |v: Value| NewSubscription::try_from(&v).unwrap_err().expression;
        let mut other_topic = subscription("Task?status=completed", "id-only");
        other_topic["criteria"] = json!("http://example.org/topic");
        assert_eq!(
            refused(other_topic).as_deref(),
            Some("Subscription.criteria")
        );
        assert_eq!(
            refused(subscription("Task?patient=Patient/1", "id-only")).as_deref(),
            Some("Subscription._criteria.extension.valueString")
        );
        assert_eq!(
            refused(subscription("Task?status=completed", "everything")).as_deref(),
            Some("Subscription.channel._payload.extension.valueCode")
        );
        let mut email = subscription("Task?status=completed", "id-only");
        email["channel"]["type"] = json!("email");
        assert_eq!(refused(email).as_deref(), Some("Subscription.channel.type"));
    }
}
