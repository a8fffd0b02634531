//! Rules, and their outbox (`rule_deliveries`, leased like import jobs) with its attempts. The
//! outbox rows themselves are written by `record_rule_matches!`, in the transaction of the items
//! they are for.

use async_trait::async_trait;
use domain::rule::delivery::{DeliveryAttempt, DeliveryStatus, DueDelivery, RuleDelivery};
use domain::rule::{Rule, RuleSet, RuleSettings};
use domain::store::{Rules, StoreResult};
use domain::time_util::{from_micros, now, to_micros};
use domain::{Page, PageRequest, StoreError};
use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};
use std::sync::Arc;
use time::OffsetDateTime;

use uuid::Uuid;

use crate::rows::backend;
use crate::SqlStore;

const COLUMNS: &str = "id, org_id, settings, created_at, updated_at";

/// The enabled rules of organisation `$1`, read in the transaction that stores its new items.
pub(super) const ENABLED_RULES: &str =
    "SELECT id, org_id, settings, created_at, updated_at FROM rules WHERE org_id = $1 AND enabled";

/// What says whether an organisation's rules changed since they were parsed.
pub(super) const RULES_VERSION: &str = "SELECT rules_version FROM organizations WHERE id = $1";

const BUMP_RULES_VERSION: &str = "UPDATE organizations SET rules_version = rules_version + 1 WHERE id = $1";

/// Parsed enabled rules per organisation, good while its `rules_version` is unchanged.
#[derive(Default)]
pub(crate) struct RuleCache(std::sync::Mutex<std::collections::HashMap<Uuid, (i64, Arc<RuleSet>)>>);

impl RuleCache {
    pub(super) fn get(&self, org_id: Uuid, version: i64) -> Option<Arc<RuleSet>> {
        let cache = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(&org_id).filter(|(at, _)| *at == version).map(|(_, rules)| rules.clone())
    }

    pub(super) fn put(&self, org_id: Uuid, version: i64, rules: RuleSet) -> Arc<RuleSet> {
        let rules = Arc::new(rules);
        let mut cache = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.insert(org_id, (version, rules.clone()));
        rules
    }
}

/// Outbox rows are written this many at a time (a batch of 100 items under 100 rules could
/// otherwise pass the databases' limits on bound values).
pub(super) const OUTBOX_CHUNK: usize = 500;

#[derive(sqlx::FromRow)]
pub(super) struct RuleRow {
    id: Uuid,
    org_id: Uuid,
    settings: Json<serde_json::Value>,
    created_at: i64,
    updated_at: i64,
}

impl RuleRow {
    /// The rule, or `None` for settings this version cannot read: such a rule matches nothing
    /// rather than stopping every write of its organisation.
    pub(super) fn into_rule(self) -> Option<Rule> {
        match serde_json::from_value::<RuleSettings>(self.settings.0) {
            Ok(settings) => Some(Rule {
                id: self.id,
                org_id: self.org_id,
                settings,
                created_at: from_micros(self.created_at),
                updated_at: from_micros(self.updated_at),
            }),
            Err(e) => {
                tracing::error!(rule = %self.id, error = %e, "a stored rule cannot be read; it matches nothing");
                None
            }
        }
    }
}

/// `INSERT` of the outbox rows of these matches (`(item id, rule id, alert item id)`).
pub(super) fn insert_outbox<'a, DB>(
    org_id: Uuid,
    hits: &'a [(Uuid, Uuid, Option<Uuid>)],
    at: i64,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    Option<Uuid>: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut insert = QueryBuilder::new(
        "INSERT INTO rule_deliveries (id, org_id, rule_id, event_id, alert_event_id, next_attempt_at, created_at) ",
    );
    insert.push_values(hits, |mut row, (item_id, rule_id, alert_id)| {
        row.push_bind(Uuid::now_v7())
            .push_bind(org_id)
            .push_bind(*rule_id)
            .push_bind(*item_id)
            .push_bind(*alert_id)
            .push_bind(at)
            .push_bind(at);
    });
    insert.push(" ON CONFLICT (rule_id, event_id) DO NOTHING");
    insert
}

