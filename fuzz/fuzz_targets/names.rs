//! Name derivation (`host/src/names.rs`) on arbitrary model names.
//!
//! Input: `MODEL_A \0 MODEL_B \0 REVISIONS` (UTF-8, invalid bytes replaced; missing parts
//! empty). The first 10 bytes of REVISIONS make revision 1 and the next 10 revision 2, each byte
//! mapped to a hex digit (revisions are 10 hex digits, `names::revision`). The namespace is not
//! an input: no name depends on it.
//!
//! Properties, for any string: no panic; every object name is a DNS-1035 label (what Services
//! need; it also makes a valid DNS-1123 label and subdomain) of at most 63 characters; label
//! values are valid label values; the same input gives the same names. For two distinct valid
//! model names (DNS-1123 subdomains, what the apiserver admits) in one namespace: no object name
//! of one kind is shared, and neither is the model label value; one model's two revisions never
//! share a claim or a Job.
//!
//! One collision class is known and excluded (hack/README.md, "Fuzzing"): a name taken as it is
//! can spell another name's cut-and-hashed form (`names::object_name("a.b", s)` is
//! `a-b-<hash of "a.b">-s`, which is also what the valid model name `a-b-<that hash>` gives).
//! Collisions between two hashed forms (32 bits of SHA-256) or two names taken as they are are
//! still checked. With `FUZZ_NAMES_KNOWN_COLLISIONS=1` in the environment the known class fails
//! too: `cargo +nightly fuzz run names fuzz/seeds/names/known-collision` shows it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mlmodel_operator::names::{Names, label_value, object_name, owned_labels, selector_labels};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let a = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let b = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let revs = parts.next().unwrap_or_default();
    let hex = |bytes: &[u8]| -> String {
        (0..10)
            .map(|i| {
                let n = bytes.get(i).copied().unwrap_or(0) & 15;
                char::from_digit(u32::from(n), 16).unwrap()
            })
            .collect()
    };
    let r1 = hex(revs);
    let r2 = hex(revs.get(10..).unwrap_or_default());

    let na = checked(&a, &r1);
    let nb = checked(&b, &r1);
    let na2 = checked(&a, &r2);

    if r1 != r2 {
        assert_ne!(na.volume, na2.volume, "{a:?}: two revisions, one claim");
        assert_ne!(na.job, na2.job, "{a:?}: two revisions, one Job");
    }
    if a == b || !is_dns_subdomain(&a) || !is_dns_subdomain(&b) {
        return;
    }
    for (kind, x, y, suffix) in [
        ("claim", &na.volume, &nb.volume, format!("model-{r1}")),
        ("Job", &na.job, &nb.job, format!("download-{r1}")),
        ("Deployment", &na.workload, &nb.workload, "server".into()),
        ("Service", &na.service, &nb.service, String::new()),
        ("ConfigMap", &na.config, &nb.config, "config".into()),
    ] {
        if x == y && (report_known() || kept(&a, &suffix) == kept(&b, &suffix)) {
            panic!("{kind} name {x:?} derived from both {a:?} and {b:?}");
        }
    }
    let (la, lb) = (label_value(&a), label_value(&b));
    if la == lb && (report_known() || (la == a) == (lb == b)) {
        panic!("label value {la:?} derived from both {a:?} and {b:?}");
    }
});

/// Whether the known collision class fails too (`FUZZ_NAMES_KNOWN_COLLISIONS=1`).
fn report_known() -> bool {
    static KNOWN: OnceLock<bool> = OnceLock::new();
    *KNOWN.get_or_init(|| std::env::var_os("FUZZ_NAMES_KNOWN_COLLISIONS").is_some_and(|v| v == "1"))
}

/// The names of `model`, checked for validity and stability.
fn checked(model: &str, revision: &str) -> Names {
    let names = Names::new(model, revision);
    for (what, n) in [
        ("volume", &names.volume),
        ("job", &names.job),
        ("workload", &names.workload),
        ("service", &names.service),
        ("config", &names.config),
        ("model", &names.model),
    ] {
        assert!(is_dns1035(n), "{what} of {model:?}: {n:?}");
    }
    assert_eq!(names, Names::new(model, revision), "unstable");
    let label = label_value(model);
    assert!(
        is_label_value(&label),
        "label value of {model:?}: {label:?}"
    );
    for labels in [selector_labels(model), owned_labels(model)] {
        for v in labels.values() {
            assert!(is_label_value(v), "{v:?}");
        }
    }
    names
}

/// Whether `model` is taken as it is (not cut and hashed) for `suffix`.
fn kept(model: &str, suffix: &str) -> bool {
    let plain = if suffix.is_empty() {
        model.to_string()
    } else {
        format!("{model}-{suffix}")
    };
    object_name(model, suffix) == plain
}

fn is_dns1035(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A label value: empty, or up to 63 of `[A-Za-z0-9_.-]` starting and ending alphanumeric.
fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c)))
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}
