//! The CIS AWS Foundations monitoring controls as data: each is the metric filter pattern of its
//! AWS Security Hub control (CloudWatch.1–14; CIS v1.4 section 4), written as alternatives of
//! clauses over the CloudTrail record's fields, read exactly as CloudWatch Logs reads the
//! pattern. AWS Organizations changes (CIS 4.15) have no Security Hub control and are the 15th.

use serde::Serialize;

/// A test of one field of the record (`userIdentity.type`), as a filter pattern writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    /// `($.field = "a") || ($.field = "b")`; a `*` at either end is a wildcard.
    AnyOf(&'static [&'static str]),
    /// `$.field != "a"`: holds too when the field is absent.
    Not(&'static str),
    /// `$.field NOT EXISTS`.
    Absent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Clause {
    pub field: &'static str,
    #[serde(flatten)]
    pub test: Test,
}

/// One monitoring control: it matches a record when every clause of one of `any_of` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Preset {
    /// What a rule's `match.preset` names: `cis-aws-<n>`.
    pub id: &'static str,
    /// The Security Hub control (`CloudWatch.1`) or CIS recommendation it comes from.
    pub control: &'static str,
    pub title: &'static str,
    pub any_of: &'static [&'static [Clause]],
}

const fn is(field: &'static str, values: &'static [&'static str]) -> Clause {
    Clause { field, test: Test::AnyOf(values) }
}

const fn not(field: &'static str, value: &'static str) -> Clause {
    Clause { field, test: Test::Not(value) }
}

const fn absent(field: &'static str) -> Clause {
    Clause { field, test: Test::Absent }
}

const NAME: &str = "eventName";
const SOURCE: &str = "eventSource";

pub const PRESETS: &[Preset] = &[
    Preset {
        id: "cis-aws-1",
        control: "CloudWatch.1",
        title: "Usage of the root user",
        any_of: &[&[
            is("userIdentity.type", &["Root"]),
            absent("userIdentity.invokedBy"),
            not("eventType", "AwsServiceEvent"),
        ]],
    },
    Preset {
        id: "cis-aws-2",
        control: "CloudWatch.2",
        title: "Unauthorized API calls",
        any_of: &[&[is("errorCode", &["*UnauthorizedOperation", "AccessDenied*"])]],
    },
    Preset {
        id: "cis-aws-3",
        control: "CloudWatch.3",
        title: "Management console sign-in without MFA",
        any_of: &[&[
            is(NAME, &["ConsoleLogin"]),
            not("additionalEventData.MFAUsed", "Yes"),
            is("userIdentity.type", &["IAMUser"]),
            is("responseElements.ConsoleLogin", &["Success"]),
        ]],
    },
    Preset {
        id: "cis-aws-4",
        control: "CloudWatch.4",
        title: "IAM policy changes",
        any_of: &[&[is(
            NAME,
            &[
                "DeleteGroupPolicy",
                "DeleteRolePolicy",
                "DeleteUserPolicy",
                "PutGroupPolicy",
                "PutRolePolicy",
                "PutUserPolicy",
                "CreatePolicy",
                "DeletePolicy",
                "CreatePolicyVersion",
                "DeletePolicyVersion",
                "AttachRolePolicy",
                "DetachRolePolicy",
                "AttachUserPolicy",
                "DetachUserPolicy",
                "AttachGroupPolicy",
                "DetachGroupPolicy",
            ],
        )]],
    },
    Preset {
        id: "cis-aws-5",
        control: "CloudWatch.5",
        title: "CloudTrail configuration changes",
        any_of: &[&[is(NAME, &["CreateTrail", "UpdateTrail", "DeleteTrail", "StartLogging", "StopLogging"])]],
    },
    Preset {
        id: "cis-aws-6",
        control: "CloudWatch.6",
        title: "Management console authentication failures",
        any_of: &[&[is(NAME, &["ConsoleLogin"]), is("errorMessage", &["Failed authentication"])]],
    },
    Preset {
        id: "cis-aws-7",
        control: "CloudWatch.7",
        title: "Disabling or scheduled deletion of customer managed keys",
        any_of: &[&[is(SOURCE, &["kms.amazonaws.com"]), is(NAME, &["DisableKey", "ScheduleKeyDeletion"])]],
    },
    Preset {
        id: "cis-aws-8",
        control: "CloudWatch.8",
        title: "S3 bucket policy changes",
        any_of: &[&[
            is(SOURCE, &["s3.amazonaws.com"]),
            is(
                NAME,
                &[
                    "PutBucketAcl",
                    "PutBucketPolicy",
                    "PutBucketCors",
                    "PutBucketLifecycle",
                    "PutBucketReplication",
                    "DeleteBucketPolicy",
                    "DeleteBucketCors",
                    "DeleteBucketLifecycle",
                    "DeleteBucketReplication",
                ],
            ),
        ]],
    },
    Preset {
        id: "cis-aws-9",
        control: "CloudWatch.9",
        title: "AWS Config configuration changes",
        any_of: &[&[
            is(SOURCE, &["config.amazonaws.com"]),
            is(
                NAME,
                &[
                    "StopConfigurationRecorder",
                    "DeleteDeliveryChannel",
                    "PutDeliveryChannel",
                    "PutConfigurationRecorder",
                ],
            ),
        ]],
    },
    Preset {
        id: "cis-aws-10",
        control: "CloudWatch.10",
        title: "Security group changes",
        any_of: &[&[is(
            NAME,
            &[
                "AuthorizeSecurityGroupIngress",
                "AuthorizeSecurityGroupEgress",
                "RevokeSecurityGroupIngress",
                "RevokeSecurityGroupEgress",
                "CreateSecurityGroup",
                "DeleteSecurityGroup",
            ],
        )]],
    },
    Preset {
        id: "cis-aws-11",
        control: "CloudWatch.11",
        title: "Network access control list (NACL) changes",
        any_of: &[&[is(
            NAME,
            &[
                "CreateNetworkAcl",
                "CreateNetworkAclEntry",
                "DeleteNetworkAcl",
                "DeleteNetworkAclEntry",
                "ReplaceNetworkAclEntry",
                "ReplaceNetworkAclAssociation",
            ],
        )]],
    },
    Preset {
        id: "cis-aws-12",
        control: "CloudWatch.12",
        title: "Network gateway changes",
        any_of: &[&[is(
            NAME,
            &[
                "CreateCustomerGateway",
                "DeleteCustomerGateway",
                "AttachInternetGateway",
                "CreateInternetGateway",
                "DeleteInternetGateway",
                "DetachInternetGateway",
            ],
        )]],
    },
    Preset {
        id: "cis-aws-13",
        control: "CloudWatch.13",
        title: "Route table changes",
        any_of: &[&[
            is(SOURCE, &["ec2.amazonaws.com"]),
            is(
                NAME,
                &[
                    "CreateRoute",
                    "CreateRouteTable",
                    "ReplaceRoute",
                    "ReplaceRouteTableAssociation",
                    "DeleteRouteTable",
                    "DeleteRoute",
                    "DisassociateRouteTable",
                ],
            ),
        ]],
    },
    Preset {
        id: "cis-aws-14",
        control: "CloudWatch.14",
        title: "VPC changes",
        any_of: &[&[is(
            NAME,
            &[
                "CreateVpc",
                "DeleteVpc",
                "ModifyVpcAttribute",
                "AcceptVpcPeeringConnection",
                "CreateVpcPeeringConnection",
                "DeleteVpcPeeringConnection",
                "RejectVpcPeeringConnection",
                "AttachClassicLinkVpc",
                "DetachClassicLinkVpc",
                "DisableVpcClassicLink",
                "EnableVpcClassicLink",
            ],
        )]],
    },
    Preset {
        id: "cis-aws-15",
        control: "CIS 4.15 (no Security Hub control)",
        title: "AWS Organizations changes",
        any_of: &[&[
            is(SOURCE, &["organizations.amazonaws.com"]),
            is(
                NAME,
                &[
                    "AcceptHandshake",
                    "AttachPolicy",
                    "CreateAccount",
                    "CreateOrganizationalUnit",
                    "CreatePolicy",
                    "DeclineHandshake",
                    "DeleteOrganization",
                    "DeleteOrganizationalUnit",
                    "DeletePolicy",
                    "DetachPolicy",
                    "DisablePolicyType",
                    "EnablePolicyType",
                    "InviteAccountToOrganization",
                    "LeaveOrganization",
                    "MoveAccount",
                    "RemoveAccountFromOrganization",
                    "UpdatePolicy",
                    "UpdateOrganizationalUnit",
                ],
            ),
        ]],
    },
];

pub fn preset(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id == id)
}

