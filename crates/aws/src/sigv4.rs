//! Verifying an AWS Signature Version 4 on a request made to changetrail by an AWS SDK (the
//! cloudtrail-data `PutAuditEvents` of a channel). The signature is computed again with the
//! SDK's own signer (`aws-sigv4`) over exactly the headers the client signed, with the secret of
//! the access key it names, and compared in constant time.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use subtle::ConstantTimeEq;

/// AWS refuses a request signed more than 15 minutes from its own clock.
pub const CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// A request as it arrived.
pub struct ArrivedRequest<'a> {
    pub method: &'a str,
    /// The path and query exactly as sent (still percent-encoded).
    pub path_and_query: &'a str,
    /// Every header whose value is text, names lower-cased.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Why a signature does not prove the request, as AWS names it (`x-amzn-ErrorType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureRefusal {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> SignatureRefusal {
    SignatureRefusal { code, message: message.into() }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let mut scope = credential?.split('/');
    let (access_key_id, date, region, service, terminal) =
        (scope.next()?, scope.next()?, scope.next()?, scope.next()?, scope.next()?);
    if terminal != "aws4_request" || scope.next().is_some() {
        return None;
    }
    Some(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

fn header<'a>(request: &'a ArrivedRequest<'_>, name: &str) -> Option<&'a str> {
    request.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let at = time::PrimitiveDateTime::parse(value, format).ok()?.assume_utc();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.unix_timestamp()).ok()?))
}

/// The access key id a request claims to be signed with, if its `Authorization` names one;
/// otherwise why the request is not signed, as AWS says it.
pub fn claimed_access_key(request: &ArrivedRequest<'_>) -> Result<String, SignatureRefusal> {
    authorization(request).map(|a| a.access_key_id.to_owned())
}

/// The request's `Authorization`, read, or why it cannot be, as AWS says it.
fn authorization<'a>(request: &'a ArrivedRequest<'_>) -> Result<Authorization<'a>, SignatureRefusal> {
    let Some(value) = header(request, "authorization") else {
        return Err(refuse("MissingAuthenticationTokenException", "Missing Authentication Token"));
    };
    parse_authorization(value).ok_or_else(|| {
        refuse("IncompleteSignatureException", "the Authorization header is not an AWS4-HMAC-SHA256 signature")
    })
}

/// Checks a request's SigV4 signature for `service`, with `secret` the secret access key of the
/// access key id it names (the caller looked it up with [`claimed_access_key`]). `now` is the
/// server's clock.
pub fn verify(
    request: &ArrivedRequest<'_>,
    service: &str,
    secret: &str,
    now: SystemTime,
) -> Result<(), SignatureRefusal> {
    let auth = authorization(request)?;
    if auth.service != service {
        return Err(refuse(
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{service}'."),
        ));
    }
    let amz_date = header(request, "x-amz-date")
        .ok_or_else(|| refuse("IncompleteSignatureException", "the request has no X-Amz-Date header"))?;
    let signed_at = parse_amz_date(amz_date)
        .ok_or_else(|| refuse("IncompleteSignatureException", "X-Amz-Date is not of the form 20261201T120000Z"))?;
    if !amz_date.starts_with(auth.date) {
        return Err(refuse("InvalidSignatureException", "the credential's date is not the date X-Amz-Date names"));
    }
    let skew = now.duration_since(signed_at).or_else(|e| Ok::<_, ()>(e.duration())).unwrap_or_default();
    if skew > CLOCK_SKEW {
        return Err(refuse(
            "InvalidSignatureException",
            format!("Signature expired: {amz_date} is more than 15 minutes from the server's time"),
        ));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(refuse("InvalidSignatureException", "the signature must cover the Host header"));
    }
    let mut signed: Vec<(&str, &str)> = Vec::new();
    for name in &auth.signed_headers {
        let values: Vec<&str> = request.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
        match values.as_slice() {
            [] => return Err(refuse("InvalidSignatureException", format!("the signed header {name} is missing"))),
            many => signed.extend(many.iter().map(|v| (*name, *v))),
        }
    }
    let identity = Credentials::new(auth.access_key_id, secret, None, None, "changetrail").into();
    let mut settings = SigningSettings::default();
    // Sign exactly what the client signed: none of the signer's own exclusions apply.
    settings.excluded_headers = None;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(service)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|e| refuse("InvalidSignatureException", format!("cannot check the signature: {e}")))?
        .into();
    let signable = SignableRequest::new(
        request.method,
        request.path_and_query,
        signed.into_iter(),
        SignableBody::Bytes(request.body),
    )
    .map_err(|e| refuse("InvalidSignatureException", format!("cannot check the signature: {e}")))?;
    let expected = sign(signable, &params)
        .map_err(|e| refuse("InvalidSignatureException", format!("cannot check the signature: {e}")))?;
    if bool::from(expected.signature().as_bytes().ct_eq(auth.signature.as_bytes())) {
        Ok(())
    } else {
        Err(refuse(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ))
    }
}
