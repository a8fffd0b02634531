//! The storage traits, one per aggregate. Each backend (SQLite, PostgreSQL) implements them in
//! the storage crate, and one conformance suite holds both to the same behaviour.
//!
//! Every method that touches tenant data takes the caller's organisation and never returns rows
//! of another: "not found" is the answer for both a missing row and someone else's. Through an
//! `Arc<dyn Store>` every aggregate's methods are at hand without importing their traits.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::aws::ExternalId;
use crate::channel::{Channel, ChannelOutcome, ChannelSettings};
use crate::connection::{Connection, ConnectionProblem, ConnectionSettings, RegisteredRole};
use crate::environment::{Environment, EnvironmentPatch, EnvironmentRef, NewEnvironment};
use crate::event::{Details, NewEvent, StoredEvent};
use crate::import::{ImportJob, JobPlan, Lease, LinkableEvent, PageProgress, RelinkJob, RunOutcome};
use crate::organization::Organization;
use crate::page::{Page, PageRequest};
use crate::rule::delivery::{DeliveryAttempt, DeliveryStatus, DueDelivery, RuleDelivery};
use crate::rule::{Rule, RuleSettings};
use crate::source::{Delivery, Source, SourceKind, SourceSettings};
use crate::timeline::{TimelineItem, TimelineQuery};
use crate::token::{ApiToken, Scopes, TokenHash};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The worker's lease on a job passed and another worker may hold it now.
    #[error("the lease on this job is lost")]
    LeaseLost,
    /// A uniqueness rule was broken; the string names what already exists.
    #[error("{0}")]
    Conflict(String),
    /// The connection's rules changed since the page was linked; nothing of it was stored.
    #[error("the connection's environment rules changed while the page was linked")]
    LinksChanged,
    /// The statement ran past the store's statement timeout and the database stopped it.
    #[error("the query took longer than the server allows and was stopped")]
    TimedOut,
    #[error("storage failed: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Organisations, their API tokens and their environments.
#[async_trait]
pub trait Tenants: Send + Sync {
    async fn create_organization(&self, name: &str) -> StoreResult<Organization>;
    async fn organization_exists(&self) -> StoreResult<bool>;
    /// On a database that was never bootstrapped: the first organisation and its admin token, in
    /// one transaction that also marks the database bootstrapped. `None` when another process
    /// did it first (or it was done before), however many try at once.
    async fn bootstrap_organization(
        &self,
        name: &str,
        prefix: &str,
        hash: &TokenHash,
    ) -> StoreResult<Option<Organization>>;
    async fn get_organization(&self, org_id: Uuid) -> StoreResult<Option<Organization>>;

