//! CloudTrail Lake-compatible channels and the tallies of their events' outcomes.

use async_trait::async_trait;
use domain::channel::{Channel, ChannelOutcome, ChannelSettings};
use domain::store::{Channels, StoreResult};
use domain::time_util::{from_micros, now, to_micros};
use domain::{Page, PageRequest};
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::rows::{backend, db_error};
use crate::SqlStore;

const COLUMNS: &str = "id, org_id, settings, access_key_id, secret, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct ChannelRow {
    id: Uuid,
    org_id: Uuid,
    settings: Json<ChannelSettings>,
    access_key_id: String,
    secret: String,
    created_at: i64,
    updated_at: i64,
}

impl From<ChannelRow> for Channel {
    fn from(r: ChannelRow) -> Channel {
        Channel {
            id: r.id,
            org_id: r.org_id,
            settings: r.settings.0,
            access_key_id: r.access_key_id,
            sealed_secret: r.secret,
            created_at: from_micros(r.created_at),
            updated_at: from_micros(r.updated_at),
        }
    }
}

/// Adds to a tally: a new outcome starts at the count given.
const COUNT_OUTCOME: &str =
    "INSERT INTO channel_outcomes (channel_id, outcome, events, last_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (channel_id, outcome) DO UPDATE SET events = channel_outcomes.events + excluded.events,
         last_at = excluded.last_at";

#[async_trait]
impl Channels for SqlStore {
    async fn create_channel(
        &self,
        org_id: Uuid,
        settings: &ChannelSettings,
        access_key_id: &str,
        sealed_secret: &str,
    ) -> StoreResult<Channel> {
        let (id, at) = (Uuid::now_v7(), to_micros(now()));
        let sql = format!(
            "INSERT INTO channels (id, org_id, name, source, settings, access_key_id, secret, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {COLUMNS}"
        );
        let row: ChannelRow = on_pool!(self, |pool: Db| {
            sqlx::query_as(&sql)
                .bind(id)
                .bind(org_id)
                .bind(&settings.name)
                .bind(&settings.source)
                .bind(Json(settings))
                .bind(access_key_id)
                .bind(sealed_secret)
                .bind(at)
                .fetch_one(pool)
                .await
        })
        .map_err(db_error("a channel with this access key already exists"))?;
        Ok(row.into())
    }

    async fn list_channels(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<Channel>> {
        let select = format!("SELECT {COLUMNS} FROM channels");
        let rows: Vec<ChannelRow> = self.org_page(&select, org_id, page).await?;
        let items: Vec<Channel> = rows.into_iter().map(Into::into).collect();
        Ok(Page::from_overfetch(items, page, |c: &Channel| c.id))
    }

    async fn get_channel(&self, org_id: Uuid, id: Uuid) -> StoreResult<Option<Channel>> {
        let sql = format!("SELECT {COLUMNS} FROM channels WHERE org_id = $1 AND id = $2");
        let row: Option<ChannelRow> =
            on_pool!(self, |pool: Db| sqlx::query_as(&sql).bind(org_id).bind(id).fetch_optional(pool).await)
                .map_err(backend)?;
        Ok(row.map(Into::into))
    }

    async fn update_channel(&self, org_id: Uuid, id: Uuid, settings: &ChannelSettings) -> StoreResult<Option<Channel>> {
        let sql = format!(
            "UPDATE channels SET name = $3, source = $4, settings = $5, updated_at = $6
             WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
        );
        let row: Option<ChannelRow> = on_pool!(self, |pool: Db| {
            sqlx::query_as(&sql)
                .bind(org_id)
                .bind(id)
                .bind(&settings.name)
                .bind(&settings.source)
                .bind(Json(settings))
                .bind(to_micros(now()))
                .fetch_optional(pool)
                .await
        })
        .map_err(backend)?;
        Ok(row.map(Into::into))
    }

    async fn delete_channel(&self, org_id: Uuid, id: Uuid) -> StoreResult<bool> {
        self.delete_org_row("channels", org_id, id).await
    }

    async fn channel_for_key(&self, access_key_id: &str) -> StoreResult<Option<Channel>> {
        let sql = format!("SELECT {COLUMNS} FROM channels WHERE access_key_id = $1");
        let row: Option<ChannelRow> =
            on_pool!(self, |pool: Db| sqlx::query_as(&sql).bind(access_key_id).fetch_optional(pool).await)
                .map_err(backend)?;
        Ok(row.map(Into::into))
    }

    async fn count_channel_outcomes(
        &self,
        channel_id: Uuid,
        counts: &[(String, u64)],
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            for (outcome, events) in counts {
                sqlx::query(COUNT_OUTCOME)
                    .bind(channel_id)
                    .bind(outcome)
                    .bind(i64::try_from(*events).unwrap_or(i64::MAX))
                    .bind(to_micros(at))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })
        .map_err(backend)
    }

    async fn channel_outcomes(
        &self,
        org_id: Uuid,
        first: Uuid,
        last: Uuid,
    ) -> StoreResult<Vec<(Uuid, ChannelOutcome)>> {
        let rows: Vec<(Uuid, String, i64, i64)> = on_pool!(self, |pool: Db| {
            sqlx::query_as(
                "SELECT o.channel_id, o.outcome, o.events, o.last_at
                 FROM channel_outcomes o JOIN channels c ON c.id = o.channel_id
                 WHERE c.org_id = $1 AND o.channel_id >= $2 AND o.channel_id <= $3 ORDER BY o.channel_id, o.outcome",
            )
            .bind(org_id)
            .bind(first)
            .bind(last)
            .fetch_all(pool)
            .await
        })
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(id, outcome, events, last_at)| {
                (id, ChannelOutcome { outcome, events: events.max(0) as u64, last_at: from_micros(last_at) })
            })
            .collect())
    }
}
