//! Embeddings over the providers' real wire formats, through the egress
//! client: OpenAI's `POST /embeddings` (also any OpenAI-compatible server,
//! and the offline demo model) and Gemini's `:batchEmbedContents`. Texts go
//! in batches; a batch the provider refused for now (429 or overload) is
//! tried again after its `Retry-After` or a doubling wait, a few times.
//! Errors are `LlmError`s: plain sentences, never the provider's text.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, header};
use serde_json::{Value, json};

use crate::{
    llm::{LlmError, classify},
    platform::egress::Egress,
};

/// Texts per request (OpenAI takes 2,048, Gemini 100).
pub const BATCH: usize = 96;
/// Tries per batch.
const ATTEMPTS: u32 = 4;
/// The longest wait between tries.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Which wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingApi {
    /// OpenAI, an OpenAI-compatible server, or the demo model.
    OpenAi,
    Gemini,
}

/// Where and how to embed.
#[derive(Clone)]
pub struct Embedder {
    pub api: EmbeddingApi,
    /// `https://api.openai.com/v1`, `https://generativelanguage.googleapis.com/v1beta`.
    pub base_url: String,
    pub model: String,
    /// None for a server that needs none (the demo model, a local server).
    pub key: Option<String>,
    /// Ask for this many dimensions (models that can shorten theirs).
    pub dimensions: Option<u32>,
    /// Writes each request to the usage ledger (on whoever embeds).
    pub meter: Option<crate::usage::server::Meter>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("api", &self.api)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("dimensions", &self.dimensions)
            .finish()
    }
}

impl Embedder {
    /// Whether `other` gives the same vectors (same server, model, size and key).
    pub fn same_as(&self, other: &Embedder) -> bool {
        self.api == other.api
            && self.base_url == other.base_url
            && self.model == other.model
            && self.key == other.key
            && self.dimensions == other.dimensions
    }
}

/// The embeddings of `texts`, in order.
pub async fn embed(
    egress: &Egress,
    embedder: &Embedder,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, LlmError> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(BATCH) {
        out.extend(embed_batch(egress, embedder, batch).await?);
    }
    Ok(out)
}

async fn embed_batch(
    egress: &Egress,
    embedder: &Embedder,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, LlmError> {
    let (url, headers, body) = request(embedder, texts)?;
    let mut wait = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        let result = send(egress, embedder, &url, headers.clone(), &body, texts.len()).await;
        if let (Ok((_, tokens)), Some(meter)) = (&result, &embedder.meter) {
            // Gemini reports no token counts: about four characters a token.
            let (input, estimated) = match tokens {
                Some(n) => (*n, false),
                None => (
                    texts
                        .iter()
                        .map(|t| t.len() as u64)
                        .sum::<u64>()
                        .div_ceil(4),
                    true,
                ),
            };
            meter
                .record(
                    crate::llm::Usage {
                        input_tokens: input,
                        output_tokens: 0,
                    },
                    estimated,
                )
                .await;
        }
        let result = result.map(|(vectors, _)| vectors);
        match result {
            Err(err) if err.is_retryable() && attempt < ATTEMPTS => {
                let pause = match &err {
                    LlmError::RateLimited {
                        retry_after: Some(after),
                    } => *after,
                    _ => wait,
                }
                .min(MAX_WAIT);
                tokio::time::sleep(pause).await;
                wait = (wait * 2).min(MAX_WAIT);
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn request(
    embedder: &Embedder,
    texts: &[String],
) -> Result<(String, HeaderMap, Vec<u8>), LlmError> {
    let base = embedder.base_url.trim_end_matches('/');
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (url, body) = match embedder.api {
        EmbeddingApi::OpenAi => {
            if let Some(key) = &embedder.key {
                let value = HeaderValue::from_str(&format!("Bearer {key}"))
                    .map_err(|_| LlmError::InvalidKey)?;
                headers.insert(header::AUTHORIZATION, value);
            }
            let mut body =
                json!({"model": embedder.model, "input": texts, "encoding_format": "float"});
            if let Some(dimensions) = embedder.dimensions {
                body["dimensions"] = json!(dimensions);
            }
            (format!("{base}/embeddings"), body)
        }
        EmbeddingApi::Gemini => {
            if let Some(key) = &embedder.key {
                let value = HeaderValue::from_str(key).map_err(|_| LlmError::InvalidKey)?;
                headers.insert("x-goog-api-key", value);
            }
            let model = format!("models/{}", embedder.model);
            let requests: Vec<Value> = texts
                .iter()
                .map(|text| {
                    let mut request =
                        json!({"model": model, "content": {"parts": [{"text": text}]}});
                    if let Some(dimensions) = embedder.dimensions {
                        request["outputDimensionality"] = json!(dimensions);
                    }
                    request
                })
                .collect();
            let segment: String = percent_encoding::utf8_percent_encode(
                &embedder.model,
                percent_encoding::NON_ALPHANUMERIC,
            )
            .collect();
            (
                format!("{base}/models/{segment}:batchEmbedContents"),
                json!({"requests": requests}),
            )
        }
    };
    let body = serde_json::to_vec(&body).map_err(|_| LlmError::Protocol)?;
    Ok((url, headers, body))
}

async fn send(
    egress: &Egress,
    embedder: &Embedder,
    url: &str,
    headers: HeaderMap,
    body: &[u8],
    expected: usize,
) -> Result<(Vec<Vec<f32>>, Option<u64>), LlmError> {
    let fetched = egress
        .send_body(Method::POST, url, headers, Some(body.to_vec()))
        .await
        .map_err(LlmError::Egress)?;
    if !fetched.status.is_success() {
        return Err(classify(
            fetched.status.as_u16(),
            &fetched.headers,
            &fetched.body,
        ));
    }
    let json: Value = serde_json::from_slice(&fetched.body).map_err(|_| LlmError::Protocol)?;
    let vectors: Vec<Vec<f32>> = match embedder.api {
        EmbeddingApi::OpenAi => {
            let mut data: Vec<(u64, Vec<f32>)> = json["data"]
                .as_array()
                .ok_or(LlmError::Protocol)?
                .iter()
                .map(|item| {
                    Ok((
                        item["index"].as_u64().ok_or(LlmError::Protocol)?,
                        numbers(&item["embedding"])?,
                    ))
                })
                .collect::<Result<_, LlmError>>()?;
            data.sort_by_key(|(index, _)| *index);
            data.into_iter().map(|(_, v)| v).collect()
        }
        EmbeddingApi::Gemini => json["embeddings"]
            .as_array()
            .ok_or(LlmError::Protocol)?
            .iter()
            .map(|item| numbers(&item["values"]))
            .collect::<Result<_, LlmError>>()?,
    };
    if vectors.len() != expected || vectors.iter().any(Vec::is_empty) {
        return Err(LlmError::Protocol);
    }
    // What the provider says it counted (OpenAI and compatible servers).
    let tokens = json["usage"]["prompt_tokens"]
        .as_u64()
        .or_else(|| json["usage"]["total_tokens"].as_u64());
    Ok((vectors, tokens))
}

fn numbers(value: &Value) -> Result<Vec<f32>, LlmError> {
    value
        .as_array()
        .ok_or(LlmError::Protocol)?
        .iter()
        .map(|n| n.as_f64().map(|f| f as f32).ok_or(LlmError::Protocol))
        .collect()
}
