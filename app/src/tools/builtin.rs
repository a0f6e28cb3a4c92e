//! The built-in tools that need no connection: the current time and a
//! calculator (so tool use works with no account anywhere, and the offline
//! demo model can show a tool call).

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::server::{Tool, ToolCtx, ToolError, ToolOutput};
use crate::llm::ToolDecl;

/// The built-in tool called `name`, ready to call.
pub fn builtin_tool(name: &str) -> Option<Arc<dyn Tool>> {
    match name {
        "current_time" => Some(Arc::new(CurrentTime)),
        "calculator" => Some(Arc::new(Calculator)),
        "http_request" => Some(Arc::new(HttpRequest)),
        "send_email" => Some(super::email::email_tool()),
        other => super::services::service_tool(other),
    }
}

fn decl(name: &str, parameters: Value) -> ToolDecl {
    let info = super::builtin(name)
        .map(|t| t.description)
        .unwrap_or_default();
    ToolDecl {
        name: name.to_owned(),
        description: info.to_owned(),
        parameters,
    }
}

pub struct CurrentTime;

impl Tool for CurrentTime {
    fn decl(&self) -> ToolDecl {
        decl(
            "current_time",
            json!({"type": "object", "properties": {
                "utc_offset_minutes": {"type": "integer",
                    "description": "Minutes east of UTC, e.g. 60 for UTC+1. Default 0."}
            }}),
        )
    }

    fn side_effects(&self) -> bool {
        false
    }

    fn call<'a>(
        &'a self,
        _ctx: &'a ToolCtx,
        arguments: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let minutes = match &arguments["utc_offset_minutes"] {
                Value::Null => 0,
                value => value
                    .as_i64()
                    .filter(|m| m.abs() <= 14 * 60)
                    .ok_or_else(|| {
                        ToolError::Invalid(
                            "utc_offset_minutes is a whole number from -840 to 840.".into(),
                        )
                    })?,
            };
            let offset = chrono::FixedOffset::east_opt(minutes as i32 * 60)
                .ok_or_else(|| ToolError::Invalid("That offset is not valid.".into()))?;
            let now = chrono::Utc::now().with_timezone(&offset);
            Ok(ToolOutput::text(
                now.format("%A %Y-%m-%d %H:%M:%S %:z").to_string(),
            ))
        })
    }
}

pub struct Calculator;

impl Tool for Calculator {
    fn decl(&self) -> ToolDecl {
        decl(
            "calculator",
            json!({"type": "object", "properties": {
                "expression": {"type": "string",
                    "description": "Arithmetic such as (2 + 3) * 7 / 4; + - * / ^ and parentheses."}
            }, "required": ["expression"]}),
        )
    }

    fn side_effects(&self) -> bool {
        false
    }

    fn call<'a>(
        &'a self,
        _ctx: &'a ToolCtx,
        arguments: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move { calculate(&arguments).map(ToolOutput::text) })
    }
}

/// Works out `arguments.expression`.
pub fn calculate(arguments: &Value) -> Result<String, ToolError> {
    let expression = arguments["expression"]
        .as_str()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ToolError::Invalid("Give the expression to work out.".into()))?;
    if expression.len() > 500 {
        return Err(ToolError::Invalid(
            "The expression is too long (500 characters at most).".into(),
        ));
    }
    // Arithmetic only: no names, so no functions or variables to call.
    if expression
        .chars()
        .any(|c| !(c.is_ascii_digit() || " .+-*/^()%eE".contains(c)))
    {
        return Err(ToolError::Invalid(
            "Only numbers, + - * / ^ % and parentheses can be used.".into(),
        ));
    }
    let value = exmex::eval_str::<f64>(expression).map_err(|_| {
        ToolError::Invalid(format!(
            "“{expression}” is not an expression I can work out."
        ))
    })?;
    if !value.is_finite() {
        return Err(ToolError::Failed(format!(
            "“{expression}” has no finite value (a division by zero?)."
        )));
    }
    Ok(format!("{expression} = {}", format_number(value)))
}

fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.10}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// The most of a request body the model may send.
const MAX_BODY: usize = 64 * 1024;

