//! Helpers every connector uses to read its table of the configuration and its
//! checkpoint: typed config with errors that name the key and never echo a value,
//! secrets inline or from a file, and the state an incremental sync resumes from.
//! Here rather than in the HTTP client so connectors that read files use them too.

use crate::ConnectorError;

/// A connector's table of the configuration, typed: `type` removed, errors naming the
/// offending key.
pub fn source_config<T: serde::de::DeserializeOwned>(
    table: &serde_json::Value,
) -> Result<T, ConnectorError> {
    let mut table = table.clone();
    if let Some(map) = table.as_object_mut() {
        map.remove("type");
    }
    serde_json::from_value(table).map_err(|e| ConnectorError::Config {
        key: serde_field(&e.to_string()),
        reason: serde_reason(&e.to_string()),
    })
}

/// A secret from the config: inline (for tests and simulators), or the first line of a
/// file (`<key>_file`, relative to the config file). The environment reaches the inline
/// form through `CROSSDEX__SOURCES__<NAME>__<KEY>`.
pub fn secret(
    key: &str,
    inline: Option<&str>,
    file: Option<&std::path::Path>,
    base_dir: &std::path::Path,
) -> Result<String, ConnectorError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConnectorError::Config {
            key: key.to_owned(),
            reason: format!("give `{key}` or `{key}_file`, not both"),
        }),
        (Some(s), None) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        (None, Some(f)) => {
            let path = if f.is_relative() {
                base_dir.join(f)
            } else {
                f.to_owned()
            };
            let text = std::fs::read_to_string(&path).map_err(|e| ConnectorError::Config {
                key: format!("{key}_file"),
                reason: format!("cannot read {}: {e}", path.display()),
            })?;
            let line = text.lines().next().unwrap_or("").trim().to_owned();
            if line.is_empty() {
                return Err(ConnectorError::Config {
                    key: format!("{key}_file"),
                    reason: format!("{} is empty", path.display()),
                });
            }
            Ok(line)
        }
        _ => Err(ConnectorError::Config {
            key: key.to_owned(),
            reason: format!(
                "missing; set `{key}_file` to a file holding it, or the environment variable \
                 CROSSDEX__SOURCES__<NAME>__{}",
                key.to_uppercase()
            ),
        }),
    }
}

/// The field named in a serde error ("unknown field `pth`"), for config errors.
pub fn serde_field(msg: &str) -> String {
    // Only these messages quote a field name; the others quote a value, which may be a
    // secret.
    let names_a_field = ["missing field", "unknown field", "duplicate field"]
        .iter()
        .any(|p| msg.starts_with(p));
    if !names_a_field {
        return String::new();
    }
    msg.split('`').nth(1).unwrap_or("").to_owned()
}

/// A serde error's text without the values it quotes: `invalid type: integer
/// `987654321`, expected a string` names a type, never the value, which may be a
/// password.
pub fn serde_reason(msg: &str) -> String {
    if !(msg.starts_with("invalid type") || msg.starts_with("invalid value")) {
        return msg.to_owned();
    }
    let mut out = String::with_capacity(msg.len());
    let mut quoted = false;
    for c in msg.chars() {
        if c == '`' {
            quoted = !quoted;
            continue;
        }
        if !quoted {
            out.push(c);
        }
    }
    out.replace(" ,", ",").replace("  ", " ")
}

/// A config error unless `value` is at least 1.
pub fn at_least_one(key: &str, value: usize) -> Result<(), ConnectorError> {
    if value == 0 {
        return Err(ConnectorError::Config {
            key: key.to_owned(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// The checkpoint state an incremental sync resumes from; `None` for a full sync or a
/// checkpoint of another shape (which then runs as a full sync).
pub fn resume<T: serde::de::DeserializeOwned>(request: &crate::SyncRequest) -> Option<T> {
    match request.mode {
        crate::SyncMode::Incremental => request.checkpoint.as_ref().and_then(|c| c.read().ok()),
        crate::SyncMode::Full => None,
    }
}
