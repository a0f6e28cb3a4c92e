//! MCP servers: the user's own remote MCP servers (streamable HTTP, never a
//! command), whose tools their agents may call. Enclave keeps each server's
//! URL and secret sealed, lists its tools (and refreshes them on request and
//! when the server says they changed), and an agent enables the tools it
//! wants as `mcp:<server id>:<tool>` in its tool settings. Calls go through
//! the tool loop like any other tool, over the egress client.
//!
//! `api` holds the server functions, `server` (ssr) the queries and the
//! protocol client (the official SDK, `rmcp`), `pages` Settings → MCP
//! servers.

pub mod api;
#[cfg(feature = "ssr")]
pub mod oauth;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod serve;
#[cfg(feature = "ssr")]
pub mod server;

use serde::{Deserialize, Serialize};

use crate::error::{AppError, FieldError};

pub const NAME_MAX: usize = 60;
pub const URL_MAX: usize = 2048;
pub const SECRET_MAX: usize = 4096;
/// The most tools Enclave keeps of one server.
pub const MAX_TOOLS: usize = 200;
/// The longest description kept of a tool.
pub const DESCRIPTION_MAX: usize = 2000;
/// The largest input schema kept of a tool (as JSON).
pub const SCHEMA_MAX: usize = 32 * 1024;

/// How Enclave proves itself to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum McpAuth {
    /// An open server.
    None,
    /// A static secret in a header (`Authorization: Bearer …` or the
    /// server's own header name).
    Header,
    /// OAuth 2.1: the user signs in at the server's authorization server.
    #[serde(rename = "oauth")]
    OAuth,
}

impl McpAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            McpAuth::None => "none",
            McpAuth::Header => "header",
            McpAuth::OAuth => "oauth",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(McpAuth::None),
            "header" => Some(McpAuth::Header),
            "oauth" => Some(McpAuth::OAuth),
            _ => None,
        }
    }
}

/// An agent served as an MCP server, as its owner sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMcpAccess {
    /// The endpoint: `{public URL}/mcp/agents/{id}`.
    pub url: String,
    /// The token programs send (`Authorization: Bearer …`); `None` while the
    /// agent is not served.
    pub token: Option<String>,
    pub created_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// One tool a server offers, as Enclave keeps it (sealed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpToolInfo {
    pub name: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: String,
    /// The JSON schema of the tool's arguments.
    pub input_schema: serde_json::Value,
    /// Why the tool cannot be offered to a model, when it cannot (a schema
    /// that is not an object, a name no provider accepts).
    #[serde(default)]
    pub unusable: Option<String>,
}

impl McpToolInfo {
    pub fn label(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.name)
    }
}

/// A server as the UI sees it: never its secret, and its URL without the
/// query (where some services put a key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpServerView {
    pub id: String,
    pub name: String,
    pub url: String,
    pub auth: McpAuth,
    /// The header the secret goes in, and the secret's last four characters.
    pub header_name: Option<String>,
    pub masked: Option<String>,
    pub tools: Vec<McpToolInfo>,
    /// When the tool list was last read, RFC 3339; `None` before the first.
    pub refreshed_at: Option<String>,
    /// Why the last refresh failed, in words.
    pub last_error: Option<String>,
    /// For OAuth: whether Enclave holds tokens (the user signed in).
    #[serde(default)]
    pub signed_in: bool,
}

/// The key an agent's tool settings use for one tool of one server.
pub fn tool_key(server_id: &str, tool: &str) -> String {
    format!("mcp:{server_id}:{tool}")
}

/// The server id and tool name of a tool key, if it is an MCP one (the id
/// in its hyphenated form, lower case).
pub fn parse_tool_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("mcp:")?;
    let (id, tool) = rest.split_once(':')?;
    let uuid_like = id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        });
    (uuid_like && !tool.is_empty() && tool.len() <= 128).then_some((id, tool))
}

/// A new server as typed in.
#[derive(Debug, Clone, Default)]
pub struct McpServerInput {
    pub name: String,
    pub url: String,
    pub auth: String,
    pub header_name: String,
    pub secret: String,
}

/// A checked new server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMcpServer {
    pub name: String,
    pub url: String,
    pub auth: McpAuth,
    pub header_name: Option<String>,
    pub secret: Option<String>,
}

fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Checks a URL's shape (http or https, a host, no user name or password).
/// Where it points is the egress policy's to judge, when Enclave connects.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    if url.is_empty() || url.len() > URL_MAX {
        return Err("Give the server's address, like https://mcp.example.com/mcp.");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("Give the whole address, starting with https://.");
    };
    if !matches!(scheme, "http" | "https") {
        return Err("Only http:// and https:// addresses can be used.");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err("The address has no host.");
    }
    if authority.contains('@') {
        return Err("Addresses with a user name or password in them are not allowed.");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("The address has spaces in it.");
    }
    Ok(())
}

