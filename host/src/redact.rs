//! Secrets that ride in model URLs (userinfo, the query of a presigned URL) kept out of what
//! every reader of a model sees: status messages, conditions and Events. The full URL stays only
//! in the download Job's arguments, where the downloader needs it.
use url::Url;

const HIDDEN: &str = "REDACTED";

/// `url` with its userinfo and its query values replaced by `REDACTED` (query keys kept, so a
/// reader still sees it was e.g. a presigned URL) and no fragment; unchanged when it holds
/// neither, or does not parse.
pub fn url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return url.to_string();
    };
    let has_userinfo = !parsed.username().is_empty() || parsed.password().is_some();
    if !has_userinfo && parsed.query().is_none() && parsed.fragment().is_none() {
        return url.to_string();
    }
    if has_userinfo {
        let _ = parsed.set_username(HIDDEN);
        let _ = parsed.set_password(None);
    }
    if parsed.query().is_some() {
        let keys: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let mut pairs = parsed.query_pairs_mut();
        pairs.clear();
        for k in keys {
            pairs.append_pair(&k, HIDDEN);
        }
    }
    parsed.set_fragment(None);
    parsed.to_string()
}

/// `text` with every URL in it redacted as [`url`] does (a URL: `scheme://` up to whitespace, a
/// quote or a bracket).
pub fn urls_in(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        let start = rest[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[sep..]
            .find(|c: char| {
                c.is_whitespace()
                    || matches!(
                        c,
                        '"' | '\'' | '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}' | '`'
                    )
            })
            .map_or(rest.len(), |i| sep + i);
        // A sentence's own punctuation after the URL stays outside it.
        let trimmed = rest[start..end].trim_end_matches(['.', ',', ';', ':']);
        let end = start + trimmed.len();
        out.push_str(&rest[..start]);
        if start == sep {
            out.push_str(&rest[start..end]);
        } else {
            out.push_str(&url(&rest[start..end]));
        }
        rest = &rest[end.max(sep + 3)..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_query_values_are_hidden() {
        assert_eq!(
            url("https://alice:s3cret@example.com/m.tar.gz"),
            "https://REDACTED@example.com/m.tar.gz"
        );
        assert_eq!(
            url(
                "https://bucket.s3.amazonaws.com/m.bin?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc#frag"
            ),
            "https://bucket.s3.amazonaws.com/m.bin?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"
        );
        assert_eq!(
            url("https://token@example.com/x"),
            "https://REDACTED@example.com/x"
        );
        let plain = "https://example.com/models/m.bin";
        assert_eq!(url(plain), plain);
        assert_eq!(url("s3://bucket/key"), "s3://bucket/key");
        assert_eq!(url("not a url"), "not a url");
    }

    #[test]
    fn every_url_in_a_message_is_redacted() {
        let msg = "download of https://u:p@h.example/m.bin?sig=1 failed (NotFound): HTTP 404 Not Found from https://u:p@h.example/m.bin?sig=1.";
        let out = urls_in(msg);
        assert!(!out.contains("u:p") && !out.contains("sig=1"), "{out}");
        assert_eq!(
            out,
            "download of https://REDACTED@h.example/m.bin?sig=REDACTED failed (NotFound): HTTP 404 Not Found from https://REDACTED@h.example/m.bin?sig=REDACTED."
        );
        assert_eq!(urls_in("no url here"), "no url here");
        assert_eq!(urls_in("odd :// text"), "odd :// text");
        assert_eq!(
            urls_in("(see \"http://a:b@c/d\")"),
            "(see \"http://REDACTED@c/d\")"
        );
    }
}
