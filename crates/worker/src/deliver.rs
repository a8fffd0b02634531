//! The outbox job: leases due deliveries of rules' matches and sends each to PagerDuty (Events
//! API v2) or a webhook (signed as Standard Webhooks), at least once. What to send and when to
//! retry is `domain::rule::delivery`'s; here is only the sending.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::rule::delivery::{self, AttemptResult, DeliveryAttempt, DeliveryStatus, DueDelivery, NextStep};
use domain::rule::target;
use domain::rule::{Rule, RuleAction};
use domain::secret_box::SecretKey;
use domain::timeline::TimelineItem;
use domain::Store;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// `CHANGETRAIL_PAGERDUTY_URL`: PagerDuty's Events API (`https://events.pagerduty.com`).
    pub pagerduty_url: String,
    /// Unseals routing keys and webhook secrets.
    pub secret_key: SecretKey,
    /// `CHANGETRAIL_ALLOW_PRIVATE_TARGETS`: webhooks may go to private addresses.
    pub allow_private_targets: bool,
    /// Deliveries one worker sends at once.
    pub concurrency: usize,
    /// How long a claimed delivery stays leased (longer than one attempt can take).
    pub lease: Duration,
    /// How often an idle worker looks for due deliveries.
    pub poll: Duration,
    /// The longest one attempt may take, connecting and reading the answer included.
    pub timeout: Duration,
}

