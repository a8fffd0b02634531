//! The importer's lease table (`import_jobs`) and the shared LookupEvents pacing.

use async_trait::async_trait;
use domain::event::NewEvent;
use domain::import::{ImportJob, JobPlan, Lease, PageProgress, RunOutcome};
use domain::store::{ImportQueue, StoreResult};
use domain::time_util::{from_micros, now, to_micros};
use domain::StoreError;
use sqlx::{Database, Encode, QueryBuilder, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use super::commit_if_held;
use super::events::{links_of, push_event, INSERT_EVENTS};
use super::links::insert_links;
use crate::rows::{backend, ImportJobRow, IMPORT_JOB_COLUMNS};
use crate::SqlStore;

/// The jobs a plan asks for. An existing job keeps its progress, unless the plan is for another
/// account (a new role): then the old account's checkpoint and walk mean nothing, and the job
/// starts over like a new one. (`SET` expressions read the row as it was.)
pub(super) fn upsert_jobs<'a, DB>(org_id: Uuid, connection_id: Uuid, plan: &'a JobPlan, at: i64) -> QueryBuilder<'a, DB>
where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::new(
        "INSERT INTO import_jobs (connection_id, region, org_id, account_id, next_run_at, scanned_until) ",
    );
    sql.push_values(&plan.regions, |mut row, region| {
        row.push_bind(connection_id)
            .push_bind(region.as_str())
            .push_bind(org_id)
            .push_bind(plan.account_id.as_str())
            .push_bind(at)
            .push_bind(to_micros(plan.start));
    });
    sql.push(
        " ON CONFLICT (connection_id, region) DO UPDATE SET
             scanned_until = CASE WHEN import_jobs.account_id = excluded.account_id
                                  THEN import_jobs.scanned_until ELSE excluded.scanned_until END,
             window_start = CASE WHEN import_jobs.account_id = excluded.account_id THEN import_jobs.window_start END,
             window_end = CASE WHEN import_jobs.account_id = excluded.account_id THEN import_jobs.window_end END,
             next_token = CASE WHEN import_jobs.account_id = excluded.account_id THEN import_jobs.next_token END,
             next_run_at = CASE WHEN import_jobs.account_id = excluded.account_id
                                THEN import_jobs.next_run_at ELSE excluded.next_run_at END,
             account_id = excluded.account_id",
    );
    sql
}

/// Removes the connection's jobs of regions the plan no longer has.
pub(super) fn remove_other_jobs<'a, DB>(connection_id: Uuid, plan: &'a JobPlan) -> QueryBuilder<'a, DB>
where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::new("DELETE FROM import_jobs WHERE connection_id = ");
    sql.push_bind(connection_id).push(" AND region NOT IN (''");
    for region in &plan.regions {
        sql.push(", ").push_bind(region.as_str());
    }
    sql.push(")");
    sql
}

fn claim_sql(lock: &str) -> String {
    format!(
        "UPDATE import_jobs SET leased_until = $2, lease_owner = $3, last_run_at = $1
         WHERE (connection_id, region) IN (
             SELECT j.connection_id, j.region FROM import_jobs j JOIN connections c ON c.id = j.connection_id
             WHERE j.next_run_at <= $1 AND (j.leased_until IS NULL OR j.leased_until < $1)
               AND c.status = 'active' AND c.enabled
             ORDER BY j.next_run_at LIMIT $4 {lock})
           AND (leased_until IS NULL OR leased_until < $1 OR lease_owner = $3)
         RETURNING {}",
        IMPORT_JOB_COLUMNS.replace("j.", "")
    )
}

/// The progress moves, and the lease is extended, only if this worker still holds it.
const SAVE_PROGRESS: &str = "UPDATE import_jobs SET
         scanned_until = COALESCE($3, scanned_until),
         window_start = $4, window_end = $5, next_token = $6,
         events_imported = events_imported + $7, events_flagged = events_flagged + $8,
         leased_until = $10
     WHERE connection_id = $1 AND region = $2 AND org_id = $11 AND lease_owner = $9";

/// How saving a page ended.
enum Saved {
    Stored,
    LeaseLost,
    LinksChanged,
}

/// An import page's transaction on PostgreSQL: committed without waiting for its WAL to reach
/// the disk. A crash of the database server can lose the last commits (at most three times
/// `wal_writer_delay`, 0.6 s by default), each whole: the page's items together with the progress
/// that records them, so the next run fetches the page from CloudTrail again and nothing is
/// missed. Waiting for the flush was the largest single cost of a page after its INSERTs
/// (BENCHMARKS.md). Items a client posts keep the durable commit: nobody could send them again.
const BEGIN_IMPORT_PAGE: &str = "BEGIN; SET LOCAL synchronous_commit = off";