fn claim_sql(lock: &str) -> String {
    format!(
        "UPDATE rule_deliveries SET lease_owner = $3, lease_until = $2
         WHERE id IN (
             SELECT d.id FROM rule_deliveries d
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1
               AND (d.lease_until IS NULL OR d.lease_until < $1)
             ORDER BY d.next_attempt_at LIMIT $4 {lock})
           AND (lease_until IS NULL OR lease_until < $1 OR lease_owner = $3)
         RETURNING id, org_id, rule_id, event_id, attempts, created_at"
    )
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    rule_id: Uuid,
    event_id: Uuid,
    alert_event_id: Option<Uuid>,
    status: String,
    created_at: i64,
    next_attempt_at: Option<i64>,
    finished_at: Option<i64>,
}

#[async_trait]
impl Rules for SqlStore {
    async fn create_rule(&self, org_id: Uuid, settings: &RuleSettings, sealed_secret: &str) -> StoreResult<Rule> {
        let (id, at) = (Uuid::now_v7(), to_micros(now()));
        let sql = format!(
            "INSERT INTO rules (id, org_id, name, enabled, settings, secret, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {COLUMNS}"
        );
        let row: RuleRow = on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            let row = sqlx::query_as(&sql)
                .bind(id)
                .bind(org_id)
                .bind(&settings.name)
                .bind(settings.enabled)
                .bind(Json(settings))
                .bind(sealed_secret)
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(BUMP_RULES_VERSION).bind(org_id).execute(&mut *tx).await?;
            tx.commit().await.map(|()| row)
        })
        .map_err(backend)?;
        row.into_rule().ok_or_else(|| StoreError::Backend("the rule just stored cannot be read".into()))
    }

    async fn list_rules(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<Rule>> {
        let select = format!("SELECT {COLUMNS} FROM rules");
        let rows: Vec<RuleRow> = self.org_page(&select, org_id, page).await?;
        let items: Vec<Rule> = rows.into_iter().filter_map(RuleRow::into_rule).collect();
        Ok(Page::from_overfetch(items, page, |r: &Rule| r.id))
    }

    async fn get_rule(&self, org_id: Uuid, id: Uuid) -> StoreResult<Option<Rule>> {
        Ok(self.rule_with_secret(org_id, id).await?.map(|(rule, _)| rule))
    }

    async fn update_rule(
        &self,
        org_id: Uuid,
        id: Uuid,
        settings: &RuleSettings,
        sealed_secret: Option<&str>,
    ) -> StoreResult<Option<Rule>> {
        let sql = format!(
            "UPDATE rules SET name = $3, enabled = $4, settings = $5, secret = COALESCE($6, secret), updated_at = $7
             WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
        );
        let row: Option<RuleRow> = on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            let row = sqlx::query_as(&sql)
                .bind(org_id)
                .bind(id)
                .bind(&settings.name)
                .bind(settings.enabled)
                .bind(Json(settings))
                .bind(sealed_secret)
                .bind(to_micros(now()))
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(BUMP_RULES_VERSION).bind(org_id).execute(&mut *tx).await?;
            tx.commit().await.map(|()| row)
        })
        .map_err(backend)?;
        Ok(row.and_then(RuleRow::into_rule))
    }

    async fn delete_rule(&self, org_id: Uuid, id: Uuid) -> StoreResult<bool> {
        let deleted = on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            let deleted = sqlx::query("DELETE FROM rules WHERE org_id = $1 AND id = $2")
                .bind(org_id)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(BUMP_RULES_VERSION).bind(org_id).execute(&mut *tx).await?;
            tx.commit().await.map(|()| deleted)
        })
        .map_err(backend)?;
        Ok(deleted > 0)
    }

    async fn rule_with_secret(&self, org_id: Uuid, id: Uuid) -> StoreResult<Option<(Rule, String)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            rule: RuleRow,
            secret: String,
        }
        let sql = format!("SELECT {COLUMNS}, secret FROM rules WHERE org_id = $1 AND id = $2");
        let row: Option<Row> =
            on_pool!(self, |pool: Db| sqlx::query_as(&sql).bind(org_id).bind(id).fetch_optional(pool).await)
                .map_err(backend)?;
        Ok(row.and_then(|r| Some((r.rule.into_rule()?, r.secret))))
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<DueDelivery>> {
        let lock = if self.is_postgres() { "FOR UPDATE OF d SKIP LOCKED" } else { "" };
        let sql = claim_sql(lock);
        let rows: Vec<(Uuid, Uuid, Uuid, Uuid, i64, i64)> = on_pool!(self, |pool: Db| {
            sqlx::query_as(&sql)
                .bind(to_micros(now))
                .bind(to_micros(lease_until))
                .bind(owner)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(id, org_id, rule_id, event_id, attempts, created_at)| DueDelivery {
                id,
                org_id,
                rule_id,
                event_id,
                attempts: attempts.max(0) as u32,
                created_at: from_micros(created_at),
            })
            .collect())
    }

    async fn finish_delivery_attempt(
        &self,
        owner: &str,
        delivery: &DueDelivery,
        attempt: Option<&DeliveryAttempt>,
        status: DeliveryStatus,
        next_attempt_at: Option<OffsetDateTime>,
    ) -> StoreResult<()> {
        let at = to_micros(now());
        let finished = (status != DeliveryStatus::Pending).then_some(at);
        let held = on_pool!(self, |pool: Db| {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE rule_deliveries SET status = $3, attempts = attempts + $4, next_attempt_at = $5,
                     finished_at = $6, lease_owner = NULL, lease_until = NULL
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(delivery.id)
            .bind(owner)
            .bind(status.as_str())
            .bind(i64::from(attempt.is_some()))
            .bind(next_attempt_at.map(to_micros))
            .bind(finished)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 1 {
                if let Some(a) = attempt {
                    sqlx::query(
                        "INSERT INTO rule_delivery_attempts (delivery_id, attempt, at, http_status, error, duration_ms)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(delivery.id)
                    .bind(i64::from(delivery.attempts) + 1)
                    .bind(to_micros(a.at))
                    .bind(a.http_status.map(i64::from))
                    .bind(a.error.as_deref())
                    .bind(a.duration_ms.min(i64::MAX as u64) as i64)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            super::commit_if_held(tx, updated == 1).await
        })
        .map_err(backend)?;
        if held {
            Ok(())
        } else {
            Err(StoreError::LeaseLost)
        }
    }

    async fn list_rule_deliveries(&self, org_id: Uuid, rule_id: Uuid, limit: u32) -> StoreResult<Vec<RuleDelivery>> {
        let rows: Vec<DeliveryRow> = on_pool!(self, |pool: Db| {
            sqlx::query_as(
                "SELECT id, rule_id, event_id, alert_event_id, status, created_at, next_attempt_at, finished_at
                 FROM rule_deliveries WHERE org_id = $1 AND rule_id = $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(org_id)
            .bind(rule_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        })
        .map_err(backend)?;
        let Some(oldest) = rows.last().map(|r| r.id) else { return Ok(Vec::new()) };
        // Every attempt of the page in one query.
        let attempts: Vec<(Uuid, i64, Option<i64>, Option<String>, i64)> = on_pool!(self, |pool: Db| {
            sqlx::query_as(
                "SELECT a.delivery_id, a.at, a.http_status, a.error, a.duration_ms
                 FROM rule_delivery_attempts a JOIN rule_deliveries d ON d.id = a.delivery_id
                 WHERE d.org_id = $1 AND d.rule_id = $2 AND d.id >= $3 ORDER BY a.delivery_id, a.attempt",
            )
            .bind(org_id)
            .bind(rule_id)
            .bind(oldest)
            .fetch_all(pool)
            .await
        })
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|r| RuleDelivery {
                attempts: attempts
                    .iter()
                    .filter(|a| a.0 == r.id)
                    .map(|(_, at, status, error, ms)| DeliveryAttempt {
                        at: from_micros(*at),
                        http_status: status.and_then(|s| u16::try_from(s).ok()),
                        error: error.clone(),
                        duration_ms: (*ms).max(0) as u64,
                    })
                    .collect(),
                id: r.id,
                rule_id: r.rule_id,
                event_id: r.event_id,
                alert_event_id: r.alert_event_id,
                status: DeliveryStatus::from_stored(&r.status),
                created_at: from_micros(r.created_at),
                next_attempt_at: r.next_attempt_at.map(from_micros).filter(|_| r.status == "pending"),
                finished_at: r.finished_at.map(from_micros),
            })
            .collect())
    }

    async fn release_delivery_leases(&self, owner: &str) -> StoreResult<()> {
        on_pool!(self, |pool: Db| {
            sqlx::query("UPDATE rule_deliveries SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1")
                .bind(owner)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(backend)
    }

    async fn outbox_backlog(&self) -> StoreResult<(u64, Option<OffsetDateTime>)> {
        // Reads the partial index of pending rows only.
        let (count, oldest): (i64, Option<i64>) = on_pool!(self, |pool: Db| {
            sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM rule_deliveries WHERE status = 'pending'")
                .fetch_one(pool)
                .await
        })
        .map_err(backend)?;
        Ok((count.max(0) as u64, oldest.map(from_micros)))
    }
}
