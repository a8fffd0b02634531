//! The SQL of every aggregate, written once for both backends: `$n` placeholders, `RETURNING`,
//! integer times (microseconds), UUIDs bound natively by sqlx.

use async_trait::async_trait;
use domain::store::StoreResult;

use crate::rows::backend;
use crate::SqlStore;

/// Whether connection `$connection`'s `links_version` is still `$version`, read in `$tx`. On
/// PostgreSQL `FOR SHARE`, first thing in the transaction: a rule change waits until it commits,
/// so the re-link that change starts sees what it stored. On SQLite call it after the writes,
/// when the write lock is held and the read is the latest.
macro_rules! links_unchanged {
    ($postgres:expr, $tx:expr, $org:expr, $connection:expr, $version:expr) => {
        sqlx::query_as::<_, (i64,)>(if $postgres {
            "SELECT links_version FROM connections WHERE org_id = $1 AND id = $2 FOR SHARE"
        } else {
            "SELECT links_version FROM connections WHERE org_id = $1 AND id = $2"
        })
        .bind($org)
        .bind($connection)
        .fetch_optional(&mut *$tx)
        .await?
        .map(|(v,)| v)
            == Some($version)
    };
}

/// Matches items stored in `$tx` just now (`$stored`: `&[(id, &NewEvent)]`) against the
/// organisation's enabled rules, read in the same transaction, and writes each match's `alert`
/// item (with its links) and outbox row there too: a delivery exists exactly when its item does.
/// Counts the events a connection's filter dropped, in the caller's transaction: each source
/// key once (`excluded_events`), added to the connection's `events_excluded`.
macro_rules! count_excluded {
    ($tx:ident, $org_id:expr, $connection_id:expr, $keys:expr) => {{
        let keys: &[String] = $keys;
        if !keys.is_empty() {
            let mut insert = sqlx::QueryBuilder::<Db>::new("INSERT INTO excluded_events (connection_id, source_key) ");
            insert.push_values(keys, |mut row, key| {
                row.push_bind($connection_id).push_bind(key.as_str());
            });
            insert.push(" ON CONFLICT DO NOTHING");
            let new = insert.build().execute(&mut *$tx).await?.rows_affected() as i64;
            if new > 0 {
                sqlx::query(
                    "UPDATE connections SET events_excluded = events_excluded + $1 WHERE id = $2 AND org_id = $3",
                )
                .bind(new)
                .bind($connection_id)
                .bind($org_id)
                .execute(&mut *$tx)
                .await?;
            }
        }
    }};
}

macro_rules! record_rule_matches {
    ($store:expr, $tx:expr, $org:expr, $stored:expr) => {{
        let stored: &[(uuid::Uuid, &domain::event::NewEvent)] = $stored;
        if stored.iter().any(|(_, e)| e.source != domain::rule::RULES_SOURCE) {
            // The rules are parsed once per change of them: the organisation's `rules_version`,
            // read in this transaction, says whether the parsed ones still hold.
            let (version,): (i64,) =
                sqlx::query_as(super::rules::RULES_VERSION).bind($org).fetch_one(&mut *$tx).await?;
            let rules = match $store.enabled_rules.get($org, version) {
                Some(rules) => rules,
                None => {
                    let rows: Vec<super::rules::RuleRow> =
                        sqlx::query_as(super::rules::ENABLED_RULES).bind($org).fetch_all(&mut *$tx).await?;
                    let rules: Vec<domain::rule::Rule> = rows.into_iter().filter_map(|r| r.into_rule()).collect();
                    $store.enabled_rules.put($org, version, domain::rule::RuleSet::new(rules))
                }
            };
            let hits: Vec<(uuid::Uuid, domain::rule::RuleHit)> = stored
                .iter()
                .flat_map(|(id, e)| domain::rule::matches_of(&rules, *id, e).into_iter().map(|h| (*id, h)))
                .collect();
            let at = domain::time_util::to_micros(domain::time_util::now());
            for chunk in hits.chunks(super::rules::OUTBOX_CHUNK) {
                let mut insert = sqlx::QueryBuilder::<Db>::new(super::events::INSERT_EVENTS);
                insert.push_values(chunk, |row, (_, hit)| {
                    super::events::push_event(row, uuid::Uuid::now_v7(), $org, &hit.alert, at)
                });
                insert.push(" ON CONFLICT (org_id, source, source_key) DO NOTHING RETURNING id, source_key");
                let alerts: Vec<(uuid::Uuid, String)> = insert.build_query_as().fetch_all(&mut *$tx).await?;
                let mut links = Vec::new();
                let mut outbox = Vec::with_capacity(chunk.len());
                for (item_id, hit) in chunk {
                    let alert_id = alerts.iter().find(|(_, key)| key == &hit.alert.source_key).map(|(id, _)| *id);
                    if let Some(alert_id) = alert_id {
                        links.extend(super::events::links_of(alert_id, &hit.alert));
                    }
                    outbox.push((*item_id, hit.rule_id, alert_id));
                }
                if !links.is_empty() {
                    super::links::insert_links::<Db>(&links).build().execute(&mut *$tx).await?;
                }
                super::rules::insert_outbox::<Db>($org, &outbox, at).build().execute(&mut *$tx).await?;
            }
        }
    }};
}

mod channels;
mod connections;
mod events;
mod imports;
mod links;
mod relinks;
mod rules;

pub(crate) use rules::RuleCache;
mod sources;
mod tenants;
pub mod timeline;

/// `SELECT … FROM table` narrowed to one keyset page of an organisation's rows, oldest first:
/// binds are the organisation, the id to start after, and the limit.
fn org_page_sql(select: &str) -> String {
    format!("{select} WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3")
}

/// Commits only if `held` (the worker still holds its lease); otherwise the transaction is
/// dropped, which rolls it back, and the caller answers `LeaseLost`.
async fn commit_if_held<DB: sqlx::Database>(tx: sqlx::Transaction<'_, DB>, held: bool) -> Result<bool, sqlx::Error> {
    if held {
        tx.commit().await?;
    }
    Ok(held)
}

impl SqlStore {
    /// Deletes one of an organisation's rows of `table` by id; false when it has no such row.
    async fn delete_org_row(&self, table: &'static str, org_id: uuid::Uuid, id: uuid::Uuid) -> StoreResult<bool> {
        let sql = format!("DELETE FROM {table} WHERE org_id = $1 AND id = $2");
        let deleted = on_pool!(self, |pool: Db| {
            sqlx::query(&sql).bind(org_id).bind(id).execute(pool).await.map(|done| done.rows_affected())
        })
        .map_err(backend)?;
        Ok(deleted > 0)
    }
}

#[async_trait]
impl domain::Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        on_pool!(self, |pool: Db| sqlx::query("SELECT id FROM organizations LIMIT 1").execute(pool).await.map(|_| ()))
            .map_err(backend)
    }
}