const FINISH_RUN: &str = "UPDATE import_jobs SET leased_until = NULL, lease_owner = NULL, next_run_at = $4,
         attempts = CASE WHEN $5 THEN 0 ELSE attempts + 1 END,
         last_error = $6,
         last_success_at = CASE WHEN $5 THEN $7 ELSE last_success_at END
     WHERE connection_id = $1 AND region = $2 AND lease_owner = $3";

const RESERVE_SLOT: &str = "INSERT INTO lookup_pacing (account_id, region, next_slot_at)
     VALUES ($1, $2, CAST($3 AS BIGINT) + CAST($4 AS BIGINT))
     ON CONFLICT (account_id, region) DO UPDATE SET next_slot_at =
         CASE WHEN lookup_pacing.next_slot_at > CAST($3 AS BIGINT) THEN lookup_pacing.next_slot_at
              ELSE CAST($3 AS BIGINT) END + CAST($4 AS BIGINT)
     RETURNING next_slot_at";

#[async_trait]
impl ImportQueue for SqlStore {
    async fn schedule_imports(&self, org_id: Uuid, connection_id: Uuid, plan: &JobPlan) -> StoreResult<()> {
        let at = to_micros(now());
        on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            remove_other_jobs::<Db>(connection_id, plan).build().execute(&mut *tx).await?;
            if !plan.regions.is_empty() {
                upsert_jobs::<Db>(org_id, connection_id, plan, at).build().execute(&mut *tx).await?;
            }
            tx.commit().await
        })
        .map_err(backend)
    }

    async fn claim_import_jobs(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<ImportJob>> {
        let sql = claim_sql(self.claim_lock());
        let rows: Vec<ImportJobRow> = on_pool!(self, |pool: Db| {
            sqlx::query_as(&sql)
                .bind(to_micros(now))
                .bind(to_micros(lease_until))
                .bind(owner)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })
        .map_err(backend)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn save_import_page(
        &self,
        lease: &Lease,
        events: &[NewEvent],
        progress: &PageProgress,
    ) -> StoreResult<Vec<usize>> {
        let at = to_micros(now());
        let (scanned, walk) = match &progress.continue_walk {
            Some(walk) => (None, Some(walk)),
            None => (Some(to_micros(progress.window_end)), None),
        };
        // The page is linked under the rules' count it was given, checked in its transaction
        // (see `links_unchanged!`: on PostgreSQL first, on SQLite after the writes).
        let postgres = self.is_postgres();
        let (inserted, held) = on_pool!(self, |pool: Db| {
            let mut tx = if postgres { pool.begin_with(BEGIN_IMPORT_PAGE).await? } else { pool.begin().await? };
            if postgres && !links_unchanged!(postgres, tx, lease.org_id, lease.connection_id, progress.links_version) {
                return Ok((Vec::new(), Saved::LinksChanged));
            }
            let mut inserted: Vec<(Uuid, String)> = Vec::new();
            if !events.is_empty() {
                let mut insert = sqlx::QueryBuilder::<Db>::new(INSERT_EVENTS);
                insert.push_values(events, |row, e| push_event(row, Uuid::now_v7(), lease.org_id, e, at));
                insert.push(" ON CONFLICT (org_id, source, source_key) DO NOTHING RETURNING id, source_key");
                inserted = insert.build_query_as().fetch_all(&mut *tx).await?;
            }
            let new_events: Vec<(Uuid, usize)> = inserted
                .iter()
                .filter_map(|(id, key)| events.iter().position(|e| &e.source_key == key).map(|i| (*id, i)))
                .collect();
            let links: Vec<_> = new_events.iter().flat_map(|(id, i)| links_of(*id, &events[*i])).collect();
            if !links.is_empty() {
                insert_links::<Db>(&links).build().execute(&mut *tx).await?;
            }
            let stored: Vec<(Uuid, &NewEvent)> = new_events.iter().map(|(id, i)| (*id, &events[*i])).collect();
            record_rule_matches!(self, tx, lease.org_id, &stored);
            let flagged = new_events.iter().filter(|(_, i)| events[*i].details.flagged()).count() as i64;
            let held = sqlx::query(SAVE_PROGRESS)
                .bind(lease.connection_id)
                .bind(&lease.region)
                .bind(scanned)
                .bind(walk.map(|w| to_micros(w.start)))
                .bind(walk.map(|w| to_micros(w.end)))
                .bind(walk.and_then(|w| w.next_token.clone()))
                .bind(inserted.len() as i64)
                .bind(flagged)
                .bind(&lease.owner)
                .bind(to_micros(progress.lease_until))
                .bind(lease.org_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            count_excluded!(tx, lease.org_id, lease.connection_id, &progress.excluded);
            if !postgres && !links_unchanged!(postgres, tx, lease.org_id, lease.connection_id, progress.links_version) {
                return Ok((Vec::new(), Saved::LinksChanged));
            }
            // Without the lease the whole page rolls back, and the new holder stores it.
            let held = commit_if_held(tx, held).await?;
            let stored = new_events.into_iter().map(|(_, i)| i).collect();
            Ok((stored, if held { Saved::Stored } else { Saved::LeaseLost }))
        })
        .map_err(backend)?;
        self.timeline_written();
        match held {
            Saved::Stored => Ok(inserted),
            Saved::LeaseLost => Err(StoreError::LeaseLost),
            Saved::LinksChanged => Err(StoreError::LinksChanged),
        }
    }

    async fn renew_lease(&self, lease: &Lease, until: OffsetDateTime) -> StoreResult<()> {
        let held = on_pool!(self, |pool: Db| {
            sqlx::query(
                "UPDATE import_jobs SET leased_until = $4 WHERE connection_id = $1 AND region = $2 AND lease_owner = $3",
            )
            .bind(lease.connection_id)
            .bind(&lease.region)
            .bind(&lease.owner)
            .bind(to_micros(until))
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(backend)?;
        if held == 0 {
            return Err(StoreError::LeaseLost);
        }
        Ok(())
    }

    async fn finish_import_run(&self, lease: &Lease, outcome: &RunOutcome) -> StoreResult<()> {
        let at = to_micros(now());
        on_pool!(self, |pool: Db| {
            sqlx::query(FINISH_RUN)
                .bind(lease.connection_id)
                .bind(&lease.region)
                .bind(&lease.owner)
                .bind(to_micros(outcome.next_run_at))
                .bind(outcome.error.is_none())
                .bind(outcome.error.as_deref())
                .bind(at)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(backend)
    }

    async fn release_leases(&self, owner: &str) -> StoreResult<()> {
        on_pool!(self, |pool: Db| {
            sqlx::query("UPDATE import_jobs SET leased_until = NULL, lease_owner = NULL WHERE lease_owner = $1")
                .bind(owner)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(backend)
    }

    async fn list_import_jobs(&self, org_id: Uuid, connection_id: Uuid) -> StoreResult<Vec<ImportJob>> {
        let sql = format!(
            "SELECT {IMPORT_JOB_COLUMNS} FROM import_jobs j WHERE j.org_id = $1 AND j.connection_id = $2 ORDER BY j.region"
        );
        let rows: Vec<ImportJobRow> =
            on_pool!(self, |pool: Db| sqlx::query_as(&sql).bind(org_id).bind(connection_id).fetch_all(pool).await)
                .map_err(backend)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn request_import(&self, org_id: Uuid, connection_id: Uuid) -> StoreResult<bool> {
        let at = to_micros(now());
        let done = on_pool!(self, |pool: Db| {
            sqlx::query("UPDATE import_jobs SET next_run_at = $3 WHERE org_id = $1 AND connection_id = $2")
                .bind(org_id)
                .bind(connection_id)
                .bind(at)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(backend)?;
        Ok(done > 0)
    }

    async fn restart_imports(&self, org_id: Uuid, connection_id: Uuid, start: OffsetDateTime) -> StoreResult<bool> {
        let at = to_micros(now());
        let done = on_pool!(self, |pool: Db| {
            sqlx::query(
                "UPDATE import_jobs SET scanned_until = $3, window_start = NULL, window_end = NULL, next_token = NULL,
                     lease_owner = NULL, leased_until = NULL, next_run_at = $4, attempts = 0
                 WHERE org_id = $1 AND connection_id = $2",
            )
            .bind(org_id)
            .bind(connection_id)
            .bind(to_micros(start))
            .bind(at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(backend)?;
        Ok(done > 0)
    }

    async fn reserve_lookup_slot(
        &self,
        account_id: &str,
        region: &str,
        now: OffsetDateTime,
        interval_micros: i64,
    ) -> StoreResult<OffsetDateTime> {
        let (next,): (i64,) = on_pool!(self, |pool: Db| {
            sqlx::query_as(RESERVE_SLOT)
                .bind(account_id)
                .bind(region)
                .bind(to_micros(now))
                .bind(interval_micros)
                .fetch_one(pool)
                .await
        })
        .map_err(backend)?;
        Ok(from_micros(next - interval_micros))
    }
}
