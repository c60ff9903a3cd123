//! Typed access to a step's plugin config, with errors that name the offending key.
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `spec.plugins.config.<step>` of the model: a JSON object (`{}` when unset).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Config(pub Map<String, Value>);

impl Config {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn wrong(key: &str, want: &str) -> String {
        format!("plugin config key `{key}` must be {want}")
    }

    /// A string, or `None` when unset.
    pub fn str(&self, key: &str) -> Result<Option<&str>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(_) => Err(Self::wrong(key, "a non-empty string")),
        }
    }

    /// An integer, or `default` when unset.
    pub fn int(&self, key: &str, default: i64) -> Result<i64, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_i64().ok_or_else(|| Self::wrong(key, "an integer")),
        }
    }

    /// A boolean, or `default` when unset.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| Self::wrong(key, "true or false")),
        }
    }

    /// A map of strings (labels, annotations, node selector), empty when unset.
    pub fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>, String> {
        match self.get(key) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(Self::wrong(key, "a map of strings")),
                })
                .collect(),
            Some(_) => Err(Self::wrong(key, "a map of strings")),
        }
    }

    /// A list of strings, empty when unset.
    pub fn string_list(&self, key: &str) -> Result<Vec<String>, String> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| Self::wrong(key, "a list of strings")),
            Some(_) => Err(Self::wrong(key, "a list of strings")),
        }
    }

    /// A list of objects (container ports, env entries), passed through, empty when unset.
    pub fn object_list(&self, key: &str) -> Result<Vec<Value>, String> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) if a.iter().all(Value::is_object) => Ok(a.clone()),
            Some(_) => Err(Self::wrong(key, "a list of objects")),
        }
    }

    /// Any JSON value, as given.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: Value) -> Config {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn typed_getters_and_errors() {
        let c = config(json!({"image": "x:1", "n": 3, "labels": {"a": "b"}, "bad": 1}));
        assert_eq!(c.str("image").unwrap(), Some("x:1"));
        assert_eq!(c.str("missing").unwrap(), None);
        assert_eq!(c.int("n", 7).unwrap(), 3);
        assert_eq!(c.int("missing", 7).unwrap(), 7);
        assert_eq!(c.string_map("labels").unwrap()["a"], "b");
        assert!(c.str("bad").unwrap_err().contains("`bad`"));
        assert!(c.string_map("bad").is_err());
    }
}
