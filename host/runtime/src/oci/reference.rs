//! `oci://REGISTRY/REPO@sha256:HEX` and `oci://REGISTRY/REPO:TAG`, and the refs file.
use std::fmt;
use std::str::FromStr;

/// A plugin in a registry: by digest (fetched once, verified), or by tag (resolved to a digest).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OciRef {
    /// `HOST[:PORT]`.
    pub registry: String,
    /// The repository path; its last segment names the plugin it is expected to hold.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 lowercase hex>` of the manifest.
    pub digest: Option<String>,
}

pub const SCHEME: &str = "oci://";

impl OciRef {
    /// The plugin this reference is expected to hold: the repository's last segment.
    pub fn plugin_name(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }

    /// The same repository pinned to the manifest `digest` (`sha256:<hex>`).
    pub fn pinned(&self, digest: &str) -> String {
        format!("{SCHEME}{}/{}@{digest}", self.registry, self.repository)
    }

    /// As oci-client addresses it: by digest when there is one.
    pub(super) fn client_ref(&self) -> oci_client::Reference {
        let (registry, repository) = (self.registry.clone(), self.repository.clone());
        match (&self.digest, &self.tag) {
            (Some(d), _) => oci_client::Reference::with_digest(registry, repository, d.clone()),
            (None, Some(t)) => oci_client::Reference::with_tag(registry, repository, t.clone()),
            (None, None) => unreachable!("parsing requires a tag or a digest"),
        }
    }

    /// The same repository at `digest`.
    pub(super) fn at_digest(&self, digest: &str) -> OciRef {
        OciRef {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for OciRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "{s:?} is not a plugin reference ({why}); expected oci://REGISTRY/REPO@sha256:HEX or oci://REGISTRY/REPO:TAG"
            )
        };
        let rest = s
            .trim()
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("no oci://"))?;
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no repository after the registry"))?;
        if !valid_registry(registry) {
            return Err(bad("the registry is not HOST or HOST:PORT"));
        }
        let (name, digest) = match path.split_once('@') {
            Some((name, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("the digest is not sha256:<hex>"))?;
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(bad("a sha256 digest is 64 hex digits"));
                }
                (name, Some(format!("sha256:{}", hex.to_ascii_lowercase())))
            }
            None => (path, None),
        };
        // A tag follows the last `:` of the last segment (the registry's port is gone already).
        let last = name.rsplit('/').next().unwrap_or(name);
        let (repository, tag) = match last.split_once(':') {
            Some((_, tag)) => (&name[..name.len() - tag.len() - 1], Some(tag.to_string())),
            None => (name, None),
        };
        if !valid_repository(repository) {
            return Err(bad(
                "the repository is lowercase path segments of a-z, 0-9 and . _ -",
            ));
        }
        if let Some(tag) = &tag
            && !valid_tag(tag)
        {
            return Err(bad("a tag is at most 128 of A-Z a-z 0-9 . _ -"));
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad("give a :TAG or an @sha256: digest"));
        }
        Ok(OciRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }
}

fn valid_registry(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (r, None),
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && !host.starts_with(['-', '.'])
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Distribution's grammar: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` segments joined by `/`.
fn valid_repository(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 255
        && r.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && seg.starts_with(|c: char| c.is_ascii_alphanumeric())
                && seg.ends_with(|c: char| c.is_ascii_alphanumeric())
                && !seg.contains("..")
                && !seg.contains("___")
        })
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The references of a refs file, one a line (`#` starts a comment); the lines that are not
/// references, as `line N: why`.
pub(crate) fn parse_refs_file(text: &str) -> (Vec<OciRef>, Vec<String>) {
    let mut refs = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<OciRef>() {
            Ok(r) => refs.push(r),
            Err(e) => errors.push(format!("line {}: {e}", n + 1)),
        }
    }
    (refs, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_by_digest_and_by_tag_parse_and_print_back() {
        let r: OciRef = format!("oci://127.0.0.1:5000/plugins/triton@sha256:{HEX}")
            .parse()
            .unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "plugins/triton");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(&*format!("sha256:{HEX}")));
        assert_eq!(r.plugin_name(), "triton");
        assert_eq!(
            r.to_string(),
            format!("oci://127.0.0.1:5000/plugins/triton@sha256:{HEX}")
        );

        let r: OciRef = "oci://ghcr.io/acme/ml/echo-server:v1.2".parse().unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("ghcr.io", "acme/ml/echo-server", Some("v1.2"))
        );
        assert_eq!(r.plugin_name(), "echo-server");
        assert_eq!(r.to_string(), "oci://ghcr.io/acme/ml/echo-server:v1.2");
        assert_eq!(
            r.pinned(&format!("sha256:{HEX}")),
            format!("oci://ghcr.io/acme/ml/echo-server@sha256:{HEX}")
        );

        let upper: OciRef = format!("oci://r.io/p:v1@sha256:{}", HEX.to_uppercase())
            .parse()
            .unwrap();
        assert_eq!(upper.digest.as_deref(), Some(&*format!("sha256:{HEX}")));
        assert_eq!(upper.tag.as_deref(), Some("v1"));
    }

    #[test]
    fn malformed_references_are_refused_with_the_expected_form() {
        for (bad, why) in [
            ("ghcr.io/a/b:v1", "no oci://"),
            ("oci://ghcr.io", "no repository"),
            ("oci://ghcr.io/a/b", "give a :TAG"),
            ("oci://ghcr.io/A/b:v1", "lowercase"),
            ("oci://ghcr.io/a//b:v1", "lowercase"),
            ("oci://ghcr.io/a/b@sha256:abc", "64 hex"),
            ("oci://ghcr.io/a/b@md5:abc", "sha256:<hex>"),
            ("oci://ghcr.io/a/b:", "a tag is"),
            ("oci://ghcr.io/a/b:v 1", "a tag is"),
            ("oci://gh cr.io/a/b:v1", "HOST:PORT"),
            ("oci://ghcr.io:port/a/b:v1", "HOST:PORT"),
        ] {
            let err = bad.parse::<OciRef>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("oci://REGISTRY/REPO@sha256:HEX"), "{err}");
        }
    }

    #[test]
    fn a_refs_file_has_one_reference_a_line_and_comments() {
        let text = format!(
            "# plugins of team a\n\noci://r.io/a/triton:v1   # pinned later\n  oci://r.io/b@sha256:{HEX}\nnot a ref\n"
        );
        let (refs, errors) = parse_refs_file(&text);
        let shown: Vec<String> = refs.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "oci://r.io/a/triton:v1".to_string(),
                format!("oci://r.io/b@sha256:{HEX}")
            ]
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("line 5: \"not a ref\""), "{errors:?}");
    }
}
