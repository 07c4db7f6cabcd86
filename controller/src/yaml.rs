//! The one place that reads YAML.
//!
//! Every YAML file clou reads goes through [`load_yaml`], so that the YAML
//! crate can be swapped in one file and every error reads the same way:
//! `file:line:col: what is wrong`.
//!
//! The crate is serde-saphyr: it is maintained, never panics on bad input,
//! reports the line and column of type errors as well as syntax errors, and
//! reads `- package: {name: nginx}` as an externally tagged enum without the
//! `singleton_map_recursive` adaptor that serde_norway needs.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A YAML file that could not be read or did not have the expected shape.
#[derive(Debug, thiserror::Error)]
pub struct YamlError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line and column, when the parser knows them.
    pub location: Option<(u64, u64)>,
    /// What is wrong, in the parser's words.
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.path.display(), self.message)
            }
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// Reads and deserialises one YAML file.
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> Result<T, YamlError> {
    let text = std::fs::read_to_string(path).map_err(|err| YamlError {
        path: path.to_owned(),
        location: None,
        message: format!("cannot read the file: {err}"),
    })?;
    parse_yaml(path, &text)
}

/// Deserialises YAML text; `path` is only used in messages.
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str(text).map_err(|err| {
        let location = err.location().map(|loc| (loc.line(), loc.column()));
        YamlError {
            path: path.to_owned(),
            location,
            message: first_line(&err.to_string()),
        }
    })
}

/// Reads a YAML mapping into a list of pairs, keeping the file's order and
/// refusing a key given twice (use with `deserialize_with`).
pub fn ordered_map<'de, D, T>(de: D) -> Result<Vec<(String, T)>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct Visitor<T>(std::marker::PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
        type Value = Vec<(String, T)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out: Vec<(String, T)> = Vec::new();
            while let Some((key, value)) = map.next_entry::<String, T>()? {
                if out.iter().any(|(k, _)| *k == key) {
                    return Err(serde::de::Error::custom(format!("{key:?} is listed twice")));
                }
                out.push((key, value));
            }
            Ok(out)
        }
    }
    de.deserialize_map(Visitor(std::marker::PhantomData))
}

/// serde-saphyr appends a source snippet to its messages; clou prints the
/// location itself, so only the first line is kept.
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        port: u16,
    }

    #[test]
    fn type_error_names_file_line_and_column() {
        let err = parse_yaml::<Doc>(Path::new("inv.yaml"), "name: a\nport: many\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("inv.yaml:2:"), "{text}");
    }

    #[test]
    fn unknown_field_is_refused_with_its_line() {
        let err =
            parse_yaml::<Doc>(Path::new("inv.yaml"), "name: a\nport: 22\nprot: 1\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("inv.yaml:3:"), "{text}");
        assert!(text.contains("prot"), "{text}");
    }

    #[test]
    fn syntax_error_has_a_location() {
        let err = parse_yaml::<Doc>(Path::new("x.yaml"), "name: [a\nport: 1\n").unwrap_err();
        assert!(err.location.is_some(), "{err}");
    }
}
