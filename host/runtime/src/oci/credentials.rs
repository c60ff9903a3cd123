//! Registry logins from a docker `config.json`, the file a `kubernetes.io/dockerconfigjson`
//! Secret mounts: `auths.<host>.auth` (base64 `user:password`) or `username`/`password`. Read at
//! each fetch, so a Secret's update is seen without a restart.
use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

use super::OciError;

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, Login>,
}

#[derive(Deserialize)]
struct Login {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// Largest config file read: a login is a few hundred bytes.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The login for `registry` (`HOST[:PORT]`) in `config`, if any; none when the file is not
/// there (an optional Secret that does not exist).
pub(super) fn login_for(config: &Path, registry: &str) -> Result<Option<RegistryAuth>, OciError> {
    let shown = config.display();
    let len = match std::fs::metadata(config) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(OciError::Credentials(format!("cannot read {shown}: {e}"))),
    };
    if len > MAX_CONFIG_BYTES {
        return Err(OciError::Credentials(format!(
            "{shown} is {len} bytes; a registry config is at most {MAX_CONFIG_BYTES}"
        )));
    }
    let text = std::fs::read(config)
        .map_err(|e| OciError::Credentials(format!("cannot read {shown}: {e}")))?;
    parse(&text, registry).map_err(|e| OciError::Credentials(format!("{shown}: {e}")))
}

fn parse(text: &[u8], registry: &str) -> Result<Option<RegistryAuth>, String> {
    let config: DockerConfig =
        serde_json::from_slice(text).map_err(|e| format!("not a docker config.json ({e})"))?;
    let Some((key, login)) = config
        .auths
        .iter()
        .find(|(key, _)| host_of(key).eq_ignore_ascii_case(registry))
    else {
        return Ok(None);
    };
    if let (Some(user), Some(password)) = (&login.username, &login.password) {
        return Ok(Some(RegistryAuth::Basic(user.clone(), password.clone())));
    }
    let Some(auth) = &login.auth else {
        return Err(format!(
            "auths.{key} has neither auth nor username and password"
        ));
    };
    let not_a_login = || format!("auths.{key}.auth is not base64 of user:password");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| not_a_login())?;
    let decoded = String::from_utf8(decoded).map_err(|_| not_a_login())?;
    let (user, password) = decoded.split_once(':').ok_or_else(not_a_login)?;
    Ok(Some(RegistryAuth::Basic(user.into(), password.into())))
}

/// `https://host:port/v1/` -> `host:port`: docker writes keys with and without scheme and path.
fn host_of(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(auth: Option<RegistryAuth>) -> Option<(String, String)> {
        match auth? {
            RegistryAuth::Basic(u, p) => Some((u, p)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn logins_are_found_by_host_in_either_form() {
        let text = br#"{"auths": {
            "https://reg.example:5000/v1/": {"auth": "dXNlcjpwYTpzcw=="},
            "other.example": {"username": "u2", "password": "p2"}
        }}"#;
        assert_eq!(
            basic(parse(text, "reg.example:5000").unwrap()),
            Some(("user".into(), "pa:ss".into()))
        );
        assert_eq!(
            basic(parse(text, "other.example").unwrap()),
            Some(("u2".into(), "p2".into()))
        );
        assert!(
            parse(text, "reg.example").unwrap().is_none(),
            "the port counts"
        );
        assert!(parse(br#"{}"#, "x").unwrap().is_none());
    }

    #[test]
    fn a_broken_login_says_which_key() {
        let err = parse(br#"{"auths": {"r.io": {"auth": "%%%"}}}"#, "r.io").unwrap_err();
        assert_eq!(err, "auths.r.io.auth is not base64 of user:password");
        let err = parse(br#"{"auths": {"r.io": {"auth": "bm9jb2xvbg=="}}}"#, "r.io").unwrap_err();
        assert!(err.contains("user:password"), "{err}");
        let err = parse(br#"{"auths": {"r.io": {}}}"#, "r.io").unwrap_err();
        assert!(err.contains("neither auth"), "{err}");
        let err = parse(b"not json", "r.io").unwrap_err();
        assert!(err.starts_with("not a docker config.json"), "{err}");
    }
}
