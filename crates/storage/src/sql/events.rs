//! Timeline items: how an event is laid out in a row, posted items' upsert, one item in full.

use async_trait::async_trait;
use domain::event::{Details, NewEvent, StoredEvent};
use domain::store::{Events, StoreResult};
use domain::time_util::{from_micros, now, to_micros};
use domain::timeline::{TimelineItem, TimelineQuery};
use domain::StoreError;
use sqlx::query_builder::Separated;
use sqlx::types::Json;
use sqlx::{Database, Encode, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use super::links::{delete_links, insert_links, LinkRow};
use crate::rows::{backend, stored_kind, EventRow};
use crate::SqlStore;

/// The columns of an event row, in the order [`push_event`] binds them.
pub(super) const INSERT_EVENTS: &str =
    "INSERT INTO events (id, org_id, kind, source, source_key, connection_id, occurred_at, title, \
     actor, read_only, resources, labels, links, details, original, event_source, created_at, updated_at, \
     ingested_via) ";

/// Binds one event's row for a multi-row `INSERT` built from [`INSERT_EVENTS`]: the one place
/// that knows how an event is laid out in a row.
pub(super) fn push_event<'args, DB>(
    mut row: Separated<'_, 'args, DB, &'static str>,
    id: Uuid,
    org_id: Uuid,
    e: &NewEvent,
    now: i64,
) where
    DB: Database,
    Uuid: Encode<'args, DB> + Type<DB>,
    Option<Uuid>: Encode<'args, DB> + Type<DB>,
    String: Encode<'args, DB> + Type<DB>,
    Option<String>: Encode<'args, DB> + Type<DB>,
    i64: Encode<'args, DB> + Type<DB>,
    bool: Encode<'args, DB> + Type<DB>,
    Json<serde_json::Value>: Encode<'args, DB> + Type<DB>,
    Option<Json<serde_json::Value>>: Encode<'args, DB> + Type<DB>,
{
    let json = |v: serde_json::Value| Json(v);
    row.push_bind(id)
        .push_bind(org_id)
        .push_bind(e.kind.as_str().to_owned())
        .push_bind(e.source.clone())
        .push_bind(e.source_key.clone())
        .push_bind(e.connection_id)
        .push_bind(to_micros(e.occurred_at))
        .push_bind(e.title.clone())
        .push_bind(e.actor.clone())
        .push_bind(e.read_only)
        .push_bind(json(serde_json::to_value(&e.resources).unwrap_or_default()))
        .push_bind(json(serde_json::to_value(&e.labels).unwrap_or_default()))
        .push_bind(json(serde_json::to_value(&e.links).unwrap_or_default()))
        .push_bind(json(e.details.to_json()))
        .push_bind(e.original.clone().map(json))
        .push_bind(e.details.event_source().map(str::to_owned))
        .push_bind(now)
        .push_bind(now)
        .push_bind(e.via.as_str().to_owned());
}

/// The links an event's `environment_ids` ask for, once it has its id.
pub(super) fn links_of(event_id: Uuid, e: &NewEvent) -> Vec<LinkRow> {
    e.environment_ids
        .iter()
        .map(|env| LinkRow {
            environment_id: *env,
            occurred_at: to_micros(e.occurred_at),
            event_id,
            kind: e.kind.as_str(),
            read_only: e.read_only,
        })
        .collect()
}

const UPSERT_TAIL: &str = " ON CONFLICT (org_id, source, source_key) DO UPDATE SET occurred_at = excluded.occurred_at,
     title = excluded.title, actor = excluded.actor, resources = excluded.resources,
     labels = excluded.labels, links = excluded.links, details = excluded.details,
     event_source = excluded.event_source, updated_at = excluded.updated_at
 RETURNING id";

const EVENT_IN_FULL: &str =
    "SELECT id, kind, source, occurred_at, title, actor, read_only, resources, labels, links, details, original,
         created_at, ingested_via
     FROM events WHERE org_id = $1 AND id = $2";

