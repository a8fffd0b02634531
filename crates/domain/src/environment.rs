use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::validation::{self, Invalid};

/// `[a-z0-9-]{1,63}`, not starting or ending with a hyphen: safe in URLs, log lines and labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvironmentSlug(String);

impl TryFrom<String> for EnvironmentSlug {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        EnvironmentSlug::parse("slug", &value).map_err(|e| format!("{value:?} is not a valid slug: {}", e.0[0].message))
    }
}

impl From<EnvironmentSlug> for String {
    fn from(slug: EnvironmentSlug) -> String {
        slug.0
    }
}

impl EnvironmentSlug {
    pub const MAX_CHARS: usize = 63;

    pub fn parse(field: &str, value: &str) -> Result<Self, Invalid> {
        if value.is_empty() {
            return Err(Invalid::one(field, "must not be empty"));
        }
        if value.len() > Self::MAX_CHARS {
            return Err(Invalid::one(field, format!("must be at most {} characters", Self::MAX_CHARS)));
        }
        if let Some(bad) = value.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
            return Err(Invalid::one(
                field,
                format!("may contain only lowercase letters, digits and '-' (found {bad:?})"),
            ));
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err(Invalid::one(field, "must not start or end with '-'"));
        }
        Ok(EnvironmentSlug(value.to_owned()))
    }

    /// A slug derived from a name, for callers who give only a name ("Production EU" → "production-eu").
    pub fn derive_from(name: &str) -> Option<Self> {
        let mut slug = String::new();
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        let slug: String = slug.trim_end_matches('-').chars().take(Self::MAX_CHARS).collect();
        EnvironmentSlug::parse("slug", slug.trim_end_matches('-')).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for EnvironmentSlug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a request names an environment: by UUID or by slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvironmentRef {
    Id(Uuid),
    Slug(EnvironmentSlug),
}

impl EnvironmentRef {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        match Uuid::try_parse(value) {
            Ok(id) => Ok(EnvironmentRef::Id(id)),
            Err(_) => EnvironmentSlug::parse("env", value).map(EnvironmentRef::Slug),
        }
    }

    pub fn names(&self, env: &Environment) -> bool {
        match self {
            EnvironmentRef::Id(id) => env.id == *id,
            EnvironmentRef::Slug(slug) => env.slug == *slug,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub id: Uuid,
    pub org_id: Uuid,
    pub slug: EnvironmentSlug,
    pub name: String,
    pub description: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

/// A validated environment to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnvironment {
    pub slug: EnvironmentSlug,
    pub name: String,
    pub description: Option<String>,
}

impl NewEnvironment {
    /// Validates every field and reports every problem at once. Without a slug, one is derived
    /// from the name.
    pub fn parse(name: &str, slug: Option<&str>, description: Option<&str>) -> Result<Self, Invalid> {
        let mut errors = Invalid::default();
        let name = errors.check(validation::text("name", name, MAX_NAME_CHARS));
        let slug = match slug {
            Some(s) => errors.check(EnvironmentSlug::parse("slug", s)),
            None => match name.as_deref().map(EnvironmentSlug::derive_from) {
                Some(Some(slug)) => Some(slug),
                Some(None) => {
                    errors.push("slug", "cannot be derived from the name; give one explicitly");
                    None
                }
                None => None,
            },
        };
        let description = errors.check(validation::optional_text("description", description, MAX_DESCRIPTION_CHARS));
        errors.into_result()?;
        Ok(NewEnvironment { slug: slug.unwrap(), name: name.unwrap(), description: description.unwrap() })
    }
}

/// A validated partial update: `None` leaves a field as it is; `description: Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentPatch {
    pub slug: Option<EnvironmentSlug>,
    pub name: Option<String>,
    pub description: Option<Option<String>>,
}

impl EnvironmentPatch {
    pub fn parse(name: Option<&str>, slug: Option<&str>, description: Option<Option<&str>>) -> Result<Self, Invalid> {
        let mut errors = Invalid::default();
        let name = name.and_then(|n| errors.check(validation::text("name", n, MAX_NAME_CHARS)));
        let slug = slug.and_then(|s| errors.check(EnvironmentSlug::parse("slug", s)));
        let description = match description {
            None => None,
            Some(d) => errors.check(validation::optional_text("description", d, MAX_DESCRIPTION_CHARS)),
        };
        errors.into_result()?;
        Ok(EnvironmentPatch { slug, name, description })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["prod", "eu-west-1", "a", &"x".repeat(63)] {
            assert!(EnvironmentSlug::parse("slug", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Prod", "with space", "-lead", "trail-", "ü", &"x".repeat(64), "a/b"] {
            assert!(EnvironmentSlug::parse("slug", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slug_derived_from_name() {
        assert_eq!(EnvironmentSlug::derive_from("Production EU").unwrap().as_str(), "production-eu");
        assert_eq!(EnvironmentSlug::derive_from("  --Staging!! 2 ").unwrap().as_str(), "staging-2");
        assert!(EnvironmentSlug::derive_from("日本").is_none());
    }

    #[test]
    fn new_environment_reports_every_error() {
        let err = NewEnvironment::parse("", Some("Bad Slug"), Some(&"d".repeat(2001))).unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "slug", "description"]);
    }

    #[test]
    fn env_ref_accepts_uuid_or_slug() {
        let id = Uuid::now_v7();
        assert_eq!(EnvironmentRef::parse(&id.to_string()).unwrap(), EnvironmentRef::Id(id));
        assert!(matches!(EnvironmentRef::parse("prod").unwrap(), EnvironmentRef::Slug(_)));
        assert!(EnvironmentRef::parse("NOT OK").is_err());
    }
}
