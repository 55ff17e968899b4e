//! Parsing JSON input so that an error names the field at fault
//! (`client.client_id`, `scopes[2]`) and where it is in the text.

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
#[error("{}line {line}, column {column}: {message}", field.as_ref().map(|f| format!("field {f}: ")).unwrap_or_default())]
pub struct InputError {
    pub field: Option<String>,
    pub message: String,
    pub line: usize,
    pub column: usize,
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, InputError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = (inner.line(), inner.column());
        let message = strip_position(&inner.to_string());
        InputError {
            field: field_name(&path, &message),
            message,
            line,
            column,
        }
    })?;
    de.end().map_err(|e| InputError {
        field: None,
        message: "trailing data after the JSON value".to_string(),
        line: e.line(),
        column: e.column(),
    })?;
    Ok(value)
}

/// serde_json appends " at line L column C"; the position is kept apart.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// serde reports a missing field at its parent's path, with the name in
/// backticks; join them so the caller sees the full field path.
fn field_name(path: &str, message: &str) -> Option<String> {
    let parent = (path != ".").then(|| path.to_string());
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (parent, missing) {
        (Some(parent), Some(name)) => Some(format!("{parent}.{name}")),
        (None, Some(name)) => Some(name.to_string()),
        (parent, None) => parent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConnectionRequest;

    fn field_of(json: &str) -> Option<String> {
        parse_json::<ConnectionRequest>(json.as_bytes())
            .unwrap_err()
            .field
    }

    #[test]
    fn names_the_field() {
        let base = r#"{"scopes":["a"],"metadata_source":{"kind":"cimd","authorization_server":{"issuer":"https://as"}},"client":{}}"#;
        assert_eq!(field_of(base).as_deref(), Some("client.client_id"));
        let wrong_type = base.replace(r#"["a"]"#, r#"["a", 3]"#);
        assert_eq!(field_of(&wrong_type).as_deref(), Some("scopes[1]"));
        let bad_kind = base.replace("cimd", "oidc");
        assert_eq!(field_of(&bad_kind).as_deref(), Some("metadata_source.kind"));
        assert_eq!(field_of(r#"{"scope":[]}"#).as_deref(), Some("scope"));
    }
}
