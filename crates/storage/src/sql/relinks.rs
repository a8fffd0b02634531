//! Re-linking a connection's stored events when its rules change, leased like imports.

use async_trait::async_trait;
use domain::import::{LinkableEvent, RelinkJob};
use domain::store::{Relinks, StoreResult};
use domain::time_util::to_micros;
use domain::StoreError;
use time::OffsetDateTime;
use uuid::Uuid;

use super::commit_if_held;
use super::links::{delete_links, insert_links, LinkRow};
use crate::rows::{backend, TimelineRow};
use crate::SqlStore;

fn claim_sql(lock: &str) -> String {
    format!(
        "UPDATE connections SET relink_owner = $2, relink_leased_until = $3
         WHERE id = (SELECT j.id FROM connections j
                     WHERE j.relinked_version < j.links_version
                       AND (j.relink_leased_until IS NULL OR j.relink_leased_until < $1)
                     ORDER BY j.id LIMIT 1 {lock})
           AND relinked_version < links_version
           AND (relink_leased_until IS NULL OR relink_leased_until < $1 OR relink_owner = $2)
         RETURNING org_id, id, links_version, relink_cursor"
    )
}

const LINKABLE: &str =
    "SELECT id, kind, source, occurred_at, title, actor, read_only, resources, labels, links, details,
         created_at, ingested_via
     FROM events WHERE org_id = $1 AND connection_id = $2 AND id > $3 ORDER BY id LIMIT $4";

/// Applies only while this worker holds the lease and the rules have not changed again;
/// otherwise the batch rolls back and the re-link starts over.
const MOVE_CURSOR: &str = "UPDATE connections SET relink_cursor = $4, relink_leased_until = $5,
         relinked_version = CASE WHEN $6 THEN $3 ELSE relinked_version END
     WHERE org_id = $1 AND id = $2 AND links_version = $3 AND relink_owner = $7";

#[async_trait]
impl Relinks for SqlStore {
    async fn request_relink(&self, org_id: Uuid, connection_id: Uuid) -> StoreResult<()> {
        on_pool!(self, |pool: Db| {
            sqlx::query(
                "UPDATE connections SET links_version = links_version + 1, relink_cursor = NULL WHERE org_id = $1 AND id = $2",
            )
            .bind(org_id)
            .bind(connection_id)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(backend)
    }

    async fn claim_relink(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> StoreResult<Option<RelinkJob>> {
        let sql = claim_sql(self.claim_lock());
        let row: Option<(Uuid, Uuid, i64, Option<Uuid>)> = on_pool!(self, |pool: Db| {
            sqlx::query_as(&sql)
                .bind(to_micros(now))
                .bind(owner)
                .bind(to_micros(lease_until))
                .fetch_optional(pool)
                .await
        })
        .map_err(backend)?;
        Ok(row.map(|(org_id, connection_id, version, after)| RelinkJob { org_id, connection_id, version, after }))
    }

    async fn linkable_events(&self, job: &RelinkJob, limit: u32) -> StoreResult<Vec<LinkableEvent>> {
        let rows: Vec<TimelineRow> = on_pool!(self, |pool: Db| {
            sqlx::query_as(LINKABLE)
                .bind(job.org_id)
                .bind(job.connection_id)
                .bind(job.after.unwrap_or(Uuid::nil()))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let item = r.into_item(Vec::new());
                LinkableEvent {
                    id: item.id,
                    occurred_at: item.occurred_at,
                    kind: item.kind,
                    read_only: item.read_only,
                    details: item.details,
                    resources: item.resources,
                    actor: item.actor,
                }
            })
            .collect())
    }

    async fn relink_batch(
        &self,
        job: &RelinkJob,
        owner: &str,
        links: &[(LinkableEvent, Vec<Uuid>)],
        done: bool,
        lease_until: OffsetDateTime,
    ) -> StoreResult<()> {
        let ids: Vec<Uuid> = links.iter().map(|(e, _)| e.id).collect();
        let rows: Vec<LinkRow> = links
            .iter()
            .flat_map(|(e, envs)| {
                envs.iter().map(move |env| LinkRow {
                    environment_id: *env,
                    occurred_at: to_micros(e.occurred_at),
                    event_id: e.id,
                    kind: e.kind.as_str(),
                    read_only: e.read_only,
                })
            })
            .collect();
        let cursor = ids.last().copied().or(job.after);
        let held = on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            if !ids.is_empty() {
                delete_links::<Db>(&ids).build().execute(&mut *tx).await?;
            }
            if !rows.is_empty() {
                insert_links::<Db>(&rows).build().execute(&mut *tx).await?;
            }
            let held = sqlx::query(MOVE_CURSOR)
                .bind(job.org_id)
                .bind(job.connection_id)
                .bind(job.version)
                .bind(cursor)
                .bind(to_micros(lease_until))
                .bind(done)
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            commit_if_held(tx, held).await
        })
        .map_err(backend)?;
        self.timeline_written();
        if held {
            Ok(())
        } else {
            Err(StoreError::LeaseLost)
        }
    }
}
