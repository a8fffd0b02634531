//! What a change did, for the events an on-call engineer most needs to read right: "opened
//! tcp/22 to 0.0.0.0/0 on security group sg-0abc", "shared snapshot snap-1 with account
//! 210987654321", "scheduled KMS key k-1 for deletion in 7 days". A summary is only made for a
//! call that succeeded (a failed one changed nothing) and only from what the record says.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Resource;

/// One field a change set, with its old value where the record gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// A sentence without its subject: "opened tcp/22 to 0.0.0.0/0 on security group sg-0abc".
    pub text: String,
    pub changes: Vec<Change>,
}

fn at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    v.pointer(pointer).filter(|v| !v.is_null())
}

/// A text at a JSON pointer; numbers and booleans read as their text.
fn text(v: &Value, pointer: &str) -> Option<String> {
    match at(v, pointer)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The elements of an EC2-style list (`{"items": [...]}`, `{"item": ...}`) or a plain array.
fn items(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(Value::Object(o)) => match o.get("items").or_else(|| o.get("item")) {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            Some(Value::String(_)) => vec![o.get("items").or_else(|| o.get("item")).unwrap_or(&Value::Null)],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn change(field: &str, to: impl Into<String>) -> Change {
    Change { field: field.to_owned(), from: None, to: to.into() }
}

fn list(values: &[String]) -> String {
    match values {
        [] => String::new(),
        [one] => one.clone(),
        [first @ .., last] => format!("{} and {last}", first.join(", ")),
    }
}

/// "tcp/22", "tcp/1000-2000", "all traffic", "icmp".
fn protocol_ports(perm: &Value) -> String {
    let protocol = text(perm, "/ipProtocol").unwrap_or_else(|| "-1".into());
    let from = text(perm, "/fromPort");
    let to = text(perm, "/toPort");
    let protocol = match protocol.as_str() {
        "-1" | "all" => return "all traffic".into(),
        "6" => "tcp".to_owned(),
        "17" => "udp".to_owned(),
        "1" => "icmp".to_owned(),
        p => p.to_lowercase(),
    };
    match (from.as_deref(), to.as_deref()) {
        (Some(f), Some(t)) if f == t && f != "-1" => format!("{protocol}/{f}"),
        (Some(f), Some(t)) if f != "-1" && t != "-1" && !(f == "0" && t == "65535") => format!("{protocol}/{f}-{t}"),
        _ => format!("{protocol} (all ports)"),
    }
}

/// Each permission of a security group call as "tcp/22 0.0.0.0/0": its ports and the peers
/// (CIDRs, groups, prefix lists) it names.
fn permissions(request: &Value) -> Vec<(String, Vec<String>)> {
    let listed = items(at(request, "/ipPermissions"));
    // The older form names one permission at the top of the request.
    let perms: Vec<&Value> =
        if listed.is_empty() && at(request, "/ipProtocol").is_some() { vec![request] } else { listed };
    perms
        .into_iter()
        .map(|p| {
            let mut peers: Vec<String> = Vec::new();
            peers.extend(items(at(p, "/ipRanges")).iter().filter_map(|r| text(r, "/cidrIp")));
            peers.extend(items(at(p, "/ipv6Ranges")).iter().filter_map(|r| text(r, "/cidrIpv6")));
            peers.extend(items(at(p, "/groups")).iter().filter_map(|g| text(g, "/groupId")));
            peers.extend(items(at(p, "/prefixListIds")).iter().filter_map(|g| text(g, "/prefixListId")));
            peers.extend(text(p, "/cidrIp"));
            peers.extend(text(p, "/cidrIpv6"));
            peers.extend(text(p, "/sourceSecurityGroupName"));
            (protocol_ports(p), peers)
        })
        .collect()
}

fn security_group_summary(request: &Value, group: &str, ingress: bool, adds: bool) -> Option<Summary> {
    let perms = permissions(request);
    if perms.is_empty() {
        return None;
    }
    let field = if ingress { "ingress" } else { "egress" };
    let (verb, link) = match (ingress, adds) {
        (true, true) => ("opened", "to"),
        (true, false) => ("closed", "to"),
        (false, true) => ("allowed outbound", "to"),
        (false, false) => ("removed outbound", "to"),
    };
    let phrases: Vec<String> = perms
        .iter()
        .map(|(ports, peers)| if peers.is_empty() { ports.clone() } else { format!("{ports} {link} {}", list(peers)) })
        .collect();
    let preposition = if ingress { "on" } else { "from" };
    let changes = perms
        .iter()
        .flat_map(|(ports, peers)| {
            let peers = if peers.is_empty() { vec!["?".to_owned()] } else { peers.clone() };
            peers.into_iter().map(move |peer| Change {
                field: field.to_owned(),
                from: None,
                to: format!("{}{ports} {peer}", if adds { "+" } else { "-" }),
            })
        })
        .collect();
    Some(Summary { text: format!("{verb} {} {preposition} security group {group}", list(&phrases)), changes })
}

/// Accounts added to or removed from a share (`userId`s), and whether `all` (public) is among
/// them.
fn sharing(add: Vec<String>, remove: Vec<String>, what: &str) -> Option<Summary> {
    let public = |v: &[String]| v.iter().any(|a| a.eq_ignore_ascii_case("all"));
    let accounts = |v: &[String]| v.iter().filter(|a| !a.eq_ignore_ascii_case("all")).cloned().collect::<Vec<_>>();
    let mut parts = Vec::new();
    let mut changes = Vec::new();
    if public(&add) {
        parts.push(format!("made {what} public"));
        changes.push(Change { field: "public".into(), from: None, to: "true".into() });
    }
    let added = accounts(&add);
    if !added.is_empty() {
        parts.push(format!("shared {what} with account{} {}", if added.len() > 1 { "s" } else { "" }, list(&added)));
        changes.extend(added.iter().map(|a| change("shared_with", format!("+{a}"))));
    }
    if public(&remove) {
        parts.push(format!("made {what} private"));
        changes.push(Change { field: "public".into(), from: Some("true".into()), to: "false".into() });
    }
    let removed = accounts(&remove);
    if !removed.is_empty() {
        parts.push(format!(
            "stopped sharing {what} with account{} {}",
            if removed.len() > 1 { "s" } else { "" },
            list(&removed)
        ));
        changes.extend(removed.iter().map(|a| change("shared_with", format!("-{a}"))));
    }
    if parts.is_empty() {
        return None;
    }
    Some(Summary { text: parts.join("; "), changes })
}

fn ec2_permission_summary(request: &Value, attribute: &str, what: &str) -> Option<Summary> {
    let ids = |op: &str| -> Vec<String> {
        let entries = items(at(request, &format!("/{attribute}/{op}")));
        entries.iter().filter_map(|e| text(e, "/userId").or_else(|| text(e, "/group"))).collect()
    };
    sharing(ids("add"), ids("remove"), what)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Whether a policy (a document or its JSON text) allows anyone: an `Allow` statement whose
/// principal is `*` and that has no condition.
fn allows_anyone(policy: Option<&Value>) -> bool {
    let parsed;
    let doc = match policy {
        Some(Value::String(s)) => {
            let decoded = percent_decode(s);
            parsed = serde_json::from_str::<Value>(&decoded).unwrap_or(Value::Null);
            &parsed
        }
        Some(v) => v,
        None => return false,
    };
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect::<Vec<_>>(),
        Some(one) => vec![one],
        None => return false,
    };
    statements.iter().any(|s| {
        let allow = s.get("Effect").and_then(Value::as_str) == Some("Allow");
        let anyone = match s.get("Principal") {
            Some(Value::String(p)) => p == "*",
            Some(Value::Object(o)) => o.get("AWS").is_some_and(|a| strings(Some(a)).iter().any(|p| p == "*")),
            _ => false,
        };
        allow && anyone && s.get("Condition").is_none()
    })
}

/// Whether an inline policy allows every action on every resource.
fn allows_everything(policy: Option<&Value>) -> bool {
    let Some(Value::String(s)) = policy else { return false };
    let Ok(doc) = serde_json::from_str::<Value>(&percent_decode(s)) else { return false };
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect::<Vec<_>>(),
        Some(one) => vec![one],
        None => return false,
    };
    statements.iter().any(|s| {
        s.get("Effect").and_then(Value::as_str) == Some("Allow")
            && strings(s.get("Action")).iter().any(|a| a == "*" || a == "*:*")
            && strings(s.get("Resource")).iter().any(|r| r == "*")
    })
}

/// IAM's responses percent-encode policy documents.
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn principals(policy: Option<&Value>) -> Vec<String> {
    let Some(Value::String(s)) = policy else { return Vec::new() };
    let Ok(doc) = serde_json::from_str::<Value>(&percent_decode(s)) else { return Vec::new() };
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(one) => vec![one.clone()],
        None => return Vec::new(),
    };
    let mut out = Vec::new();
    for s in statements.iter().filter(|s| s.get("Effect").and_then(Value::as_str) == Some("Allow")) {
        match s.get("Principal") {
            Some(Value::String(p)) => out.push(p.clone()),
            Some(Value::Object(o)) => {
                for v in o.values() {
                    out.extend(strings(Some(v)));
                }
            }
            _ => {}
        }
    }
    out.dedup();
    out
}

fn short_policy(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_owned()
}

/// The summary of a successful call, for the events this module knows.
pub fn summarize(service: &str, event_name: &str, record: &Value, primary: Option<&Resource>) -> Option<Summary> {
    let req = record.get("requestParameters").unwrap_or(&Value::Null);
    let resp = record.get("responseElements").unwrap_or(&Value::Null);
    let name = primary.map(|r| r.name.clone());
    let one = |text: String, changes: Vec<Change>| Some(Summary { text, changes });
    let base = event_name.trim_end_matches(|c: char| c.is_ascii_digit() || c == 'v');
    match (service, base) {
        ("ec2", "AuthorizeSecurityGroupIngress") => security_group_summary(req, &name?, true, true),
        ("ec2", "RevokeSecurityGroupIngress") => security_group_summary(req, &name?, true, false),
        ("ec2", "AuthorizeSecurityGroupEgress") => security_group_summary(req, &name?, false, true),
        ("ec2", "RevokeSecurityGroupEgress") => security_group_summary(req, &name?, false, false),
        ("ec2", "ModifySnapshotAttribute") => {
            ec2_permission_summary(req, "createVolumePermission", &format!("snapshot {}", name?))
        }
        ("ec2", "ModifyImageAttribute") => ec2_permission_summary(req, "launchPermission", &format!("image {}", name?)),
        ("rds", "ModifyDBSnapshotAttribute") | ("rds", "ModifyDBClusterSnapshotAttribute") => {
            if text(req, "/attributeName").as_deref() != Some("restore") {
                return None;
            }
            let what = if base.contains("Cluster") { "DB cluster snapshot" } else { "DB snapshot" };
            sharing(strings(at(req, "/valuesToAdd")), strings(at(req, "/valuesToRemove")), &format!("{what} {}", name?))
        }
        ("s3", "PutBucketPolicy") => {
            let public = allows_anyone(at(req, "/bucketPolicy").or_else(|| at(req, "/policy")));
            let text = format!("set the policy of bucket {}{}", name?, if public { ", allowing anyone" } else { "" });
            one(text, if public { vec![change("public", "true")] } else { vec![change("policy", "set")] })
        }
        ("s3", "DeleteBucketPolicy") => {
            one(format!("removed the policy of bucket {}", name?), vec![change("policy", "none")])
        }
        ("s3", "PutBucketAcl") => {
            let grants = serde_json::to_string(req).unwrap_or_default();
            let acl = text(req, "/x-amz-acl").unwrap_or_default();
            let public = grants.contains("acs.amazonaws.com/groups/global/AllUsers")
                || grants.contains("acs.amazonaws.com/groups/global/AuthenticatedUsers")
                || acl.starts_with("public-")
                || acl == "authenticated-read";
            if public {
                one(format!("made bucket {} public through its ACL", name?), vec![change("public", "true")])
            } else {
                one(
                    format!("changed the ACL of bucket {}", name?),
                    vec![change("acl", if acl.is_empty() { "grants".into() } else { acl })],
                )
            }
        }
        ("s3", "PutBucketPublicAccessBlock") | ("s3control", "PutAccountPublicAccessBlock") => {
            let config = at(req, "/PublicAccessBlockConfiguration").unwrap_or(req);
            let flags = ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"];
            let off: Vec<String> = flags
                .iter()
                .filter(|f| {
                    matches!(config.get(**f), Some(Value::Bool(false)))
                        || config.get(**f).and_then(Value::as_str) == Some("false")
                })
                .map(|f| (*f).to_owned())
                .collect();
            let whose = if service == "s3" { format!("bucket {}", name?) } else { "the account".to_owned() };
            if off.is_empty() {
                one(
                    format!("turned on every public access block of {whose}"),
                    vec![change("public_access_block", "on")],
                )
            } else {
                let changes = off.iter().map(|f| change(f, "false")).collect();
                one(format!("turned off {} of {whose}", list(&off)), changes)
            }
        }
        ("s3", "DeleteBucketPublicAccessBlock") => one(
            format!("removed the public access block of bucket {}", name?),
            vec![change("public_access_block", "none")],
        ),
        ("s3control", "DeleteAccountPublicAccessBlock") => {
            one("removed the account's S3 public access block".into(), vec![change("public_access_block", "none")])
        }
        ("iam", "AttachRolePolicy" | "AttachUserPolicy" | "AttachGroupPolicy") => {
            let policy = short_policy(&text(req, "/policyArn")?);
            let whom = base.trim_start_matches("Attach").trim_end_matches("Policy").to_lowercase();
            one(format!("attached {policy} to {whom} {}", name?), vec![change("policies", format!("+{policy}"))])
        }
        ("iam", "DetachRolePolicy" | "DetachUserPolicy" | "DetachGroupPolicy") => {
            let policy = short_policy(&text(req, "/policyArn")?);
            let whom = base.trim_start_matches("Detach").trim_end_matches("Policy").to_lowercase();
            one(format!("detached {policy} from {whom} {}", name?), vec![change("policies", format!("-{policy}"))])
        }
        ("iam", "PutRolePolicy" | "PutUserPolicy" | "PutGroupPolicy") => {
            let policy = text(req, "/policyName")?;
            let whom = base.trim_start_matches("Put").trim_end_matches("Policy").to_lowercase();
            let everything = allows_everything(at(req, "/policyDocument"));
            let text = format!(
                "put inline policy {policy} on {whom} {}{}",
                name?,
                if everything { ", allowing every action on every resource" } else { "" }
            );
            one(text, vec![change("inline_policies", format!("+{policy}"))])
        }
        ("iam", "DeleteRolePolicy" | "DeleteUserPolicy" | "DeleteGroupPolicy") => {
            let policy = text(req, "/policyName")?;
            let whom = base.trim_start_matches("Delete").trim_end_matches("Policy").to_lowercase();
            one(
                format!("deleted inline policy {policy} from {whom} {}", name?),
                vec![change("inline_policies", format!("-{policy}"))],
            )
        }
        ("iam", "CreateAccessKey") => {
            let key = text(resp, "/accessKey/accessKeyId").unwrap_or_else(|| "?".into());
            let user = text(req, "/userName").or_else(|| text(resp, "/accessKey/userName"));
            let text = match user {
                Some(u) => format!("created access key {key} for user {u}"),
                None => format!("created access key {key} for themselves"),
            };
            one(text, vec![change("access_keys", format!("+{key}"))])
        }
        ("iam", "DeleteAccessKey") => {
            let key = text(req, "/accessKeyId")?;
            let of = text(req, "/userName").map(|u| format!(" of user {u}")).unwrap_or_default();
            one(format!("deleted access key {key}{of}"), vec![change("access_keys", format!("-{key}"))])
        }
        ("iam", "UpdateAccessKey") => {
            let key = text(req, "/accessKeyId")?;
            let status = text(req, "/status")?;
            let verb = if status == "Inactive" { "deactivated" } else { "activated" };
            let of = text(req, "/userName").map(|u| format!(" of user {u}")).unwrap_or_default();
            one(format!("{verb} access key {key}{of}"), vec![change("status", status)])
        }
        ("iam", "CreateLoginProfile") => {
            one(format!("gave user {} a console password", name?), vec![change("console_password", "set")])
        }
        ("iam", "UpdateLoginProfile") => {
            one(format!("changed the console password of user {}", name?), vec![change("console_password", "changed")])
        }
        ("iam", "DeleteLoginProfile") => {
            one(format!("removed the console password of user {}", name?), vec![change("console_password", "none")])
        }
        ("iam", "UpdateAssumeRolePolicy") => {
            let who = principals(at(req, "/policyDocument"));
            let text = if who.is_empty() {
                format!("changed who can assume role {}", name?)
            } else {
                format!("changed who can assume role {}: {}", name?, list(&who))
            };
            one(text, vec![change("trusted", list(&who))])
        }
        ("iam", "DeactivateMFADevice" | "DeleteVirtualMFADevice") => {
            let user = text(req, "/userName").map(|u| format!(" of user {u}")).unwrap_or_default();
            let device = text(req, "/serialNumber").map(|s| format!(" {}", short_policy(&s))).unwrap_or_default();
            one(format!("removed MFA device{device}{user}"), vec![change("mfa", "none")])
        }
        ("iam", "AddUserToGroup") => {
            let user = text(req, "/userName")?;
            one(format!("added user {user} to group {}", name?), vec![change("members", format!("+{user}"))])
        }
        ("signin", "ConsoleLogin") => {
            let failed = text(resp, "/ConsoleLogin").as_deref() == Some("Failure");
            if failed {
                return one("failed to sign in to the console".into(), vec![]);
            }
            let mfa = text(record, "/additionalEventData/MFAUsed");
            let root = text(record, "/userIdentity/type").as_deref() == Some("Root");
            let who = if root { " as root" } else { "" };
            match mfa.as_deref() {
                Some("Yes") => one(format!("signed in to the console{who} with MFA"), vec![change("mfa_used", "yes")]),
                Some(_) => one(format!("signed in to the console{who} without MFA"), vec![change("mfa_used", "no")]),
                None => one(format!("signed in to the console{who}"), vec![]),
            }
        }
        ("signin", "CheckMfa") => match text(resp, "/CheckMfa").as_deref() {
            Some("Success") => one("passed the MFA check of a console sign-in".into(), vec![]),
            _ => one("failed the MFA check of a console sign-in".into(), vec![]),
        },
        ("kms", "DisableKey") => one(format!("disabled KMS key {}", name?), vec![change("enabled", "false")]),
        ("kms", "ScheduleKeyDeletion") => {
            let days = text(req, "/pendingWindowInDays").unwrap_or_else(|| "30".into());
            one(
                format!("scheduled KMS key {} for deletion in {days} days", name?),
                vec![change("pending_deletion_days", days)],
            )
        }
        ("kms", "CancelKeyDeletion") => {
            one(format!("cancelled the deletion of KMS key {}", name?), vec![change("pending_deletion_days", "none")])
        }
        ("cloudtrail", "StopLogging") => one(
            format!("stopped logging of trail {}", name?),
            vec![Change { field: "logging".into(), from: Some("on".into()), to: "off".into() }],
        ),
        ("cloudtrail", "StartLogging") => {
            one(format!("started logging of trail {}", name?), vec![change("logging", "on")])
        }
        ("cloudtrail", "DeleteTrail") => one(format!("deleted trail {}", name?), vec![change("trail", "deleted")]),
        ("cloudtrail", "UpdateTrail") => {
            let obj = req.as_object()?;
            let changes: Vec<Change> = obj
                .iter()
                .filter(|(k, _)| k.as_str() != "name")
                .filter_map(|(k, v)| Some(change(k, text(&serde_json::json!({ "v": v }), "/v")?)))
                .collect();
            let fields: Vec<String> = changes.iter().map(|c| c.field.clone()).collect();
            let text = if fields.is_empty() {
                format!("changed trail {}", name?)
            } else {
                format!("changed {} of trail {}", list(&fields), name?)
            };
            one(text, changes)
        }
        ("cloudtrail", "PutEventSelectors" | "PutAdvancedEventSelectors") => {
            let read_write: Vec<String> =
                items(at(req, "/eventSelectors")).iter().filter_map(|s| text(s, "/readWriteType")).collect();
            let management: Vec<String> =
                items(at(req, "/eventSelectors")).iter().filter_map(|s| text(s, "/includeManagementEvents")).collect();
            let mut changes = Vec::new();
            if let Some(rw) = read_write.first() {
                changes.push(change("read_write_type", rw.clone()));
            }
            if let Some(m) = management.first() {
                changes.push(change("include_management_events", m.clone()));
            }
            let narrowed = read_write.iter().any(|r| r == "ReadOnly") || management.iter().any(|m| m == "false");
            let text = if narrowed {
                format!("narrowed which events trail {} records", name?)
            } else {
                format!("changed which events trail {} records", name?)
            };
            one(text, changes)
        }
        ("ec2", "DeleteFlowLogs") => one(format!("deleted flow logs {}", name?), vec![change("flow_logs", "deleted")]),
        ("ec2", "ModifyInstanceAttribute") => {
            let instance = name?;
            if let Some(t) = text(req, "/instanceType/value") {
                one(format!("changed the instance type of {instance} to {t}"), vec![change("instance_type", t)])
            } else if at(req, "/userData").is_some() {
                one(format!("changed the user data of instance {instance}"), vec![change("user_data", "changed")])
            } else if let Some(v) = text(req, "/disableApiTermination/value") {
                let on = v == "true";
                let verb = if on { "turned on" } else { "turned off" };
                one(
                    format!("{verb} termination protection of instance {instance}"),
                    vec![change("termination_protection", on.to_string())],
                )
            } else if at(req, "/groupSet").is_some() {
                let groups: Vec<String> =
                    items(at(req, "/groupSet")).iter().filter_map(|g| text(g, "/groupId")).collect();
                one(
                    format!("set the security groups of instance {instance} to {}", list(&groups)),
                    vec![change("security_groups", list(&groups))],
                )
            } else {
                None
            }
        }
        ("ec2", "RunInstances") => {
            let launched: Vec<String> =
                items(at(resp, "/instancesSet")).iter().filter_map(|i| text(i, "/instanceId")).collect();
            if launched.is_empty() {
                return None;
            }
            let kind = text(req, "/instanceType").map(|t| format!(" {t}")).unwrap_or_default();
            let image = items(at(req, "/instancesSet")).iter().find_map(|i| text(i, "/imageId"));
            let from = image.map(|i| format!(" from {i}")).unwrap_or_default();
            let plural = if launched.len() == 1 { "instance" } else { "instances" };
            one(
                format!("launched{kind} {plural} {}{from}", list(&launched)),
                launched.iter().map(|i| change("instances", format!("+{i}"))).collect(),
            )
        }
        ("ec2", "TerminateInstances" | "StopInstances" | "StartInstances") => {
            let states: Vec<Change> = items(at(resp, "/instancesSet"))
                .iter()
                .filter_map(|i| {
                    Some(Change {
                        field: format!("{}.state", text(i, "/instanceId")?),
                        from: text(i, "/previousState/name"),
                        to: text(i, "/currentState/name")?,
                    })
                })
                .collect();
            let ids: Vec<String> = states.iter().map(|c| c.field.trim_end_matches(".state").to_owned()).collect();
            if ids.is_empty() {
                return None;
            }
            let verb = match base {
                "TerminateInstances" => "terminated",
                "StopInstances" => "stopped",
                _ => "started",
            };
            one(format!("{verb} instance{} {}", if ids.len() > 1 { "s" } else { "" }, list(&ids)), states)
        }
        ("ec2", "CreateRoute" | "ReplaceRoute") => {
            let destination = text(req, "/destinationCidrBlock").or_else(|| text(req, "/destinationIpv6CidrBlock"))?;
            let target = [
                "gatewayId",
                "natGatewayId",
                "instanceId",
                "networkInterfaceId",
                "vpcPeeringConnectionId",
                "transitGatewayId",
            ]
            .iter()
            .find_map(|k| text(req, &format!("/{k}")))
            .unwrap_or_else(|| "?".into());
            one(
                format!("routed {destination} to {target} in route table {}", name?),
                vec![change(&format!("route {destination}"), target)],
            )
        }
        ("ec2", "CreateNetworkAclEntry" | "ReplaceNetworkAclEntry") => {
            let action = text(req, "/ruleAction").unwrap_or_else(|| "allow".into());
            let direction = if text(req, "/egress").as_deref() == Some("true") { "outbound" } else { "inbound" };
            let cidr = text(req, "/cidrBlock").or_else(|| text(req, "/ipv6CidrBlock")).unwrap_or_else(|| "?".into());
            let protocol = text(req, "/aclProtocol").unwrap_or_else(|| "-1".into());
            let ports = protocol_ports(&serde_json::json!({
                "ipProtocol": protocol, "fromPort": text(req, "/portRange/from"), "toPort": text(req, "/portRange/to")
            }));
            let rule = text(req, "/ruleNumber").map(|n| format!(" (rule {n})")).unwrap_or_default();
            let verb = if action == "deny" { "denied" } else { "allowed" };
            one(
                format!("{verb} {direction} {ports} from {cidr} in network ACL {}{rule}", name?),
                vec![change(direction, format!("{action} {ports} {cidr}"))],
            )
        }
        ("autoscaling", "UpdateAutoScalingGroup") => {
            let fields = [("minSize", "min"), ("maxSize", "max"), ("desiredCapacity", "desired")];
            let changes: Vec<Change> =
                fields.iter().filter_map(|(k, label)| Some(change(label, text(req, &format!("/{k}"))?))).collect();
            if changes.is_empty() {
                return one(format!("changed auto scaling group {}", name?), vec![]);
            }
            let parts: Vec<String> = changes.iter().map(|c| format!("{} {}", c.field, c.to)).collect();
            one(format!("set the size of auto scaling group {} to {}", name?, parts.join(", ")), changes)
        }
        ("autoscaling", "SetDesiredCapacity") => {
            let desired = text(req, "/desiredCapacity")?;
            one(
                format!("set the desired capacity of auto scaling group {} to {desired}", name?),
                vec![change("desired", desired)],
            )
        }
        ("lambda", "UpdateFunctionCode") => {
            let sha = text(resp, "/codeSha256");
            let text = format!("changed the code of function {}", name?);
            one(text, sha.map(|s| vec![change("code_sha256", s)]).unwrap_or_default())
        }
        ("lambda", "UpdateFunctionConfiguration") => {
            let obj = req.as_object()?;
            let fields: Vec<String> =
                obj.keys().filter(|k| !["functionName", "revisionId"].contains(&k.as_str())).cloned().collect();
            let changes = fields
                .iter()
                .map(|f| {
                    change(
                        f,
                        if f == "environment" {
                            "changed".into()
                        } else {
                            text(req, &format!("/{f}")).unwrap_or_else(|| "changed".into())
                        },
                    )
                })
                .collect();
            one(
                format!(
                    "changed {} of function {}",
                    if fields.is_empty() { "the configuration".into() } else { list(&fields) },
                    name?
                ),
                changes,
            )
        }
        ("lambda", "AddPermission") => {
            let principal = text(req, "/principal").unwrap_or_else(|| "?".into());
            let action = text(req, "/action").unwrap_or_else(|| "lambda:InvokeFunction".into());
            let who = if principal == "*" { "anyone".to_owned() } else { principal.clone() };
            one(
                format!("allowed {who} to call {action} on function {}", name?),
                vec![change("permissions", format!("+{principal}"))],
            )
        }
        ("ecs", "UpdateService") => {
            let service_name = name?;
            let mut changes = Vec::new();
            let mut parts = Vec::new();
            if let Some(n) = text(req, "/desiredCount") {
                parts.push(format!("set the desired count of service {service_name} to {n}"));
                changes.push(change("desired_count", n));
            }
            if let Some(t) = text(req, "/taskDefinition") {
                parts.push(format!("deployed {} to service {service_name}", short_policy(&t)));
                changes.push(change("task_definition", t));
            }
            if parts.is_empty() {
                return None;
            }
            one(parts.join("; "), changes)
        }
        ("organizations", "LeaveOrganization") => {
            one(format!("took account {} out of its organization", name?), vec![change("organization", "none")])
        }
        ("guardduty", "DeleteDetector") => {
            one(format!("turned off GuardDuty (deleted detector {})", name?), vec![change("detector", "deleted")])
        }
        ("config", "StopConfigurationRecorder") => {
            one(format!("stopped the AWS Config recorder {}", name?), vec![change("recording", "off")])
        }
        ("config", "DeleteConfigurationRecorder") => {
            one(format!("deleted the AWS Config recorder {}", name?), vec![change("recorder", "deleted")])
        }
        ("monitoring", "DeleteAlarms") => {
            let alarms = strings(at(req, "/alarmNames"));
            one(
                format!("deleted alarm{} {}", if alarms.len() > 1 { "s" } else { "" }, list(&alarms)),
                alarms.iter().map(|a| change("alarms", format!("-{a}"))).collect(),
            )
        }
        ("monitoring", "DisableAlarmActions") => {
            let alarms = strings(at(req, "/alarmNames"));
            one(
                format!("turned off the actions of alarm{} {}", if alarms.len() > 1 { "s" } else { "" }, list(&alarms)),
                vec![change("actions_enabled", "false")],
            )
        }
        ("secretsmanager", "DeleteSecret") => {
            let now = text(req, "/forceDeleteWithoutRecovery").as_deref() == Some("true");
            let days = text(req, "/recoveryWindowInDays").unwrap_or_else(|| "30".into());
            let when =
                if now { " at once, without recovery".to_owned() } else { format!(", recoverable for {days} days") };
            one(
                format!("deleted secret {}{when}", name?),
                vec![change("deleted", if now { "now".into() } else { format!("in {days} days") })],
            )
        }
        _ => None,
    }
}
