//! Start-up validation vocabulary shared by every module's config section. Each module owns its
//! section (struct, defaults, checks); they all answer with an [`Invalid`] that names the dotted
//! key, so a bad config fails start-up with one message an operator can act on. A leaf module:
//! it imports nothing from the crate, so every section can use it without a cycle. [`librdkafka`]
//! vets the Kafka client properties a section passes through.

pub mod librdkafka;

/// A value parsed but is out of range: the dotted key and what is wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` {problem}")]
pub struct Invalid {
    /// Dotted path of the offending key (`server.max_candidates`, `scenes[1].name`).
    pub key: String,
    /// What is wrong and what is allowed.
    pub problem: String,
}

/// `Err(Invalid)` unless `min <= value <= max`.
pub fn in_range(key: &str, value: usize, min: usize, max: usize) -> Result<(), Invalid> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(key, &format!("must be between {min} and {max} (got {value})")))
    }
}

/// The error for `key`.
pub fn invalid(key: &str, problem: &str) -> Invalid {
    Invalid { key: key.to_owned(), problem: problem.to_owned() }
}

/// A bearer token must be non-empty printable ASCII without spaces (it goes into a header).
pub fn bearer_token(key: &str, token: Option<&str>) -> Result<(), Invalid> {
    if token.is_some_and(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic())) {
        return Err(invalid(key, "must be non-empty printable ASCII without spaces"));
    }
    Ok(())
}

/// `url` with the password of its userinfo replaced by `***`, for logs and error messages:
/// `redis://user:secret@host:6379/0` → `redis://user:***@host:6379/0`. Anything else is unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let authority_end = url[scheme_end..].find('/').map_or(url.len(), |i| scheme_end + i);
    let Some(at) = url[scheme_end..authority_end].rfind('@').map(|i| scheme_end + i) else {
        return url.to_owned();
    };
    match url[scheme_end..at].find(':').map(|i| scheme_end + i) {
        Some(colon) => format!("{}***{}", &url[..=colon], &url[at..]),
        None => url.to_owned(),
    }
}