pub struct HttpRequest;

impl Tool for HttpRequest {
    fn decl(&self) -> ToolDecl {
        decl(
            "http_request",
            json!({"type": "object", "properties": {
                "url": {"type": "string", "description": "An http:// or https:// address."},
                "method": {"type": "string", "enum": ["GET", "POST"], "description": "GET (default) or POST."},
                "body": {"type": "string", "description": "For POST: the body to send."},
                "content_type": {"type": "string", "description": "For POST: its type, default application/json."}
            }, "required": ["url"]}),
        )
    }

    fn side_effects(&self) -> bool {
        false
    }

    fn call<'a>(
        &'a self,
        ctx: &'a ToolCtx,
        arguments: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move { http_request(ctx, &arguments).await })
    }
}

async fn http_request(ctx: &ToolCtx, arguments: &Value) -> Result<ToolOutput, ToolError> {
    use reqwest::{
        Method,
        header::{CONTENT_TYPE, HeaderMap, HeaderValue},
    };

    let url = arguments["url"]
        .as_str()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ToolError::Invalid("Give the url to fetch.".into()))?;
    let parsed = url::Url::parse(url)
        .map_err(|_| ToolError::Invalid(format!("“{url}” is not a valid address.")))?;
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    let allowed = &ctx.config.allowed_hosts;
    if !allowed.is_empty() && !allowed.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
        return Err(ToolError::Failed(format!(
            "This agent may only reach {}; {host} is not one of them.",
            allowed.join(", ")
        )));
    }
    let method = match arguments["method"]
        .as_str()
        .unwrap_or("GET")
        .to_ascii_uppercase()
        .as_str()
    {
        "GET" => Method::GET,
        "POST" => Method::POST,
        other => {
            return Err(ToolError::Invalid(format!(
                "The method is GET or POST, not {other}."
            )));
        }
    };
    let body = match (&method, arguments["body"].as_str()) {
        (&Method::POST, Some(body)) if body.len() > MAX_BODY => {
            return Err(ToolError::Invalid(format!(
                "The body is larger than {} KiB.",
                MAX_BODY / 1024
            )));
        }
        (&Method::POST, body) => Some(body.unwrap_or_default().as_bytes().to_vec()),
        _ => None,
    };
    let mut headers = HeaderMap::new();
    if body.is_some() {
        let kind = arguments["content_type"]
            .as_str()
            .unwrap_or("application/json");
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(kind)
                .map_err(|_| ToolError::Invalid("That content type is not valid.".into()))?,
        );
    }
    let sent = body.as_ref().map_or(0, |b| b.len() as u64) + url.len() as u64;
    let fetched = ctx
        .state
        .egress
        .send_body(method, url, headers, body)
        .await
        .map_err(|e| ToolError::Failed(e.to_string()))?;
    let kind = fetched
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = if kind.contains("html") {
        html2text::config::plain()
            .string_from_read(fetched.body.as_slice(), 100)
            .unwrap_or_else(|_| String::from_utf8_lossy(&fetched.body).into_owned())
    } else {
        String::from_utf8_lossy(&fetched.body).into_owned()
    };
    let status = fetched.status;
    Ok(ToolOutput {
        content: format!(
            "HTTP {} {}\n{}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            text.trim()
        ),
        target: Some(host),
        bytes_sent: sent,
        bytes_received: fetched.body.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calculator_does_arithmetic_and_nothing_else() {
        let calc = |e: &str| calculate(&json!({ "expression": e }));
        assert_eq!(calc("6*7").unwrap(), "6*7 = 42");
        assert_eq!(calc("(2 + 3) * 7 / 4").unwrap(), "(2 + 3) * 7 / 4 = 8.75");
        assert_eq!(calc("2^10").unwrap(), "2^10 = 1024");
        assert!(calc("1/0").is_err());
        assert!(calc("sin(1)").is_err(), "no names");
        assert!(calc("").is_err());
        assert!(calculate(&json!({})).is_err());
        assert!(calc(&"1+".repeat(300)).is_err());
    }
}
