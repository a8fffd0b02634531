//! One pagination shape for every list: a page of items and an opaque keyset cursor.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// What a caller asked for: at most `limit` items after the one named by the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    /// The last id of the previous page; lists of resources are ordered by their UUIDv7 id,
    /// which is their order of creation.
    pub after: Option<Uuid>,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest { limit: DEFAULT_LIMIT, after: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("limit must be between 1 and {MAX_LIMIT}")]
    Limit,
    #[error("the cursor is not one this server issued for this list")]
    Cursor,
}

/// A page size: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when not given.
pub fn parse_limit(limit: Option<i64>) -> Result<u32, PageError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => Ok(n as u32),
        Some(_) => Err(PageError::Limit),
    }
}

impl PageRequest {
    pub fn parse(limit: Option<i64>, cursor: Option<&str>) -> Result<Self, PageError> {
        let limit = parse_limit(limit)?;
        let after = match cursor {
            None | Some("") => None,
            Some(c) => Some(decode_id_cursor(c).ok_or(PageError::Cursor)?),
        };
        Ok(PageRequest { limit, after })
    }

    /// Backends fetch one more row than asked, to know whether a next page exists.
    pub fn fetch_limit(&self) -> i64 {
        self.limit as i64 + 1
    }
}

/// A page of items and the cursor of the next page, if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says that more exist.
    pub fn from_overfetch(mut rows: Vec<T>, request: PageRequest, id_of: impl Fn(&T) -> Uuid) -> Self {
        let next_cursor = if rows.len() > request.limit as usize {
            rows.truncate(request.limit as usize);
            rows.last().map(|last| encode_id_cursor(id_of(last)))
        } else {
            None
        };
        Page { items: rows, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

const ID_CURSOR_PREFIX: &str = "id.";

pub fn encode_id_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{ID_CURSOR_PREFIX}{id}"))
}

pub fn decode_id_cursor(cursor: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    text.strip_prefix(ID_CURSOR_PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let id = Uuid::now_v7();
        assert_eq!(decode_id_cursor(&encode_id_cursor(id)), Some(id));
        assert_eq!(decode_id_cursor("not a cursor"), None);
        assert_eq!(decode_id_cursor(&URL_SAFE_NO_PAD.encode("id.nope")), None);
    }

    #[test]
    fn limit_bounds() {
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(PageRequest::parse(Some(500), None).unwrap().limit, 500);
        assert_eq!(PageRequest::parse(Some(0), None), Err(PageError::Limit));
        assert_eq!(PageRequest::parse(Some(501), None), Err(PageError::Limit));
        assert_eq!(PageRequest::parse(None, Some("%%")), Err(PageError::Cursor));
    }

    #[test]
    fn overfetch_sets_cursor_only_when_more_exist() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let req = PageRequest { limit: 2, after: None };
        let page = Page::from_overfetch(ids.clone(), req, |id| *id);
        assert_eq!(page.items, ids[..2]);
        assert_eq!(page.next_cursor, Some(encode_id_cursor(ids[1])));
        let page = Page::from_overfetch(ids[..2].to_vec(), req, |id| *id);
        assert_eq!(page.next_cursor, None);
    }
}