impl DeliverySettings {
    pub fn new(secret_key: SecretKey) -> DeliverySettings {
        DeliverySettings {
            pagerduty_url: "https://events.pagerduty.com".into(),
            secret_key,
            allow_private_targets: false,
            concurrency: 16,
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The most of an answer's body read (PagerDuty's answers are a few hundred bytes; a webhook
/// target's may be anything).
const MAX_ANSWER_BYTES: usize = 4096;

/// How often a running deliverer reads the outbox's backlog for its gauges.
const BACKLOG_EVERY: Duration = Duration::from_secs(10);

/// One worker process's sender of the outbox.
pub struct Deliverer {
    store: Arc<dyn Store>,
    settings: DeliverySettings,
    owner: String,
    pagerduty: reqwest::Client,
}

fn client(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("changetrail/", env!("CARGO_PKG_VERSION")))
}

impl Deliverer {
    pub fn new(store: Arc<dyn Store>, settings: DeliverySettings) -> Result<Arc<Deliverer>, String> {
        let pagerduty = client(settings.timeout).build().map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let owner = format!("deliverer-{}", Uuid::now_v7());
        Ok(Arc::new(Deliverer { store, settings, owner, pagerduty }))
    }

    /// Claims and sends due deliveries until `shutdown` is cancelled; then lets the attempts
    /// under way finish and frees the leases.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut running: JoinSet<()> = JoinSet::new();
        let mut backlog_read_at: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            while running.try_join_next().is_some() {}
            if backlog_read_at.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY) {
                self.report_backlog().await;
                backlog_read_at = Some(Instant::now());
            }
            let free = self.settings.concurrency.saturating_sub(running.len()) as u32;
            let claimed = if free > 0 { self.claim(free).await } else { Vec::new() };
            let idle = claimed.is_empty();
            for due in claimed {
                let deliverer = self.clone();
                running.spawn(async move { deliverer.deliver(due).await });
            }
            if idle {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(self.settings.poll) => {}
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                }
            }
        }
        while running.join_next().await.is_some() {}
        if let Err(e) = self.store.release_delivery_leases(&self.owner).await {
            tracing::warn!(error = %e, "cannot release delivery leases; they will pass on their own");
        }
    }

    /// Sends every delivery due now once, and answers how many there were. For tests and
    /// benchmarks that drive the outbox step by step.
    pub async fn deliver_due_once(self: &Arc<Self>) -> usize {
        let mut count = 0;
        loop {
            let claimed = self.claim(self.settings.concurrency.max(1) as u32).await;
            if claimed.is_empty() {
                return count;
            }
            count += claimed.len();
            let mut running = JoinSet::new();
            for due in claimed {
                let deliverer = self.clone();
                running.spawn(async move { deliverer.deliver(due).await });
            }
            while running.join_next().await.is_some() {}
        }
    }

    /// `changetrail_rule_outbox_pending` and `changetrail_rule_outbox_oldest_pending_seconds`:
    /// what an operator alarms on when deliveries stop going out.
    async fn report_backlog(&self) {
        match self.store.outbox_backlog().await {
            Ok((pending, oldest)) => {
                metrics::gauge!("changetrail_rule_outbox_pending").set(pending as f64);
                let age = oldest.map_or(0.0, |t| (domain::time_util::now() - t).as_seconds_f64().max(0.0));
                metrics::gauge!("changetrail_rule_outbox_oldest_pending_seconds").set(age);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the outbox's backlog"),
        }
    }

    async fn claim(&self, limit: u32) -> Vec<DueDelivery> {
        let now = domain::time_util::now();
        match self.store.claim_deliveries(&self.owner, now, now + self.settings.lease, limit).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim deliveries");
                Vec::new()
            }
        }
    }

    async fn deliver(&self, due: DueDelivery) {
        let outcome = match self.prepare(&due).await {
            Ok(Some((rule, secret, item))) => {
                let started = Instant::now();
                let at = domain::time_util::now();
                let result = match &secret {
                    Some(secret) => self.send(&due, &rule, secret, &item).await,
                    // Retried: a server started with another key can be given the right one, and
                    // the attempts say what is wrong meanwhile.
                    None => AttemptResult::Retryable {
                        status: None,
                        error: "the rule's secret cannot be unsealed with this server's CHANGETRAIL_SECRET_KEY".into(),
                    },
                };
                let attempt = attempt_of(&result, at, started.elapsed());
                let step = delivery::next_step(&result, due.attempts + 1, due.created_at, domain::time_util::now());
                let (status, next) = match step {
                    NextStep::Delivered => (DeliveryStatus::Delivered, None),
                    NextStep::Failed => (DeliveryStatus::Failed, None),
                    NextStep::RetryAt(t) => (DeliveryStatus::Pending, Some(t)),
                };
                metrics::counter!("changetrail_rule_deliveries_total", "action" => rule.settings.action.kind(),
                "outcome" => match &result {
                    AttemptResult::Accepted(_) => "accepted",
                    AttemptResult::Retryable { .. } => "retryable",
                    AttemptResult::Refused { .. } => "refused",
                })
                .increment(1);
                self.store.finish_delivery_attempt(&self.owner, &due, Some(&attempt), status, next).await
            }
            // Not sent: the rule is disabled, or its item is gone.
            Ok(None) => {
                self.store.finish_delivery_attempt(&self.owner, &due, None, DeliveryStatus::Cancelled, None).await
            }
            Err(e) => {
                // The store failed: leave the row to be claimed again when the lease passes.
                tracing::warn!(delivery = %due.id, error = %e, "cannot read a delivery's rule or item");
                return;
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(delivery = %due.id, error = %e, "cannot record a delivery attempt; it will be retried");
        }
    }

    /// The rule (enabled), its unsealed secret (`None` when this server's key cannot open it)
    /// and the matched item, or `None` when the delivery is not to be sent.
    #[allow(clippy::type_complexity)]
    async fn prepare(
        &self,
        due: &DueDelivery,
    ) -> Result<Option<(Rule, Option<String>, TimelineItem)>, domain::StoreError> {
        let Some((rule, sealed)) = self.store.rule_with_secret(due.org_id, due.rule_id).await? else { return Ok(None) };
        if !rule.settings.enabled {
            return Ok(None);
        }
        let Some(stored) = self.store.get_event(due.org_id, due.event_id).await? else { return Ok(None) };
        Ok(Some((rule, self.settings.secret_key.open(&sealed), stored.item)))
    }

    async fn send(&self, due: &DueDelivery, rule: &Rule, secret: &str, item: &TimelineItem) -> AttemptResult {
        let base = self.settings.pagerduty_url.trim_end_matches('/');
        match &rule.settings.action {
            RuleAction::PagerdutyAlert { severity } => {
                let body = delivery::pagerduty_alert_body(secret, severity, rule, item);
                answer_of(self.pagerduty.post(format!("{base}/v2/enqueue")).json(&body).send().await).await
            }
            RuleAction::PagerdutyChange => {
                let body = delivery::pagerduty_change_body(secret, rule, item);
                answer_of(self.pagerduty.post(format!("{base}/v2/change/enqueue")).json(&body).send().await).await
            }
            RuleAction::Webhook { .. } => match serde_json::from_str::<target::WebhookTarget>(secret) {
                Ok(webhook) => self.send_webhook(due, rule, &webhook.url, &webhook.secret, item).await,
                Err(_) => {
                    AttemptResult::Refused { status: None, error: "the rule's webhook target cannot be read".into() }
                }
            },
        }
    }

    /// Checks the target again (DNS can change since the rule was made), connects only to the
    /// address checked, and signs the message as Standard Webhooks.
    async fn send_webhook(
        &self,
        due: &DueDelivery,
        rule: &Rule,
        url: &str,
        secret: &str,
        item: &TimelineItem,
    ) -> AttemptResult {
        let allow_private = self.settings.allow_private_targets;
        let refused = |error: String| AttemptResult::Refused { status: None, error };
        let parsed = match target::parse_webhook_url("url", url, allow_private) {
            Ok(parsed) => parsed,
            Err(e) => return refused(format!("the webhook URL is refused: {e}")),
        };
        let address = match app::public_addresses(&parsed, allow_private).await {
            Ok(address) => address,
            Err(app::TargetRefusal::NotPublic(why)) => return refused(format!("the webhook target is refused: {why}")),
            Err(app::TargetRefusal::Unresolved(why)) => return AttemptResult::Retryable { status: None, error: why },
        };
        let Ok(key) = delivery::webhook_key(secret) else {
            return refused("the rule's webhook secret is unusable".into());
        };
        let Ok(client) = client(self.settings.timeout).resolve(&parsed.host, address).build() else {
            return AttemptResult::Retryable { status: None, error: "cannot make an HTTP client".into() };
        };
        let now = domain::time_util::now();
        let body = serde_json::to_vec(&delivery::webhook_body(rule, item, now)).unwrap_or_default();
        let message_id = format!("msg_{}", due.id.simple());
        let timestamp = now.unix_timestamp();
        let signature = delivery::webhook_signature(&key, &message_id, timestamp, &body);
        let request = client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        answer_of(request.send().await).await
    }
}

/// What an answer (or the failure to get one) means for retrying.
async fn answer_of(sent: Result<reqwest::Response, reqwest::Error>) -> AttemptResult {
    match sent {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let mut body = Vec::new();
            while body.len() < MAX_ANSWER_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            body.truncate(MAX_ANSWER_BYTES);
            AttemptResult::of_status(status, &String::from_utf8_lossy(&body))
        }
        Err(e) if e.is_timeout() => AttemptResult::Retryable { status: None, error: "timed out".into() },
        Err(e) => AttemptResult::Retryable { status: None, error: format!("could not be sent: {}", error_chain(e)) },
    }
}

/// An error and its causes, without the URL (it may carry a tenant's query string).
fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn attempt_of(result: &AttemptResult, at: time::OffsetDateTime, took: Duration) -> DeliveryAttempt {
    let (http_status, error) = match result {
        AttemptResult::Accepted(status) => (Some(*status), None),
        AttemptResult::Retryable { status, error } | AttemptResult::Refused { status, error } => {
            (*status, Some(error.clone()))
        }
    };
    DeliveryAttempt { at, http_status, error, duration_ms: took.as_millis().min(u128::from(u64::MAX)) as u64 }
}