const SLUGS_OF_EVENT: &str =
    "SELECT env.slug FROM event_environments l JOIN environments env ON env.id = l.environment_id
     WHERE l.event_id = $1 ORDER BY env.slug";

#[async_trait]
impl Events for SqlStore {
    async fn upsert_event(&self, org_id: Uuid, e: &NewEvent) -> StoreResult<(Uuid, bool)> {
        let new_id = Uuid::now_v7();
        let at = to_micros(now());
        let id = on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            // The returned id tells an insert (our new id) from an update (the stored one).
            let mut upsert = sqlx::QueryBuilder::<Db>::new(INSERT_EVENTS);
            upsert.push_values(std::iter::once(e), |row, e| push_event(row, new_id, org_id, e, at));
            upsert.push(UPSERT_TAIL);
            let (id,): (Uuid,) = upsert.build_query_as().fetch_one(&mut *tx).await?;
            delete_links::<Db>(&[id]).build().execute(&mut *tx).await?;
            let links = links_of(id, e);
            if !links.is_empty() {
                insert_links::<Db>(&links).build().execute(&mut *tx).await?;
            }
            if id == new_id {
                record_rule_matches!(self, tx, org_id, &[(id, e)]);
            }
            tx.commit().await.map(|()| id)
        })
        .map_err(backend)?;
        self.timeline_written();
        Ok((id, id == new_id))
    }

    async fn insert_connection_event(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        links_version: i64,
        e: &NewEvent,
    ) -> StoreResult<Option<Uuid>> {
        let at = to_micros(now());
        let postgres = self.is_postgres();
        let stored = on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            if postgres && !links_unchanged!(postgres, tx, org_id, connection_id, links_version) {
                return Ok(Err(StoreError::LinksChanged));
            }
            let mut insert = sqlx::QueryBuilder::<Db>::new(INSERT_EVENTS);
            insert.push_values(std::iter::once(e), |row, e| push_event(row, Uuid::now_v7(), org_id, e, at));
            insert.push(" ON CONFLICT (org_id, source, source_key) DO NOTHING RETURNING id");
            let id: Option<(Uuid,)> = insert.build_query_as().fetch_optional(&mut *tx).await?;
            if let Some((id,)) = id {
                let links = links_of(id, e);
                if !links.is_empty() {
                    insert_links::<Db>(&links).build().execute(&mut *tx).await?;
                }
                record_rule_matches!(self, tx, org_id, &[(id, e)]);
            }
            if !postgres && !links_unchanged!(postgres, tx, org_id, connection_id, links_version) {
                return Ok(Err(StoreError::LinksChanged));
            }
            tx.commit().await.map(|()| Ok(id.map(|(id,)| id)))
        })
        .map_err(backend)?;
        self.timeline_written();
        stored
    }

    async fn insert_events(&self, org_id: Uuid, events: &[NewEvent]) -> StoreResult<Vec<(Uuid, bool)>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let at = to_micros(now());
        let answers = on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            let mut insert = sqlx::QueryBuilder::<Db>::new(INSERT_EVENTS);
            insert.push_values(events, |row, e| push_event(row, Uuid::now_v7(), org_id, e, at));
            insert.push(" ON CONFLICT (org_id, source, source_key) DO NOTHING RETURNING id, source, source_key");
            let inserted: Vec<(Uuid, String, String)> = insert.build_query_as().fetch_all(&mut *tx).await?;
            let mut answers = Vec::with_capacity(events.len());
            let mut links = Vec::new();
            let mut stored = Vec::new();
            for e in events {
                let new = inserted.iter().find(|(_, source, key)| source == &e.source && key == &e.source_key);
                let answer = match new {
                    // The first of two events with one key in the same batch is the one stored.
                    Some((id, _, _)) if !answers.iter().any(|(known, _): &(Uuid, bool)| known == id) => {
                        links.extend(links_of(*id, e));
                        stored.push((*id, e));
                        (*id, true)
                    }
                    _ => {
                        let (id,): (Uuid,) = sqlx::query_as(
                            "SELECT id FROM events WHERE org_id = $1 AND source = $2 AND source_key = $3",
                        )
                        .bind(org_id)
                        .bind(&e.source)
                        .bind(&e.source_key)
                        .fetch_one(&mut *tx)
                        .await?;
                        (id, false)
                    }
                };
                answers.push(answer);
            }
            if !links.is_empty() {
                insert_links::<Db>(&links).build().execute(&mut *tx).await?;
            }
            record_rule_matches!(self, tx, org_id, &stored);
            tx.commit().await.map(|()| answers)
        })
        .map_err(backend)?;
        self.timeline_written();
        Ok(answers)
    }

    async fn pushed_since(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        since: OffsetDateTime,
    ) -> StoreResult<(u64, Option<OffsetDateTime>)> {
        // Both read the partial index of pushed items (connection_id, created_at).
        let (count, newest): (i64, Option<i64>) = on_pool!(self, |pool: Db| {
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM events WHERE connection_id = $2 AND ingested_via = 'push'
                             AND created_at >= $3 AND org_id = $1),
                        (SELECT MAX(created_at) FROM events WHERE connection_id = $2 AND ingested_via = 'push'
                             AND org_id = $1)",
            )
            .bind(org_id)
            .bind(connection_id)
            .bind(to_micros(since))
            .fetch_one(pool)
            .await
        })
        .map_err(backend)?;
        Ok((count.max(0) as u64, newest.map(from_micros)))
    }

    async fn details_by_key(&self, org_id: Uuid, source: &str, source_key: &str) -> StoreResult<Option<Details>> {
        let row: Option<(String, Json<Box<serde_json::value::RawValue>>)> = on_pool!(self, |pool: Db| {
            sqlx::query_as("SELECT kind, details FROM events WHERE org_id = $1 AND source = $2 AND source_key = $3")
                .bind(org_id)
                .bind(source)
                .bind(source_key)
                .fetch_optional(pool)
                .await
        })
        .map_err(backend)?;
        Ok(row.map(|(kind, details)| Details::from_stored(stored_kind(&kind), details.0.get())))
    }

    async fn get_event(&self, org_id: Uuid, event_id: Uuid) -> StoreResult<Option<StoredEvent>> {
        let row: Option<EventRow> = on_pool!(self, |pool: Db| {
            sqlx::query_as(EVENT_IN_FULL).bind(org_id).bind(event_id).fetch_optional(pool).await
        })
        .map_err(backend)?;
        let Some(EventRow { item, original }) = row else { return Ok(None) };
        let slugs: Vec<(String,)> =
            on_pool!(self, |pool: Db| sqlx::query_as(SLUGS_OF_EVENT).bind(event_id).fetch_all(pool).await)
                .map_err(backend)?;
        let item = item.into_item(slugs.into_iter().map(|(s,)| s).collect());
        Ok(Some(StoredEvent { item, original: original.map(|o| o.0) }))
    }

    async fn timeline(&self, org_id: Uuid, query: &TimelineQuery) -> StoreResult<Vec<TimelineItem>> {
        self.timeline_page(org_id, query).await
    }

    async fn stream_items(
        &self,
        org_id: Uuid,
        query: &domain::timeline::StreamQuery,
    ) -> StoreResult<Vec<TimelineItem>> {
        self.stream_batch(org_id, query).await
    }

    fn timeline_writes(&self) -> u64 {
        self.timeline_writes.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl SqlStore {
    /// The benchmark's ceiling: the same rows in plain multi-row INSERTs of 1,000, with no
    /// de-duplication, links or progress. Not part of the store's API.
    pub async fn insert_plain(&self, org_id: Uuid, events: &[NewEvent]) -> anyhow::Result<()> {
        for chunk in events.chunks(1000) {
            on_pool!(self, |pool: Db| {
                let mut insert = sqlx::QueryBuilder::<Db>::new(INSERT_EVENTS);
                insert.push_values(chunk, |row, e| push_event(row, Uuid::now_v7(), org_id, e, 0));
                insert.build().execute(pool).await.map(|_| ())
            })?;
        }
        Ok(())
    }
}
