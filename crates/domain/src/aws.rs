//! AWS identifiers, parsed so that a mistake says exactly which part is wrong.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Serialize;

use crate::validation::Invalid;

pub const PARTITIONS: &[&str] =
    &["aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc"];

/// Regions that have CloudTrail, with their partition.
pub const REGIONS: &[(&str, &str)] = &[
    ("us-east-1", "aws"),
    ("us-east-2", "aws"),
    ("us-west-1", "aws"),
    ("us-west-2", "aws"),
    ("af-south-1", "aws"),
    ("ap-east-1", "aws"),
    ("ap-east-2", "aws"),
    ("ap-south-1", "aws"),
    ("ap-south-2", "aws"),
    ("ap-southeast-1", "aws"),
    ("ap-southeast-2", "aws"),
    ("ap-southeast-3", "aws"),
    ("ap-southeast-4", "aws"),
    ("ap-southeast-5", "aws"),
    ("ap-southeast-6", "aws"),
    ("ap-southeast-7", "aws"),
    ("ap-northeast-1", "aws"),
    ("ap-northeast-2", "aws"),
    ("ap-northeast-3", "aws"),
    ("ca-central-1", "aws"),
    ("ca-west-1", "aws"),
    ("eu-central-1", "aws"),
    ("eu-central-2", "aws"),
    ("eu-west-1", "aws"),
    ("eu-west-2", "aws"),
    ("eu-west-3", "aws"),
    ("eu-south-1", "aws"),
    ("eu-south-2", "aws"),
    ("eu-north-1", "aws"),
    ("il-central-1", "aws"),
    ("me-south-1", "aws"),
    ("me-central-1", "aws"),
    ("mx-central-1", "aws"),
    ("sa-east-1", "aws"),
    ("cn-north-1", "aws-cn"),
    ("cn-northwest-1", "aws-cn"),
    ("us-gov-east-1", "aws-us-gov"),
    ("us-gov-west-1", "aws-us-gov"),
    ("eusc-de-east-1", "aws-eusc"),
];

