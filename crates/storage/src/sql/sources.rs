//! Webhook sources and their delivery log.

use async_trait::async_trait;
use domain::source::{Delivery, Source, SourceKind, SourceSettings};
use domain::store::{Sources, StoreResult};
use domain::time_util::{from_micros, now, to_micros};
use domain::{Page, PageRequest, StoreError};
use sqlx::types::Json;
use uuid::Uuid;

use crate::rows::backend;
use crate::SqlStore;

const SOURCES: &str = "SELECT id, org_id, kind, settings, secrets, created_at, updated_at FROM sources";
const INSERT_SOURCE: &str = "INSERT INTO sources (id, org_id, kind, name, settings, secrets, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
     RETURNING id, org_id, kind, settings, secrets, created_at, updated_at";
const UPDATE_SOURCE: &str = "UPDATE sources SET name = $3, settings = $4,
         secrets = CASE WHEN $5 THEN $6 ELSE secrets END, updated_at = $7
     WHERE org_id = $1 AND id = $2
     RETURNING id, org_id, kind, settings, secrets, created_at, updated_at";
const RECORD_DELIVERY: &str =
    "INSERT INTO source_deliveries (source_id, delivery_id, event_type, outcome, item_id, detail, received_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (source_id, delivery_id) DO UPDATE SET event_type = excluded.event_type,
         outcome = excluded.outcome, item_id = excluded.item_id, detail = excluded.detail,
         received_at = excluded.received_at";
const DELIVERIES: &str =
    "SELECT d.source_id, d.delivery_id, d.event_type, d.outcome, d.item_id, d.detail, d.received_at
     FROM source_deliveries d JOIN sources s ON s.id = d.source_id
     WHERE s.org_id = $1 AND d.source_id = $2 ORDER BY d.received_at DESC, d.delivery_id LIMIT $3";

#[derive(sqlx::FromRow)]
pub struct SourceRow {
    id: Uuid,
    org_id: Uuid,
    kind: String,
    settings: Json<SourceSettings>,
    secrets: Json<Vec<String>>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<SourceRow> for Source {
    type Error = StoreError;

    fn try_from(r: SourceRow) -> Result<Source, StoreError> {
        let kind = SourceKind::parse(&r.kind)
            .map_err(|_| StoreError::Backend(format!("stored source {} has an unknown kind {:?}", r.id, r.kind)))?;
        Ok(Source {
            id: r.id,
            org_id: r.org_id,
            kind,
            settings: r.settings.0,
            sealed_secrets: r.secrets.0,
            created_at: from_micros(r.created_at),
            updated_at: from_micros(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    source_id: Uuid,
    delivery_id: String,
    event_type: String,
    outcome: String,
    item_id: Option<Uuid>,
    detail: Option<String>,
    received_at: i64,
}

#[async_trait]
impl Sources for SqlStore {
    async fn create_source(
        &self,
        org_id: Uuid,
        kind: SourceKind,
        settings: &SourceSettings,
        sealed_secrets: &[String],
    ) -> StoreResult<Source> {
        let (id, at) = (Uuid::now_v7(), to_micros(now()));
        let row: SourceRow = on_pool!(self, |pool: Db| {
            sqlx::query_as(INSERT_SOURCE)
                .bind(id)
                .bind(org_id)
                .bind(kind.as_str())
                .bind(&settings.name)
                .bind(Json(settings))
                .bind(Json(sealed_secrets))
                .bind(at)
                .fetch_one(pool)
                .await
        })
        .map_err(backend)?;
        row.try_into()
    }

    async fn list_sources(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<Source>> {
        let rows: Vec<SourceRow> = self.org_page(SOURCES, org_id, page).await?;
        let items = rows.into_iter().map(TryInto::try_into).collect::<StoreResult<Vec<Source>>>()?;
        Ok(Page::from_overfetch(items, page, |s: &Source| s.id))
    }

    async fn get_source(&self, org_id: Uuid, id: Uuid) -> StoreResult<Option<Source>> {
        let sql = format!("{SOURCES} WHERE org_id = $1 AND id = $2");
        let row: Option<SourceRow> =
            on_pool!(self, |pool: Db| sqlx::query_as(&sql).bind(org_id).bind(id).fetch_optional(pool).await)
                .map_err(backend)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn source_for_hook(&self, id: Uuid) -> StoreResult<Option<Source>> {
        let sql = format!("{SOURCES} WHERE id = $1");
        let row: Option<SourceRow> =
            on_pool!(self, |pool: Db| sqlx::query_as(&sql).bind(id).fetch_optional(pool).await).map_err(backend)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn update_source(
        &self,
        org_id: Uuid,
        id: Uuid,
        settings: &SourceSettings,
        sealed_secrets: Option<&[String]>,
    ) -> StoreResult<Option<Source>> {
        let row: Option<SourceRow> = on_pool!(self, |pool: Db| {
            sqlx::query_as(UPDATE_SOURCE)
                .bind(org_id)
                .bind(id)
                .bind(&settings.name)
                .bind(Json(settings))
                .bind(sealed_secrets.is_some())
                .bind(Json(sealed_secrets.unwrap_or_default()))
                .bind(to_micros(now()))
                .fetch_optional(pool)
                .await
        })
        .map_err(backend)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn delete_source(&self, org_id: Uuid, id: Uuid) -> StoreResult<bool> {
        self.delete_org_row("sources", org_id, id).await
    }

    async fn record_delivery(&self, d: &Delivery) -> StoreResult<()> {
        on_pool!(self, |pool: Db| {
            sqlx::query(RECORD_DELIVERY)
                .bind(d.source_id)
                .bind(&d.delivery_id)
                .bind(&d.event_type)
                .bind(&d.outcome)
                .bind(d.item_id)
                .bind(&d.detail)
                .bind(to_micros(d.received_at))
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(backend)
    }

    async fn list_deliveries(&self, org_id: Uuid, source_id: Uuid, limit: u32) -> StoreResult<Vec<Delivery>> {
        let rows: Vec<DeliveryRow> = on_pool!(self, |pool: Db| {
            sqlx::query_as(DELIVERIES).bind(org_id).bind(source_id).bind(i64::from(limit)).fetch_all(pool).await
        })
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|r| Delivery {
                source_id: r.source_id,
                delivery_id: r.delivery_id,
                event_type: r.event_type,
                outcome: r.outcome,
                item_id: r.item_id,
                detail: r.detail,
                received_at: from_micros(r.received_at),
            })
            .collect())
    }
}
