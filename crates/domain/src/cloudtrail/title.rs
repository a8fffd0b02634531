//! Titles a person reads at a glance: "alice deleted security group sg-0abc (ec2)".

/// `DeleteDBSnapshot` → `Delete`, `DB`, `Snapshot`: an upper-case letter starts a word after a
/// lower-case one, or when it begins a capitalised word after an acronym.
fn split_camel(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words: Vec<String> = Vec::new();
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1);
        let starts_word =
            c.is_uppercase() && prev.is_some_and(|p| !p.is_uppercase() || next.is_some_and(|n| n.is_lowercase()));
        match words.last_mut() {
            Some(word) if !starts_word => word.push(c),
            _ => words.push(c.to_string()),
        }
    }
    words
}

/// Past tense of the verbs event names start with; `None` for verbs read as "called".
fn past_tense(verb: &str) -> Option<&'static str> {
    Some(match verb {
        "Create" => "created",
        "Delete" => "deleted",
        "Put" => "put",
        "Update" => "updated",
        "Modify" => "modified",
        "Change" => "changed",
        "Attach" => "attached",
        "Detach" => "detached",
        "Associate" => "associated",
        "Disassociate" => "disassociated",
        "Run" => "ran",
        "Start" => "started",
        "Stop" => "stopped",
        "Terminate" => "terminated",
        "Reboot" => "rebooted",
        "Authorize" => "authorized",
        "Revoke" => "revoked",
        "Add" => "added",
        "Remove" => "removed",
        "Set" => "set",
        "Enable" => "enabled",
        "Disable" => "disabled",
        "Assume" => "assumed",
        "Get" => "read",
        "List" => "listed",
        "Describe" => "described",
        "Tag" => "tagged",
        "Untag" => "untagged",
        "Register" => "registered",
        "Deregister" => "deregistered",
        "Import" => "imported",
        "Export" => "exported",
        "Upload" => "uploaded",
        "Restore" => "restored",
        "Reset" => "reset",
        "Replace" => "replaced",
        "Apply" => "applied",
        "Cancel" => "cancelled",
        "Invoke" => "invoked",
        "Publish" => "published",
        "Send" => "sent",
        "Copy" => "copied",
        "Accept" => "accepted",
        "Reject" => "rejected",
        "Allocate" => "allocated",
        "Release" => "released",
        _ => return None,
    })
}

/// The longest title, in characters: what a timeline row and a PagerDuty summary show whole.
pub const MAX_TITLE_CHARS: usize = 200;

/// At most `max` characters of `text`, with `…` when cut; never empty (`fallback` instead).
fn clipped(text: &str, max: usize, fallback: &str) -> String {
    let text = text.trim();
    let text = if text.is_empty() { fallback } else { text };
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// "alice deleted security group sg-0abc (ec2)"; a failed call reads
/// "alice tried to delete security group sg-0abc (ec2): AccessDenied". Never empty, and at most
/// [`MAX_TITLE_CHARS`] characters however long the record's names are.
pub fn title(
    actor: Option<&str>,
    event_name: &str,
    event_source: &str,
    resource: Option<&str>,
    error_code: Option<&str>,
) -> String {
    // Each part is bounded so that one long name does not push the others out.
    let actor = clipped(actor.unwrap_or(""), 60, "someone");
    let event_name = clipped(event_name, 60, "an API");
    let event_source = clipped(event_source, 40, "aws");
    let resource = resource.map(|r| clipped(r, 60, "?"));
    let error_code = error_code.map(|e| clipped(e, 40, "error"));
    let whole = sentence(&actor, &event_name, &event_source, resource.as_deref(), error_code.as_deref());
    clipped(&whole, MAX_TITLE_CHARS, "someone changed something")
}

/// "alice opened tcp/22 to 0.0.0.0/0 on security group sg-0abc": the actor and what the change
/// did, bounded like every title.
pub fn summary_title(actor: Option<&str>, summary: &str) -> String {
    let actor = clipped(actor.unwrap_or(""), 60, "someone");
    clipped(&format!("{actor} {}", summary.trim()), MAX_TITLE_CHARS, "someone changed something")
}

fn sentence(
    actor: &str,
    event_name: &str,
    event_source: &str,
    resource: Option<&str>,
    error_code: Option<&str>,
) -> String {
    let service = event_source.strip_suffix(".amazonaws.com").unwrap_or(event_source);
    if event_name == "ConsoleLogin" {
        return match error_code {
            Some(e) => format!("{actor} failed to sign in to the console ({e})"),
            None => format!("{actor} signed in to the console"),
        };
    }
    // Drop API version suffixes such as "UpdateFunctionCode20150331v2".
    let base = event_name.trim_end_matches(|c: char| c.is_ascii_digit() || c == 'v');
    let base = if base.is_empty() { event_name } else { base };
    let words: Vec<String> = split_camel(base).into_iter().filter(|w| !w.trim().is_empty()).collect();
    let object = |from: usize| {
        let noun = words[from..].iter().map(|w| w.to_lowercase()).collect::<Vec<_>>().join(" ");
        match resource {
            Some(r) if noun.is_empty() => r.to_owned(),
            Some(r) => format!("{noun} {r}"),
            None => noun,
        }
    };
    let (what, verb_past, verb_base) =
        match words.first().map(String::as_str).and_then(|v| past_tense(v).map(|p| (v, p))) {
            Some((verb, past)) => (object(1), past.to_owned(), verb.to_lowercase()),
            None => (
                resource.map(str::to_owned).unwrap_or_default(),
                format!("called {event_name}"),
                format!("call {event_name}"),
            ),
        };
    let what = if what.is_empty() { String::new() } else { format!(" {what}") };
    match error_code {
        Some(error) => format!("{actor} tried to {verb_base}{what} ({service}): {error}"),
        None => format!("{actor} {verb_past}{what} ({service})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_read_like_sentences() {
        assert_eq!(
            title(Some("alice"), "DeleteSecurityGroup", "ec2.amazonaws.com", Some("sg-0abc"), None),
            "alice deleted security group sg-0abc (ec2)"
        );
        assert_eq!(
            title(Some("bob"), "PutBucketPolicy", "s3.amazonaws.com", Some("logs"), None),
            "bob put bucket policy logs (s3)"
        );
        assert_eq!(
            title(
                Some("eve"),
                "AuthorizeSecurityGroupIngress",
                "ec2.amazonaws.com",
                Some("sg-1"),
                Some("UnauthorizedOperation")
            ),
            "eve tried to authorize security group ingress sg-1 (ec2): UnauthorizedOperation"
        );
        assert_eq!(
            title(Some("ci"), "UpdateFunctionCode20150331v2", "lambda.amazonaws.com", Some("api"), None),
            "ci updated function code api (lambda)"
        );
        assert_eq!(title(None, "ConsoleLogin", "signin.amazonaws.com", None, None), "someone signed in to the console");
        assert_eq!(
            title(Some("x"), "GenerateDataKey", "kms.amazonaws.com", None, None),
            "x called GenerateDataKey (kms)"
        );
    }

    #[test]
    fn long_names_are_cut_and_nothing_is_empty() {
        let long = "x".repeat(5000);
        let t = title(Some(&long), &long, &long, Some(&long), Some(&long));
        assert!(t.chars().count() <= MAX_TITLE_CHARS, "{t}");
        assert!(t.contains('…'));
        assert_eq!(title(Some("  "), "", "", Some(""), None), "someone called an API ? (aws)");
    }
}
