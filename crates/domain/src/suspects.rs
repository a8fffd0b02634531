//! "What changed before this alert?": the changes in the alert's environments in a window before
//! it started, ranked by a score whose every part comes with a reason a person can check.
//!
//! score = kind weight (deploy or merged pull request 0.5, AWS change 0.35, other 0.3)
//!       + 0.4 × closeness (1 just before the alert, 0 at the start of the window)
//!       + 0.3 if the change names the alert's service
//!       + 0.15 for a security group or network change, 0.1 for an IAM change, 0.1 for a
//!         deletion or termination
//!       + 0.1 for a failed deploy or a failed AWS call (error code)

use time::OffsetDateTime;

use crate::event::EventKind;
use crate::timeline::TimelineItem;

#[derive(Debug, Clone, PartialEq)]
pub struct Suspect {
    pub item: TimelineItem,
    pub score: f64,
    pub reasons: Vec<String>,
}

fn minutes_before(alert_at: OffsetDateTime, at: OffsetDateTime) -> String {
    let minutes = (alert_at - at).whole_minutes().max(0);
    match minutes {
        0 => "less than a minute before".to_owned(),
        1 => "1 minute before".to_owned(),
        m => format!("{m} minutes before"),
    }
}

fn service_of(item: &TimelineItem) -> Option<&str> {
    item.labels.get("service").map(String::as_str)
}

pub fn rank(alert: &TimelineItem, candidates: Vec<TimelineItem>, window: time::Duration) -> Vec<Suspect> {
    let alert_service = service_of(alert);
    let window_secs = window.as_seconds_f64().max(1.0);
    let mut suspects: Vec<Suspect> = candidates
        .into_iter()
        .filter(|c| c.id != alert.id && c.kind != EventKind::Alert && c.occurred_at <= alert.occurred_at)
        .map(|item| {
            let mut reasons = Vec::new();
            let when = minutes_before(alert.occurred_at, item.occurred_at);
            let cloudtrail = item.details.cloudtrail();
            let name = cloudtrail.map_or("", |d| d.event_name.as_str());
            let source = cloudtrail.map_or("", |d| d.event_source.as_str());
            let mut score = match item.kind {
                EventKind::Deploy => {
                    reasons.push(format!("deploy of {} {when}", service_of(&item).unwrap_or("a service")));
                    0.5
                }
                // A merged PR ships like a deploy (often it is what a deploy then ships).
                EventKind::PullRequest => {
                    let number = item.labels.get("pull_request").map_or("", String::as_str);
                    let base = item.labels.get("base").map_or("its base branch", String::as_str);
                    reasons.push(format!("PR {number} merged into {base} {when}").replace("  ", " "));
                    0.5
                }
                EventKind::Cloudtrail => {
                    reasons.push(format!("AWS change ({name}) {when}"));
                    0.35
                }
                _ => {
                    reasons.push(format!("change {when}"));
                    0.3
                }
            };
            let closeness =
                1.0 - ((alert.occurred_at - item.occurred_at).as_seconds_f64() / window_secs).clamp(0.0, 1.0);
            score += 0.4 * closeness;
            if let (Some(a), Some(s)) = (alert_service, service_of(&item)) {
                if a == s {
                    score += 0.3;
                    reasons.push(format!("same service as the alert ({a})"));
                }
            }
            if source == "ec2.amazonaws.com"
                && (name.contains("SecurityGroup") || name.contains("NetworkAcl") || name.contains("Route"))
            {
                score += 0.15;
                reasons.push(if name.contains("SecurityGroup") {
                    "security group change".to_owned()
                } else {
                    "network change".to_owned()
                });
            }
            if source == "iam.amazonaws.com" {
                score += 0.1;
                reasons.push("IAM change".to_owned());
            }
            if item.kind == EventKind::Cloudtrail && (name.starts_with("Delete") || name.starts_with("Terminate")) {
                score += 0.1;
                reasons.push("deletes or terminates a resource".to_owned());
            }
            if let Some(code) = cloudtrail.and_then(|d| d.error_code.clone()) {
                score += 0.1;
                reasons.push(format!("failed API call ({code})"));
            }
            if item.kind == EventKind::Deploy {
                if let Some(status @ ("failed" | "rolled_back")) = item.details.text("status") {
                    score += 0.1;
                    reasons.push(format!("the deploy {}", status.replace('_', " ")));
                }
            }
            Suspect { item, score: (score * 1000.0).round() / 1000.0, reasons }
        })
        .collect();
    suspects.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.item.occurred_at.cmp(&a.item.occurred_at)));
    suspects
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(
        kind: EventKind,
        minutes_before: i64,
        alert_at: OffsetDateTime,
        details: serde_json::Value,
        service: Option<&str>,
    ) -> TimelineItem {
        TimelineItem {
            id: uuid::Uuid::now_v7(),
            kind,
            source: "t".into(),
            occurred_at: alert_at - time::Duration::minutes(minutes_before),
            title: "t".into(),
            actor: None,
            read_only: false,
            environments: vec!["prod".into()],
            resources: vec![],
            labels: service.map(|s| [("service".to_owned(), s.to_owned())].into_iter().collect()).unwrap_or_default(),
            links: vec![],
            details: crate::event::Details::from_stored(kind, &details.to_string()),
            ingested_at: alert_at,
            ingested_via: crate::event::IngestPath::Api,
        }
    }

    #[test]
    fn a_recent_deploy_outranks_an_old_unrelated_change_and_says_why() {
        let at = crate::time_util::now();
        let alert = item(EventKind::Alert, 0, at, json!({}), Some("checkout-api"));
        let deploy = item(EventKind::Deploy, 5, at, json!({"status": "succeeded"}), Some("checkout-api"));
        let old = item(
            EventKind::Cloudtrail,
            100,
            at,
            json!({"event_name": "PutBucketPolicy", "event_source": "s3.amazonaws.com"}),
            None,
        );
        let ranked = rank(&alert, vec![old.clone(), deploy.clone()], time::Duration::minutes(120));
        assert_eq!(ranked[0].item.id, deploy.id);
        assert!(ranked[0].score > ranked[1].score);
        assert_eq!(ranked[0].reasons[0], "deploy of checkout-api 5 minutes before");
        assert!(ranked[0].reasons.contains(&"same service as the alert (checkout-api)".to_owned()));
        assert_eq!(ranked[1].reasons, ["AWS change (PutBucketPolicy) 100 minutes before"]);
    }

    #[test]
    fn risky_aws_changes_carry_their_reasons() {
        let at = crate::time_util::now();
        let alert = item(EventKind::Alert, 0, at, json!({}), None);
        let sg = item(
            EventKind::Cloudtrail,
            30,
            at,
            json!({"event_name": "DeleteSecurityGroup", "event_source": "ec2.amazonaws.com", "error_code": "AccessDenied"}),
            None,
        );
        let ranked = rank(&alert, vec![sg], time::Duration::minutes(120));
        let reasons = &ranked[0].reasons;
        for expected in ["security group change", "deletes or terminates a resource", "failed API call (AccessDenied)"]
        {
            assert!(reasons.contains(&expected.to_owned()), "{reasons:?}");
        }
    }
}
