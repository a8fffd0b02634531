//! Timeline pages as last sent, remembered for a second: when an alert fires, everyone it
//! pages opens the same timeline at once, and each of them after the first gets the page that
//! was read and written for the first instead of a query of their own.
//!
//! A page is remembered under the store's count of committed timeline writes
//! ([`domain::store::Events::timeline_writes`]) as it was before the page was read: the first
//! write this process commits after that makes the page unreachable, so a client that posts
//! an item and reads its timeline sees the item. Items another process stores (a second API
//! server on the same PostgreSQL) appear within `fresh_for`, the bound `lookups.rs` already
//! sets for deleted tokens and environments. A page is only ever served to the organisation
//! that read it, under the exact path and query it was read with.

use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use crate::App;

/// How long a page is served without reading it again, unless configured.
pub const PAGES_FRESH_FOR: Duration = Duration::from_secs(1);
/// At most this many bytes of pages are remembered (a page of 500 CloudTrail items is about
/// 600 KB); the least used go first.
const CAPACITY_BYTES: u64 = 64 * 1024 * 1024;
/// quick_cache's sizing hint: pages of 100 items, the web view's, are about 120 KB.
const ESTIMATED_PAGES: usize = 500;

#[derive(Clone, PartialEq, Eq, Hash)]
struct PageKey {
    writes: u64,
    org_id: Uuid,
    path_and_query: String,
}

#[derive(Clone)]
struct Remembered {
    body: Bytes,
    until: Instant,
}

/// A page weighs its bytes, its key's included.
#[derive(Clone)]
struct BySize;

impl quick_cache::Weighter<PageKey, Remembered> for BySize {
    fn weight(&self, key: &PageKey, page: &Remembered) -> u64 {
        (key.path_and_query.len() + page.body.len()) as u64
    }
}

pub(crate) struct RenderedPages {
    fresh_for: Duration,
    pages: quick_cache::sync::Cache<PageKey, Remembered, BySize>,
}

impl RenderedPages {
    pub(crate) fn new(fresh_for: Duration) -> RenderedPages {
        RenderedPages {
            fresh_for,
            pages: quick_cache::sync::Cache::with_weighter(ESTIMATED_PAGES, CAPACITY_BYTES, BySize),
        }
    }
}

/// A page not remembered: what to remember it under once it is read and written.
pub struct PageTicket {
    key: PageKey,
    /// A page is fresh for `fresh_for` from before it was read.
    issued: Instant,
}

impl App {
    /// The page of a timeline request (its path and query, as sent) remembered for this
    /// organisation, or the ticket to remember it under.
    pub fn remembered_page(&self, org_id: Uuid, path_and_query: &str) -> Result<Bytes, PageTicket> {
        let key = PageKey { writes: self.store.timeline_writes(), org_id, path_and_query: path_and_query.to_owned() };
        let now = Instant::now();
        match self.pages.pages.get(&key) {
            Some(page) if now < page.until => Ok(page.body),
            _ => Err(PageTicket { key, issued: now }),
        }
    }

    /// Remembers a page read after its ticket was issued.
    pub fn remember_page(&self, ticket: PageTicket, body: Bytes) {
        if self.pages.fresh_for.is_zero() {
            return;
        }
        self.pages.pages.insert(ticket.key, Remembered { body, until: ticket.issued + self.pages.fresh_for });
    }
}