/// A text field of the record at a dotted path; numbers and booleans read as their text, as a
/// filter pattern compares them.
pub(crate) fn field<'a>(record: &'a serde_json::Value, path: &str) -> Option<std::borrow::Cow<'a, str>> {
    let mut at = record;
    for part in path.split('.') {
        at = at.get(part)?;
    }
    match at {
        serde_json::Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        serde_json::Value::Null => None,
        serde_json::Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        serde_json::Value::Bool(b) => Some(std::borrow::Cow::Owned(b.to_string())),
        other => Some(std::borrow::Cow::Owned(other.to_string())),
    }
}

impl Clause {
    /// The test on a field's value, however it was read.
    pub(crate) fn holds(&self, value: Option<std::borrow::Cow<'_, str>>) -> bool {
        match self.test {
            Test::AnyOf(patterns) => value.is_some_and(|v| patterns.iter().any(|p| super::glob_match(p, &v))),
            Test::Not(unwanted) => value.is_none_or(|v| v != unwanted),
            Test::Absent => value.is_none(),
        }
    }
}

impl Preset {
    pub fn matches(&self, record: &serde_json::Value) -> bool {
        self.matches_with(|path| field(record, path))
    }

    /// As [`Preset::matches`], reading fields through `field_of` (which may know some already).
    pub(crate) fn matches_with<'a>(&self, field_of: impl Fn(&str) -> Option<std::borrow::Cow<'a, str>>) -> bool {
        self.any_of.iter().any(|clauses| clauses.iter().all(|c| c.holds(field_of(c.field))))
    }

    /// The `eventName`s this preset can match, when every alternative names them as literals.
    pub fn literal_event_names(&self) -> Option<Vec<&'static str>> {
        let mut names = Vec::new();
        for clauses in self.any_of {
            let named = clauses.iter().find_map(|c| match c.test {
                Test::AnyOf(values) if c.field == "eventName" && values.iter().all(|v| !v.contains('*')) => {
                    Some(values)
                }
                _ => None,
            })?;
            names.extend_from_slice(named);
        }
        Some(names)
    }

    /// The CloudWatch Logs metric filter pattern this preset is, for a person to compare with
    /// the control's reference.
    pub fn filter_pattern(&self) -> String {
        let alternative = |clauses: &&[Clause]| {
            clauses
                .iter()
                .map(|c| match c.test {
                    Test::AnyOf([one]) => format!("($.{} = \"{one}\")", c.field),
                    Test::AnyOf(many) => format!(
                        "({})",
                        many.iter().map(|v| format!("($.{} = \"{v}\")", c.field)).collect::<Vec<_>>().join(" || ")
                    ),
                    Test::Not(v) => format!("($.{} != \"{v}\")", c.field),
                    Test::Absent => format!("($.{} NOT EXISTS)", c.field),
                })
                .collect::<Vec<_>>()
                .join(" && ")
        };
        format!("{{ {} }}", self.any_of.iter().map(alternative).collect::<Vec<_>>().join(" || "))
    }
}