impl NewMcpServer {
    pub fn parse(input: &McpServerInput) -> Result<NewMcpServer, AppError> {
        let mut errors = Vec::new();
        let mut fail = |field: &str, message: &str| {
            errors.push(FieldError {
                field: field.to_owned(),
                message: message.to_owned(),
            })
        };
        let name = input.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > NAME_MAX {
            fail(
                "name",
                "Name the server (up to 60 characters), like \"Company wiki\".",
            );
        }
        let url = input.url.trim().to_owned();
        if let Err(message) = check_url(&url) {
            fail("url", message);
        }
        let auth = McpAuth::parse(input.auth.trim()).unwrap_or(McpAuth::None);
        let (mut header_name, mut secret) = (None, None);
        if auth == McpAuth::Header {
            let name = match input.header_name.trim() {
                "" => "Authorization".to_owned(),
                name => name.to_owned(),
            };
            if !header_name_ok(&name) {
                fail(
                    "header_name",
                    "Give the header's name, like Authorization or X-Api-Key.",
                );
            }
            let value = input.secret.trim().to_owned();
            if value.is_empty() {
                fail("secret", "Paste the secret the server expects.");
            } else if value.len() > SECRET_MAX || value.chars().any(|c| c.is_control()) {
                fail("secret", "That does not look like a token or key.");
            }
            header_name = Some(name);
            secret = Some(value);
        }
        if errors.is_empty() {
            Ok(NewMcpServer {
                name,
                url,
                auth,
                header_name,
                secret,
            })
        } else {
            Err(AppError::Invalid(errors))
        }
    }
}

/// A URL without its query and fragment, for showing.
pub fn shown_url(url: &str) -> String {
    match url.find(['?', '#']) {
        Some(at) => format!("{}?…", &url[..at]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(auth: &str) -> McpServerInput {
        McpServerInput {
            name: "Wiki".into(),
            url: "https://mcp.example.com/mcp".into(),
            auth: auth.into(),
            ..McpServerInput::default()
        }
    }

    #[test]
    fn a_server_needs_a_name_and_a_web_address() {
        assert!(NewMcpServer::parse(&input("none")).is_ok());
        for (url, why) in [
            ("", "empty"),
            ("mcp.example.com", "no scheme"),
            ("file:///etc/passwd", "scheme"),
            ("https://user:pw@example.com/mcp", "credentials"),
            ("https:///mcp", "no host"),
            ("https://example.com/a b", "space"),
        ] {
            let err = NewMcpServer::parse(&McpServerInput {
                url: url.into(),
                ..input("none")
            })
            .unwrap_err();
            assert!(err.field_message("url").is_some(), "{why}");
        }
        let err = NewMcpServer::parse(&McpServerInput {
            name: " ".into(),
            ..input("none")
        })
        .unwrap_err();
        assert!(err.field_message("name").is_some());
    }

    #[test]
    fn a_header_secret_is_required_and_the_header_defaults_to_authorization() {
        let err = NewMcpServer::parse(&input("header")).unwrap_err();
        assert!(err.field_message("secret").is_some());
        let ok = NewMcpServer::parse(&McpServerInput {
            secret: "tok-1234".into(),
            ..input("header")
        })
        .unwrap();
        assert_eq!(ok.header_name.as_deref(), Some("Authorization"));
        let err = NewMcpServer::parse(&McpServerInput {
            secret: "tok".into(),
            header_name: "X Key".into(),
            ..input("header")
        })
        .unwrap_err();
        assert!(err.field_message("header_name").is_some());
    }

    #[test]
    fn tool_keys_round_trip_and_reject_what_is_not_one() {
        let id = "1a2b3c4d-0000-4000-8000-00000000000f";
        let key = tool_key(id, "get-sum");
        assert_eq!(parse_tool_key(&key), Some((id, "get-sum")));
        assert_eq!(
            parse_tool_key("mcp:1A2B3C4D-0000-4000-8000-00000000000F:x"),
            None
        );
        assert_eq!(parse_tool_key("calculator"), None);
        assert_eq!(parse_tool_key("mcp:nope:x"), None);
        assert_eq!(parse_tool_key(&format!("mcp:{id}:")), None);
    }

    #[test]
    fn a_shown_url_hides_its_query() {
        assert_eq!(
            shown_url("https://a.example/mcp?key=s3cret"),
            "https://a.example/mcp?…"
        );
        assert_eq!(shown_url("https://a.example/mcp"), "https://a.example/mcp");
    }
}