    async fn create_token(
        &self,
        org_id: Uuid,
        name: &str,
        scopes: &Scopes,
        prefix: &str,
        hash: &TokenHash,
    ) -> StoreResult<ApiToken>;
    /// The token whose secret hashes to `hash`, across all organisations: this is how a request
    /// finds out which organisation it acts for.
    async fn find_token(&self, hash: &TokenHash) -> StoreResult<Option<ApiToken>>;
    async fn list_tokens(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<ApiToken>>;
    /// False when there is no such token, or when it is the organisation's last admin token
    /// (which is kept: without it nobody could administer the organisation).
    async fn delete_token(&self, org_id: Uuid, token_id: Uuid) -> StoreResult<bool>;

    /// A web view session of `token_id` until `expires_at`, kept by its secret's hash. Sessions
    /// that expired before now are removed on the way.
    async fn create_session(&self, token_id: Uuid, hash: &TokenHash, expires_at: OffsetDateTime) -> StoreResult<()>;
    /// The token a session acts as, if the session exists, has not expired by `now`, and its
    /// token has not been deleted.
    async fn find_session(&self, hash: &TokenHash, now: OffsetDateTime) -> StoreResult<Option<ApiToken>>;
    /// Ends a session (sign-out); ending one that does not exist is not an error.
    async fn delete_session(&self, hash: &TokenHash) -> StoreResult<()>;

    async fn create_environment(&self, org_id: Uuid, env: &NewEnvironment) -> StoreResult<Environment>;
    async fn list_environments(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<Environment>>;
    async fn get_environment(&self, org_id: Uuid, env: &EnvironmentRef) -> StoreResult<Option<Environment>>;
    /// The organisation's environments that `refs` name (by id or slug), in one query, ordered
    /// by slug; what names nothing of the organisation is absent.
    async fn find_environments(&self, org_id: Uuid, refs: &[EnvironmentRef]) -> StoreResult<Vec<Environment>>;
    async fn update_environment(
        &self,
        org_id: Uuid,
        env_id: Uuid,
        patch: &EnvironmentPatch,
    ) -> StoreResult<Option<Environment>>;
    async fn delete_environment(&self, org_id: Uuid, env_id: Uuid) -> StoreResult<bool>;
}

/// AWS connections: settings, generated external IDs, registered roles.
#[async_trait]
pub trait Connections: Send + Sync {
    async fn create_connection(
        &self,
        org_id: Uuid,
        settings: &ConnectionSettings,
        external_id: &ExternalId,
    ) -> StoreResult<Connection>;
    async fn list_connections(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<Connection>>;
    async fn get_connection(&self, org_id: Uuid, connection_id: Uuid) -> StoreResult<Option<Connection>>;
    /// Replaces the settings an admin chooses; never the external ID, role or status.
    async fn update_connection_settings(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        settings: &ConnectionSettings,
    ) -> StoreResult<Option<Connection>>;
    /// Deletes the connection and the events it imported.
    async fn delete_connection(&self, org_id: Uuid, connection_id: Uuid) -> StoreResult<bool>;
    /// Registers a validated role: the connection becomes active, its last error is cleared, and
    /// its regions get their import jobs (its `JobPlan`) in the same transaction. A role of
    /// another account starts those jobs over.
    async fn register_role(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        role: &RegisteredRole,
    ) -> StoreResult<Option<Connection>>;
    /// Records why the role failed. With `mark_error` (a registered role stopped working) the
    /// status becomes `error`; otherwise it stays as it is.
    async fn record_connection_problem(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        problem: &ConnectionProblem,
        mark_error: bool,
    ) -> StoreResult<Option<Connection>>;
    /// Counts an event the connection's filter dropped, once per source key.
    async fn count_excluded_event(&self, org_id: Uuid, connection_id: Uuid, source_key: &str) -> StoreResult<()>;
    /// Makes `hash` the connection's push secret; the one before stops working at once.
    async fn set_push_secret(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        hash: &TokenHash,
    ) -> StoreResult<Option<Connection>>;
    /// A connection by id alone, for its push URL (which carries no organisation).
    async fn connection_for_push(&self, connection_id: Uuid) -> StoreResult<Option<Connection>>;
    /// The organisation's connections whose registered role is in this account.
    async fn connections_of_account(&self, org_id: Uuid, account_id: &str) -> StoreResult<Vec<Connection>>;
    /// A new organisation connection (kind `organization`), waiting for its role.
    async fn create_organization_connection(
        &self,
        org_id: Uuid,
        settings: &ConnectionSettings,
        external_id: &ExternalId,
        member_role_name: &str,
    ) -> StoreResult<Connection>;
    /// One discovery's outcome, in one transaction: each listed account's member created (with
    /// `NewMember`'s settings) or its name and status brought up to date; members no longer
    /// listed are `LEFT`; the parent's `discovered_at` set. Returns every member, by id.
    async fn sync_members(
        &self,
        org_id: Uuid,
        parent_id: Uuid,
        members: &[crate::connection::NewMember],
        at: OffsetDateTime,
    ) -> StoreResult<Vec<Connection>>;
    /// An organisation connection's members, by id.
    async fn list_members(&self, org_id: Uuid, parent_id: Uuid) -> StoreResult<Vec<Connection>>;
    /// A member's own settings were changed: its parent's no longer replace them.
    async fn mark_settings_overridden(&self, org_id: Uuid, connection_id: Uuid) -> StoreResult<()>;
    /// The organisations with a connection on changetrail's own identity.
    async fn organizations_on_service_credentials(&self) -> StoreResult<Vec<Uuid>>;
    /// Makes an active organisation connection's discovery due at `at`.
    async fn request_discovery(&self, org_id: Uuid, connection_id: Uuid, at: OffsetDateTime) -> StoreResult<()>;
    /// Leases one due discovery (an active organisation connection) until `lease_until`.
    async fn claim_discovery(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> StoreResult<Option<(Uuid, Uuid)>>;
    /// Ends `owner`'s discovery: due again at `next_due_at`, with the failure if it failed.
    async fn finish_discovery(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        owner: &str,
        next_due_at: OffsetDateTime,
        error: Option<&str>,
    ) -> StoreResult<()>;
}

/// The importer's lease table (`import_jobs`) and the shared LookupEvents pacing.
#[async_trait]
pub trait ImportQueue: Send + Sync {
    /// Makes the lease table hold exactly `plan`'s regions for the connection: new regions start
    /// where the plan says, existing ones keep their progress, others are removed.
    async fn schedule_imports(&self, org_id: Uuid, connection_id: Uuid, plan: &JobPlan) -> StoreResult<()>;
    /// Leases up to `limit` due jobs of active, enabled connections until `lease_until`.
    async fn claim_import_jobs(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<ImportJob>>;
    /// Stores a page of events with their environment links and moves the job's progress, in one
    /// transaction, if `lease` still holds. Returns the positions in `events` of those that were
    /// new (the others were stored before).
    async fn save_import_page(
        &self,
        lease: &Lease,
        events: &[NewEvent],
        progress: &PageProgress,
    ) -> StoreResult<Vec<usize>>;
    /// Extends a held lease to `until` (a run that waits, say for throttling, keeps its job).
    /// `LeaseLost` if another worker holds it now.
    async fn renew_lease(&self, lease: &Lease, until: OffsetDateTime) -> StoreResult<()>;
    /// Ends a run: frees the lease and schedules the next one.
    async fn finish_import_run(&self, lease: &Lease, outcome: &RunOutcome) -> StoreResult<()>;
    /// Frees every lease of a worker that is stopping, so others need not wait for them to pass.
    async fn release_leases(&self, owner: &str) -> StoreResult<()>;
    async fn list_import_jobs(&self, org_id: Uuid, connection_id: Uuid) -> StoreResult<Vec<ImportJob>>;
    /// Makes a connection's jobs due now. False if the organisation has no such connection.
    async fn request_import(&self, org_id: Uuid, connection_id: Uuid) -> StoreResult<bool>;
    /// Walks a connection's regions again from `start`, now: a walk in progress loses its lease
    /// (its next page is refused) and starts over. Events already stored stay stored once.
    async fn restart_imports(&self, org_id: Uuid, connection_id: Uuid, start: OffsetDateTime) -> StoreResult<bool>;
    /// Reserves the next LookupEvents slot of an account and region, `interval` after the last
    /// one reserved by anyone; returns when the caller may call.
    async fn reserve_lookup_slot(
        &self,
        account_id: &str,
        region: &str,
        now: OffsetDateTime,
        interval_micros: i64,
    ) -> StoreResult<OffsetDateTime>;
}

/// Timeline items, whatever their source, and the timeline over them.
#[async_trait]
pub trait Events: Send + Sync {
    /// Stores a posted item, or updates the one with the same (source, source_key), and makes
    /// its environment links exactly `event.environment_ids`. Returns its id and whether it is new.
    async fn upsert_event(&self, org_id: Uuid, event: &NewEvent) -> StoreResult<(Uuid, bool)>;
    /// Stores one CloudTrail event of a connection with its links (`event.environment_ids`, made
    /// under the rules of `links_version`), unless the same (source, source_key) is stored:
    /// then nothing changes and the answer is `None`. `LinksChanged`, with nothing stored, when
    /// the connection's rules changed since.
    async fn insert_connection_event(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        links_version: i64,
        event: &NewEvent,
    ) -> StoreResult<Option<Uuid>>;
    /// How many of the connection's items arrived by push since `since`, and when the newest of
    /// all its pushed items was stored.
    async fn pushed_since(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        since: OffsetDateTime,
    ) -> StoreResult<(u64, Option<OffsetDateTime>)>;
    /// Stores items that are new, in one transaction, and leaves those whose (source,
    /// source_key) is stored as they are: each answer is the item's id and whether it is new.
    async fn insert_events(&self, org_id: Uuid, events: &[NewEvent]) -> StoreResult<Vec<(Uuid, bool)>>;
    /// One item with its original record.
    async fn get_event(&self, org_id: Uuid, event_id: Uuid) -> StoreResult<Option<StoredEvent>>;
    /// The details of the item a source knows by this key, if one is stored.
    async fn details_by_key(&self, org_id: Uuid, source: &str, source_key: &str) -> StoreResult<Option<Details>>;
    /// One page of a timeline of one or more environments. The caller has checked that the
    /// environments are the organisation's; the organisation is checked again here.
    async fn timeline(&self, org_id: Uuid, query: &TimelineQuery) -> StoreResult<Vec<TimelineItem>>;
    /// Up to `query.limit` items of the environments that pass its filters, stored after
    /// `query.after`, oldest stored first (then by id): a live stream's next batch.
    async fn stream_items(&self, org_id: Uuid, query: &crate::timeline::StreamQuery) -> StoreResult<Vec<TimelineItem>>;
    /// How many writes that change what a timeline shows (items, their links, environments)
    /// this store has made since it opened: a page read while it stays the same is still the
    /// page, as far as this process wrote. Counted after each such call's transaction ends,
    /// rolled back too: counting too often only reads a page again.
    fn timeline_writes(&self) -> u64;
}

/// Re-linking a connection's stored events when its rules change, leased like imports.
#[async_trait]
pub trait Relinks: Send + Sync {
    /// Marks a connection's events for re-linking with its current rules.
    async fn request_relink(&self, org_id: Uuid, connection_id: Uuid) -> StoreResult<()>;
    /// Leases one connection whose events wait for re-linking.
    async fn claim_relink(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> StoreResult<Option<RelinkJob>>;
    /// The next `limit` events of the connection after `job.after`, by id.
    async fn linkable_events(&self, job: &RelinkJob, limit: u32) -> StoreResult<Vec<LinkableEvent>>;
    /// Replaces the links of these events, moves the re-link's cursor past them (or, with
    /// `done`, marks the version applied) in one transaction, if `owner` still holds the lease.
    async fn relink_batch(
        &self,
        job: &RelinkJob,
        owner: &str,
        links: &[(LinkableEvent, Vec<Uuid>)],
        done: bool,
        lease_until: OffsetDateTime,
    ) -> StoreResult<()>;
}

/// Webhook sources and the log of their deliveries.
#[async_trait]
pub trait Sources: Send + Sync {
    async fn create_source(
        &self,
        org_id: Uuid,
        kind: SourceKind,
        settings: &SourceSettings,
        sealed_secrets: &[String],
    ) -> StoreResult<Source>;
    async fn list_sources(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<Source>>;
    async fn get_source(&self, org_id: Uuid, id: Uuid) -> StoreResult<Option<Source>>;
    /// A source by id alone, for its webhook URL (which carries no organisation).
    async fn source_for_hook(&self, id: Uuid) -> StoreResult<Option<Source>>;
    /// New settings, and new sealed secrets when given.
    async fn update_source(
        &self,
        org_id: Uuid,
        id: Uuid,
        settings: &SourceSettings,
        sealed_secrets: Option<&[String]>,
    ) -> StoreResult<Option<Source>>;
    async fn delete_source(&self, org_id: Uuid, id: Uuid) -> StoreResult<bool>;
    /// Records a delivery; one with the same delivery id replaces it.
    async fn record_delivery(&self, delivery: &Delivery) -> StoreResult<()>;
    /// The newest `limit` deliveries of one of the organisation's sources.
    async fn list_deliveries(&self, org_id: Uuid, source_id: Uuid, limit: u32) -> StoreResult<Vec<Delivery>>;
}

/// CloudTrail Lake-compatible channels and the counts of their events' outcomes.
#[async_trait]
pub trait Channels: Send + Sync {
    async fn create_channel(
        &self,
        org_id: Uuid,
        settings: &ChannelSettings,
        access_key_id: &str,
        sealed_secret: &str,
    ) -> StoreResult<Channel>;
    async fn list_channels(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<Channel>>;
    async fn get_channel(&self, org_id: Uuid, id: Uuid) -> StoreResult<Option<Channel>>;
    async fn update_channel(&self, org_id: Uuid, id: Uuid, settings: &ChannelSettings) -> StoreResult<Option<Channel>>;
    async fn delete_channel(&self, org_id: Uuid, id: Uuid) -> StoreResult<bool>;
    /// The channel whose access key this is, across organisations: how a signed request finds
    /// its channel and secret.
    async fn channel_for_key(&self, access_key_id: &str) -> StoreResult<Option<Channel>>;
    /// Adds `counts` (outcome, events) to the channel's tallies, as of `at`.
    async fn count_channel_outcomes(
        &self,
        channel_id: Uuid,
        counts: &[(String, u64)],
        at: OffsetDateTime,
    ) -> StoreResult<()>;
    /// The tallies of the organisation's channels with ids from `first` to `last` (one channel,
    /// or a page of them, in one query), each with its channel's id.
    async fn channel_outcomes(&self, org_id: Uuid, first: Uuid, last: Uuid)
        -> StoreResult<Vec<(Uuid, ChannelOutcome)>>;
}

/// Rules and their outbox. The outbox is written by the `Events` and `ImportQueue` methods that
/// store new items: each newly stored item is matched against the organisation's enabled rules
/// in its own transaction, and every match adds a delivery and an `alert` item there.
#[async_trait]
pub trait Rules: Send + Sync {
    async fn create_rule(&self, org_id: Uuid, settings: &RuleSettings, sealed_secret: &str) -> StoreResult<Rule>;
    async fn list_rules(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<Rule>>;
    async fn get_rule(&self, org_id: Uuid, id: Uuid) -> StoreResult<Option<Rule>>;
    /// New settings, and a new sealed secret when given.
    async fn update_rule(
        &self,
        org_id: Uuid,
        id: Uuid,
        settings: &RuleSettings,
        sealed_secret: Option<&str>,
    ) -> StoreResult<Option<Rule>>;
    /// Deletes the rule and its deliveries (pending ones are never sent).
    async fn delete_rule(&self, org_id: Uuid, id: Uuid) -> StoreResult<bool>;
    /// A rule with its sealed secret, for a delivery.
    async fn rule_with_secret(&self, org_id: Uuid, id: Uuid) -> StoreResult<Option<(Rule, String)>>;
    /// Leases up to `limit` pending deliveries that are due, across organisations.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<DueDelivery>>;
    /// Records an attempt (or, with none, a delivery not sent) and the delivery's new status,
    /// due again at `next_attempt_at` when pending, and frees the lease. `LeaseLost`, with
    /// nothing recorded, when `owner` no longer holds it.
    async fn finish_delivery_attempt(
        &self,
        owner: &str,
        delivery: &DueDelivery,
        attempt: Option<&DeliveryAttempt>,
        status: DeliveryStatus,
        next_attempt_at: Option<OffsetDateTime>,
    ) -> StoreResult<()>;
    /// The newest `limit` deliveries of one of the organisation's rules, with their attempts.
    async fn list_rule_deliveries(&self, org_id: Uuid, rule_id: Uuid, limit: u32) -> StoreResult<Vec<RuleDelivery>>;
    /// Frees every delivery lease of a worker that is stopping.
    async fn release_delivery_leases(&self, owner: &str) -> StoreResult<()>;
    /// The outbox's backlog across organisations: how many deliveries are pending, and when the
    /// oldest of them was made (for an alarm on a stuck outbox).
    async fn outbox_backlog(&self) -> StoreResult<(u64, Option<OffsetDateTime>)>;
}

/// The whole store, as the application holds it.
#[async_trait]
pub trait Store:
    Tenants + Connections + ImportQueue + Events + Relinks + Sources + Channels + Rules + Send + Sync + 'static
{
    /// Readiness: the database answers and the migrations are applied.
    async fn ping(&self) -> StoreResult<()>;
}