pub fn partition_of_region(region: &str) -> Option<&'static str> {
    REGIONS.iter().find(|(r, _)| *r == region).map(|(_, p)| *p)
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`, and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn {
    pub partition: String,
    pub account_id: String,
    /// `/` or `/a/b/`.
    pub path: String,
    pub name: String,
}

const EXAMPLE: &str = "arn:aws:iam::123456789012:role/changetrail-reader";

fn is_role_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

impl RoleArn {
    pub fn parse(field: &str, input: &str) -> Result<RoleArn, Invalid> {
        let fail = |message: String| Err(Invalid::one(field, message));
        if input.is_empty() {
            return fail(format!("give the role's ARN, like {EXAMPLE}"));
        }
        if input.trim() != input {
            return fail("the ARN has spaces or line breaks around it; paste it without them".into());
        }
        if input.chars().any(char::is_whitespace) {
            return fail("the ARN contains spaces; an ARN has none".into());
        }
        if !input.starts_with("arn:") {
            if input.chars().all(is_role_name_char) {
                return fail(format!("{input:?} looks like a role name; give the role's full ARN, like {EXAMPLE}"));
            }
            return fail(format!("an ARN starts with 'arn:', like {EXAMPLE}"));
        }
        let parts: Vec<&str> = input.splitn(6, ':').collect();
        let [_, partition, service, region, account, resource] = parts[..] else {
            return fail(format!("an ARN has six parts separated by ':', like {EXAMPLE}"));
        };
        if !PARTITIONS.contains(&partition) {
            return fail(format!("partition {partition:?} is not an AWS partition (one of {})", PARTITIONS.join(", ")));
        }
        if service == "sts" && resource.starts_with("assumed-role/") {
            let role = resource.split('/').nth(1).unwrap_or("NAME");
            return fail(format!(
                "this is the ARN of an assumed-role session; give the role's own ARN: arn:{partition}:iam::{account}:role/{role}"
            ));
        }
        if service != "iam" {
            return fail(format!("the service part is {service:?}; a role ARN's is \"iam\""));
        }
        if !region.is_empty() {
            return fail(format!(
                "IAM ARNs have no region, but this one has {region:?} between 'iam:' and the account"
            ));
        }
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            return fail(format!(
                "the account ID must be exactly 12 digits; {account:?} has {} characters",
                account.len()
            ));
        }
        let Some(role_path) = resource.strip_prefix("role/") else {
            let kind = resource.split('/').next().unwrap_or(resource);
            let what = match kind {
                "user" => "an IAM user's ARN",
                "policy" => "a policy's ARN",
                "group" => "a group's ARN",
                "instance-profile" => "an instance profile's ARN",
                "root" => "the account root's ARN",
                _ => "not a role's ARN",
            };
            return fail(format!(
                "this is {what}; changetrail assumes a role: give an ARN with 'role/NAME', like {EXAMPLE}"
            ));
        };
        let (path, name) = match role_path.rfind('/') {
            Some(i) => (format!("/{}", &role_path[..=i]), &role_path[i + 1..]),
            None => ("/".to_owned(), role_path),
        };
        if path.len() > 512 || path.contains("//") || !path.chars().all(|c| c.is_ascii_graphic()) {
            return fail(format!(
                "the role path {path:?} must be at most 512 printable characters without empty segments"
            ));
        }
        if name.is_empty() {
            return fail("the role name after 'role/' is empty".into());
        }
        if name.chars().count() > 64 {
            return fail(format!("the role name has {} characters; at most 64 are allowed", name.chars().count()));
        }
        if let Some(bad) = name.chars().find(|c| !is_role_name_char(*c)) {
            return fail(format!("the role name contains {bad:?}; allowed are letters, digits and _+=,.@-"));
        }
        Ok(RoleArn { partition: partition.into(), account_id: account.into(), path, name: name.into() })
    }

    /// Whether `assumed_role_arn` (from GetCallerIdentity:
    /// `arn:P:sts::ACCOUNT:assumed-role/NAME/SESSION`) is a session of this role. The role's path
    /// is not part of that ARN.
    pub fn is_session_of_this_role(&self, assumed_role_arn: &str) -> bool {
        let parts: Vec<&str> = assumed_role_arn.splitn(6, ':').collect();
        let [arn, partition, service, _, account, resource] = parts[..] else { return false };
        let mut resource = resource.split('/');
        arn == "arn"
            && partition == self.partition
            && service == "sts"
            && account == self.account_id
            && resource.next() == Some("assumed-role")
            && resource.next() == Some(self.name.as_str())
    }
}

impl std::fmt::Display for RoleArn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "arn:{}:iam::{}:role{}{}", self.partition, self.account_id, self.path, self.name)
    }
}

/// The identity a trust policy names, from the ARN GetCallerIdentity returns: an assumed-role
/// session becomes its role (without a path, which that ARN does not carry).
pub fn principal_from_caller_arn(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if let [_, partition, "sts", _, account, resource] = parts[..] {
        if let Some(rest) = resource.strip_prefix("assumed-role/") {
            let role = rest.split('/').next().unwrap_or(rest);
            return format!("arn:{partition}:iam::{account}:role/{role}");
        }
    }
    arn.to_owned()
}

/// The secret a customer's trust policy requires in `sts:ExternalId`. Generated by changetrail
/// from the OS CSPRNG (256 bits), never chosen by a user, never changed.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ExternalId(String);

pub const EXTERNAL_ID_PREFIX: &str = "ct-";

impl ExternalId {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        // base64url's alphabet (letters, digits, '-', '_') is within what STS accepts.
        ExternalId(format!("{EXTERNAL_ID_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn from_stored(value: String) -> Self {
        ExternalId(value)
    }

    /// The external ID of an organisation connection's member account: this one and the
    /// account's id, which is what the StackSet's trust policy builds in each account
    /// (`${ExternalId}-${AWS::AccountId}`). As unguessable as this one, and unique per account.
    pub fn for_member(&self, account_id: &str) -> ExternalId {
        ExternalId(format!("{}-{account_id}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The random bytes it carries (for tests of its strength).
    pub fn entropy_bytes(&self) -> Option<Vec<u8>> {
        URL_SAFE_NO_PAD.decode(self.0.strip_prefix(EXTERNAL_ID_PREFIX)?).ok()
    }
}

impl std::fmt::Debug for ExternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExternalId(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &str) -> String {
        RoleArn::parse("role_arn", input).unwrap_err().0[0].message.clone()
    }

    #[test]
    fn valid_role_arns() {
        let arn = RoleArn::parse("f", "arn:aws:iam::123456789012:role/changetrail").unwrap();
        assert_eq!(
            (arn.partition.as_str(), arn.account_id.as_str(), arn.path.as_str(), arn.name.as_str()),
            ("aws", "123456789012", "/", "changetrail")
        );
        let arn = RoleArn::parse("f", "arn:aws-cn:iam::123456789012:role/ops/audit/Reader+x=y,z.@-_").unwrap();
        assert_eq!((arn.path.as_str(), arn.name.as_str()), ("/ops/audit/", "Reader+x=y,z.@-_"));
        assert_eq!(arn.to_string(), "arn:aws-cn:iam::123456789012:role/ops/audit/Reader+x=y,z.@-_");
        assert!(RoleArn::parse("f", &format!("arn:aws:iam::123456789012:role/{}", "n".repeat(64))).is_ok());
    }

    #[test]
    fn each_mistake_names_its_part() {
        assert!(err("arn:aws:iam::123456789012:user/alice").contains("user"));
        assert!(err("arn:aws:iam::123456789012:policy/ReadOnly").contains("policy"));
        assert!(err("arn:aws:sts::123456789012:assumed-role/reader/session")
            .contains("arn:aws:iam::123456789012:role/reader"));
        assert!(err("changetrail-reader").contains("role name"));
        assert!(err(" arn:aws:iam::123456789012:role/x").contains("spaces"));
        assert!(err("arn:aws:iam::123456789012:role/x\n").contains("spaces"));
        assert!(err("arn:azure:iam::123456789012:role/x").contains("partition"));
        assert!(err("arn:aws:iam::12345678901:role/x").contains("12 digits"));
        assert!(err("arn:aws:iam::1234567890ab:role/x").contains("12 digits"));
        assert!(err(&format!("arn:aws:iam::123456789012:role/{}", "n".repeat(65))).contains("65 characters"));
        assert!(err("arn:aws:iam:us-east-1:123456789012:role/x").contains("region"));
        assert!(err("arn:aws:s3::123456789012:role/x").contains("service"));
        assert!(err("arn:aws:iam::123456789012:role/").contains("empty"));
        assert!(err("arn:aws:iam::123456789012:role/bad!name").contains("'!'"));
        assert!(err("arn:aws:iam").contains("six parts"));
        assert!(err("").contains("give"));
    }

    #[test]
    fn sessions_of_a_role() {
        let role = RoleArn::parse("f", "arn:aws:iam::123456789012:role/team/reader").unwrap();
        assert!(role.is_session_of_this_role("arn:aws:sts::123456789012:assumed-role/reader/changetrail"));
        assert!(!role.is_session_of_this_role("arn:aws:sts::123456789012:assumed-role/other/changetrail"));
        assert!(!role.is_session_of_this_role("arn:aws:sts::999999999999:assumed-role/reader/changetrail"));
        assert!(!role.is_session_of_this_role("arn:aws:iam::123456789012:user/reader"));
    }

    #[test]
    fn principal_of_a_session_is_its_role() {
        assert_eq!(
            principal_from_caller_arn("arn:aws:sts::111111111111:assumed-role/changetrail/i-0abc"),
            "arn:aws:iam::111111111111:role/changetrail"
        );
        assert_eq!(principal_from_caller_arn("arn:aws:iam::111111111111:user/ci"), "arn:aws:iam::111111111111:user/ci");
    }

    #[test]
    fn external_ids_are_long_random_and_sts_safe() {
        let a = ExternalId::generate();
        let b = ExternalId::generate();
        assert_ne!(a, b);
        assert_eq!(a.entropy_bytes().unwrap().len(), 32);
        assert!(a.as_str().len() <= 1224);
        assert!(a.as_str().chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c)));
    }
}
