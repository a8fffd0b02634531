//! Near-real-time CloudTrail through EventBridge: a connection's push secret, and each pushed
//! event checked against its connection, normalised and linked exactly as a LookupEvents page is,
//! then stored once (the poll that finds the same event later stores nothing).

use domain::cloudtrail::eventbridge::{self, PushTarget, SECRET_HEADER};
use domain::linking::{ConnectionLinker, LinkFacts};
use domain::token::TokenHash;
use domain::{Connection, ConnectionStatus, StoreError};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{App, AppError, AppResult, NewItem, Refusal};

/// Where and how EventBridge reaches a connection: shown once, with the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEndpoint {
    pub url: String,
    pub header_name: &'static str,
    pub secret: String,
}

/// A connection's pushed events, for its import status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushStatus {
    /// When the push secret was made (or last rotated); `None`: push is not set up.
    pub secret_created_at: Option<OffsetDateTime>,
    /// When the newest pushed event was stored.
    pub last_received_at: Option<OffsetDateTime>,
    pub events_last_hour: u64,
}

/// What became of one pushed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Stored(Uuid),
    /// Stored before (by an earlier push, a retry, or the poll).
    AlreadyStored,
    /// Nothing to store, and why (a read-only event of a connection that keeps changes only).
    Ignored(&'static str),
}

/// What pushes are counted by, in `/metrics`.
fn count(connection: Uuid, outcome: &'static str) {
    metrics::counter!("changetrail_push_events_total", "connection" => connection.to_string(), "outcome" => outcome)
        .increment(1);
}

impl App {
    pub fn push_url(&self, connection_id: Uuid) -> String {
        format!("{}/hooks/eventbridge/{connection_id}", self.webhooks.public_url.trim_end_matches('/'))
    }

    /// A new push secret for the connection (shown this once, stored hashed); a second call
    /// rotates it and the old one stops working at once.
    pub async fn create_push_secret(&self, org_id: Uuid, id: Uuid) -> AppResult<PushEndpoint> {
        let secret = domain::source::generate_secret();
        let connection = self
            .store
            .set_push_secret(org_id, id, &TokenHash::of(&secret))
            .await?
            .ok_or(AppError::NotFound("connection"))?;
        tracing::info!(connection = %connection.id, "push secret created");
        Ok(PushEndpoint { url: self.push_url(connection.id), header_name: SECRET_HEADER, secret })
    }

    pub async fn push_status(&self, connection: &Connection) -> AppResult<PushStatus> {
        let hour_ago = domain::time_util::now() - time::Duration::HOUR;
        let (events_last_hour, last_received_at) =
            self.store.pushed_since(connection.org_id, connection.id, hour_ago).await?;
        Ok(PushStatus { secret_created_at: connection.push_secret_created_at, last_received_at, events_last_hour })
    }

    /// One event from an API destination. The connection is found by the URL's id and the
    /// secret checked (constant-time) before the body is read; an unknown connection, one
    /// without push, and a wrong secret are answered alike.
    pub async fn receive_push(&self, connection_id: &str, secret: Option<&str>, body: &[u8]) -> AppResult<PushOutcome> {
        let refused = || {
            AppError::refused(
                Refusal::Unauthenticated,
                "invalid_push_secret",
                format!("the {SECRET_HEADER} header is missing or is not this connection's push secret"),
            )
        };
        let id: Uuid = connection_id.parse().map_err(|_| refused())?;
        let connection = self.store.connection_for_push(id).await?.ok_or_else(refused)?;
        let signed = match (&connection.push_secret, secret) {
            (Some(hash), Some(given)) => hash.matches(&TokenHash::of(given).0),
            _ => false,
        };
        if !signed {
            count(connection.id, "refused");
            return Err(refused());
        }
        count(connection.id, "received");
        let outcome = self.store_pushed(&connection, body).await;
        count(
            connection.id,
            match &outcome {
                Ok(PushOutcome::Stored(_)) => "stored",
                Ok(PushOutcome::AlreadyStored) => "duplicate",
                Ok(PushOutcome::Ignored(_)) => "ignored",
                Err(_) => "refused",
            },
        );
        outcome
    }

    async fn store_pushed(&self, connection: &Connection, body: &[u8]) -> AppResult<PushOutcome> {
        let (Some(account_id), ConnectionStatus::Active) = (connection.account_id.as_deref(), connection.status) else {
            return Err(AppError::refused(
                Refusal::Conflict,
                "not_active",
                "this connection has no working role yet: register one, then its events are accepted",
            ));
        };
        if !connection.settings.enabled {
            return Err(AppError::refused(
                Refusal::Conflict,
                "disabled",
                "this connection is disabled; EventBridge retries for 24 hours, so enable it to receive these events",
            ));
        }
        let event: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            AppError::refused(Refusal::BadInput, "malformed_json", format!("the body is not JSON: {e}"))
        })?;
        let target = PushTarget { connection_id: connection.id, account_id, regions: &connection.settings.regions };
        let mut event = eventbridge::read(&event, target, domain::time_util::now())?.event;
        if event.read_only && !connection.settings.include_read_only {
            return Ok(PushOutcome::Ignored("a read-only event: this connection keeps changes only"));
        }
        let details = event.details.cloudtrail();
        let filter = &connection.settings.event_filter;
        if details.is_some_and(|d| filter.excludes(&d.event_name, &d.event_source, event.actor.as_deref()).is_some()) {
            self.store.count_excluded_event(connection.org_id, connection.id, &event.source_key).await?;
            return Ok(PushOutcome::Ignored("dropped by this connection's event filter (counted in events_excluded)"));
        }
        // As for an import page: linked under the connection's rules, and linked again if they
        // change before the event is stored.
        let mut current = connection.clone();
        let mut relinked = 0;
        loop {
            let linker = ConnectionLinker::load(self.store.as_ref(), &current).await?;
            event.environment_ids = linker.environment_ids(&LinkFacts::of_event(&event));
            match self.store.insert_connection_event(current.org_id, current.id, linker.links_version, &event).await {
                Err(StoreError::LinksChanged) if relinked < 3 => {
                    relinked += 1;
                    current = self.connection(current.org_id, current.id).await?;
                }
                Ok(Some(item_id)) => {
                    let delay = (domain::time_util::now() - event.occurred_at).as_seconds_f64().max(0.0);
                    metrics::histogram!("changetrail_ingest_delay_seconds", "via" => "push").record(delay);
                    self.announce(current.org_id, item_id).await;
                    return Ok(PushOutcome::Stored(item_id));
                }
                Ok(None) => return Ok(PushOutcome::AlreadyStored),
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// The connection's rules with the environments they name resolved, in one query.
    /// Hands a newly stored item to whatever reacts to new items; read only when something does.
    async fn announce(&self, org_id: Uuid, item_id: Uuid) {
        if self.new_items.receiver_count() == 0 {
            return;
        }
        match self.store.get_event(org_id, item_id).await {
            Ok(Some(stored)) => {
                let _ = self.new_items.send(NewItem { org_id, item: stored.item, created: true });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, item = %item_id, "a stored item could not be read back to announce it")
            }
        }
    }
}
