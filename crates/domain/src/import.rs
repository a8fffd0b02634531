//! The importer's units of work: one per (connection, region), held in a lease table.

use time::OffsetDateTime;
use uuid::Uuid;

/// One (connection, region) as the lease table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportJob {
    pub connection_id: Uuid,
    pub region: String,
    pub org_id: Uuid,
    pub account_id: String,
    pub next_run_at: OffsetDateTime,
    pub leased_until: Option<OffsetDateTime>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Every window up to this time has been walked to its last page.
    pub scanned_until: OffsetDateTime,
    /// The walk in progress: its fixed window and the token of its next page.
    pub walk: Option<Walk>,
    pub last_run_at: Option<OffsetDateTime>,
    pub last_success_at: Option<OffsetDateTime>,
    pub events_imported: i64,
    pub events_flagged: i64,
}

impl ImportJob {
    /// `running`, `failing`, `backfilling` (more than an hour behind) or `scheduled`.
    pub fn status(&self, now: OffsetDateTime) -> &'static str {
        if self.leased_until.is_some_and(|t| t > now) {
            "running"
        } else if self.last_error.is_some() {
            "failing"
        } else if self.scanned_until < now - time::Duration::hours(1) {
            "backfilling"
        } else {
            "scheduled"
        }
    }
}

/// A page walk: LookupEvents binds a NextToken to its window, so the window stays fixed until
/// the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub next_token: Option<String>,
}

/// What one stored page moves forward, written in the same transaction as its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageProgress {
    /// `Some`: the walk goes on with this page next. `None`: the window is done and
    /// `scanned_until` moves to its end.
    pub continue_walk: Option<Walk>,
    pub window_end: OffsetDateTime,
    /// The lease is extended to this on every page.
    pub lease_until: OffsetDateTime,
    /// The connection's `links_version` the page's events were linked under: when the rules
    /// changed since, the page is refused with `StoreError::LinksChanged` and linked again.
    pub links_version: i64,
    /// The source keys of the page's events the connection's filter dropped: each is counted
    /// once in its `events_excluded`.
    pub excluded: Vec<String>,
}

/// How a run ended, for the lease table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub next_run_at: OffsetDateTime,
    /// `None` for a successful run.
    pub error: Option<String>,
}

/// The identity of a job and of the worker holding its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub org_id: Uuid,
    pub connection_id: Uuid,
    pub region: String,
    pub owner: String,
}

/// A leased re-link of a connection's events to the environments its current rules name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelinkJob {
    pub org_id: Uuid,
    pub connection_id: Uuid,
    /// The rules version being applied.
    pub version: i64,
    /// The last event id already re-linked.
    pub after: Option<Uuid>,
}

/// What linking needs to know of a stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkableEvent {
    pub id: Uuid,
    pub occurred_at: OffsetDateTime,
    pub kind: crate::event::EventKind,
    pub read_only: bool,
    pub details: crate::event::Details,
    pub resources: Vec<crate::event::Resource>,
    pub actor: Option<String>,
}

/// The import jobs an active connection should have: one per region, each new one starting
/// `lookback_days` before now (existing jobs keep their progress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPlan {
    pub account_id: String,
    pub regions: Vec<String>,
    pub start: OffsetDateTime,
}

impl JobPlan {
    /// `None` for a connection without a registered role: it has no account to import yet.
    pub fn for_connection(connection: &crate::Connection, now: OffsetDateTime) -> Option<JobPlan> {
        // An organisation connection only lists accounts; its members import them.
        if connection.kind == crate::connection::ConnectionKind::Organization {
            return None;
        }
        Some(JobPlan {
            account_id: connection.account_id.clone()?,
            regions: connection.settings.regions.clone(),
            start: now - time::Duration::days(i64::from(connection.settings.lookback_days)),
        })
    }
}
