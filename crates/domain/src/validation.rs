use serde::Serialize;

/// One thing wrong with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every problem found in one input, so a caller can fix them all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("invalid input: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
pub struct Invalid(pub Vec<FieldError>);

impl Invalid {
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid(vec![FieldError { field: field.into(), message: message.into() }])
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }

    /// Records the error of a parse, if any, and hands back the parsed value.
    pub fn check<T>(&mut self, result: Result<T, Invalid>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(Invalid(errors)) => {
                self.0.extend(errors);
                None
            }
        }
    }

    pub fn into_result(self) -> Result<(), Invalid> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

/// A trimmed, non-empty string of at most `max` characters without control characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Invalid::one(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(Invalid::one(field, format!("must be at most {max} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Invalid::one(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// Like [`text`], but an empty string is allowed and means "none".
pub fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, Invalid> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > max => Err(Invalid::one(field, format!("must be at most {max} characters"))),
        // Line breaks and tabs are fine in free text; other control characters (NUL above all,
        // which PostgreSQL cannot store) are not.
        Some(v) if v.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) => {
            Err(Invalid::one(field, "must not contain control characters other than line breaks and tabs"))
        }
        Some(v) => Ok(Some(v.to_owned())),
    }
}

/// How far ahead of now a posted item may be placed: beyond it, an item would sit at the top of
/// every timeline for good.
pub const MAX_FUTURE: time::Duration = time::Duration::hours(24);

/// An instant any timeline can hold: in UTC within the years 1 to 9999 (what RFC 3339 writes).
pub fn instant(field: &str, t: time::OffsetDateTime) -> Result<time::OffsetDateTime, Invalid> {
    match t.checked_to_offset(time::UtcOffset::UTC) {
        Some(utc) if (1..=9999).contains(&utc.year()) => Ok(utc),
        _ => Err(Invalid::one(field, "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in UTC")),
    }
}

/// When a posted item happened: a valid instant, after 1970 and at most [`MAX_FUTURE`] ahead.
pub fn posted_instant(
    field: &str,
    t: time::OffsetDateTime,
    now: time::OffsetDateTime,
) -> Result<time::OffsetDateTime, Invalid> {
    let utc = instant(field, t)?;
    if utc < time::OffsetDateTime::UNIX_EPOCH {
        return Err(Invalid::one(field, "must not be before 1970-01-01T00:00:00Z"));
    }
    if utc > now + MAX_FUTURE {
        return Err(Invalid::one(field, "must not be more than 24 hours in the future"));
    }
    Ok(utc)
}

/// At most `max` items of a repeatable field or list.
pub fn at_most(field: &str, count: usize, max: usize) -> Result<(), Invalid> {
    if count > max {
        return Err(Invalid::one(field, format!("at most {max} may be given ({count} were)")));
    }
    Ok(())
}

/// For a query parameter that must hold a value when given (`limit`, `include_read_only`):
/// absent is `None` (with `#[serde(default)]`), but given empty or unreadable is an error naming
/// what was sent. (Form decoding would otherwise read `limit=` as absent.)
pub fn query_value<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    use serde::de::Error;
    let text = <String as serde::Deserialize>::deserialize(deserializer)?;
    text.parse().map(Some).map_err(|e| D::Error::custom(format!("{text:?} is not a valid value: {e}")))
}

/// An optional JSON integer, also written as a number with no fraction (`7.0`): JSON has one
/// number type, and JSON Schema's `integer` admits both.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let number: Option<serde_json::Number> = serde::Deserialize::deserialize(deserializer)?;
    let Some(number) = number else { return Ok(None) };
    if let Some(n) = number.as_i64() {
        return Ok(Some(n));
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => Ok(Some(f as i64)),
        _ => Err(serde::de::Error::custom(format!("{number} is not a whole number"))),
    }
}
