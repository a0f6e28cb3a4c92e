//! The few Bot API methods Enclave calls, through the egress client (its
//! address checks and pinning; the operator's `ENCLAVE_TELEGRAM_API_URL`).
//! Hand-written rather than a crate: six JSON methods, and the crates that
//! cover the API either bring their own HTTP client (teloxide: OpenSSL,
//! reqwest 0.12) or need an adapter trait for ours (frankenstein), for types
//! we read three fields of. The token is in the URL, as the Bot API wants:
//! no URL here is ever logged or put in an error.

use reqwest::{Method, header::HeaderMap};
use serde_json::{Value, json};

use crate::platform::egress::Egress;

/// Telegram's longest message.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// Why a call failed, in plain words (never with the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BotError {
    #[error("Telegram rejected this bot token. Copy it again from @BotFather.")]
    Unauthorized,
    #[error("Telegram is rate limiting this bot: try again in {0} seconds.")]
    RateLimited(u64),
    #[error("Telegram refused: {0}")]
    Refused(String),
    #[error("Telegram could not be reached.")]
    Unreachable,
}

/// A bot, by its token.
pub struct Bot<'a> {
    egress: &'a Egress,
    base: &'a str,
    token: &'a str,
}

impl<'a> Bot<'a> {
    pub fn new(egress: &'a Egress, base: &'a str, token: &'a str) -> Self {
        Bot {
            egress,
            base,
            token,
        }
    }

    /// Calls `method` with `params`; its `result`.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, BotError> {
        let url = crate::connections::server::telegram_url(self.base, self.token, method);
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            "application/json".parse().expect("a valid header"),
        );
        let body = serde_json::to_vec(&params).map_err(|_| BotError::Unreachable)?;
        let fetched = self
            .egress
            .send_body(Method::POST, &url, headers, Some(body))
            .await
            .map_err(|_| BotError::Unreachable)?;
        let body: Value = serde_json::from_slice(&fetched.body).unwrap_or_default();
        if body["ok"] == true {
            return Ok(body["result"].clone());
        }
        Err(match body["error_code"].as_u64() {
            Some(401) | Some(404) => BotError::Unauthorized,
            Some(429) => {
                BotError::RateLimited(body["parameters"]["retry_after"].as_u64().unwrap_or(1))
            }
            _ => BotError::Refused(
                body["description"]
                    .as_str()
                    .unwrap_or("it did not say why")
                    .chars()
                    .take(200)
                    .collect(),
            ),
        })
    }

    /// The bot's username (checks the token).
    pub async fn username(&self) -> Result<String, BotError> {
        let me = self.call("getMe", json!({})).await?;
        Ok(me["username"].as_str().unwrap_or("bot").to_owned())
    }

    pub async fn set_webhook(&self, url: &str, secret: &str) -> Result<(), BotError> {
        self.call(
            "setWebhook",
            json!({"url": url, "secret_token": secret, "allowed_updates": ["message"]}),
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_webhook(&self) -> Result<(), BotError> {
        self.call("deleteWebhook", json!({})).await.map(|_| ())
    }

    /// Updates after `offset` (waiting up to `timeout` seconds for one).
    pub async fn updates(&self, offset: i64, timeout: u64) -> Result<Vec<Value>, BotError> {
        let result = self
            .call(
                "getUpdates",
                json!({"offset": offset, "timeout": timeout, "allowed_updates": ["message"]}),
            )
            .await?;
        Ok(result.as_array().cloned().unwrap_or_default())
    }

    /// Sends `text`; the new message's id. `markdown`: Telegram's MarkdownV2.
    pub async fn send(&self, chat: i64, text: &str, markdown: bool) -> Result<i64, BotError> {
        let mut params = json!({"chat_id": chat, "text": text});
        if markdown {
            params["parse_mode"] = json!("MarkdownV2");
        }
        let sent = self.call("sendMessage", params).await?;
        Ok(sent["message_id"].as_i64().unwrap_or_default())
    }

    /// Replaces the text of message `id`. The same text again is not an
    /// error.
    pub async fn edit(
        &self,
        chat: i64,
        id: i64,
        text: &str,
        markdown: bool,
    ) -> Result<(), BotError> {
        let mut params = json!({"chat_id": chat, "message_id": id, "text": text});
        if markdown {
            params["parse_mode"] = json!("MarkdownV2");
        }
        match self.call("editMessageText", params).await {
            Err(BotError::Refused(why)) if why.contains("message is not modified") => Ok(()),
            other => other.map(|_| ()),
        }
    }
}
