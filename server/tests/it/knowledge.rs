//! Knowledge bases, so far: embeddings over the real wire formats (against
//! the fake provider), with retries on 429, and search ranking a known
//! passage first.

use app::{
    knowledge::{
        embeddings::{Embedder, EmbeddingApi, embed},
        vectors::{Matrix, encode, normalise},
    },
    llm::LlmError,
    platform::egress::{AllowEntry, Egress},
};
use uuid::Uuid;

async fn fake() -> (std::net::SocketAddr, Egress) {
    app::platform::tls::init();
    let addr = server::fake_provider::start().await.unwrap();
    let egress = Egress::new(vec![AllowEntry::parse(&addr.to_string()).unwrap()]);
    (addr, egress)
}

fn openai(addr: std::net::SocketAddr, model: &str) -> Embedder {
    Embedder {
        api: EmbeddingApi::OpenAi,
        base_url: format!("http://{addr}/openai/v1"),
        model: model.to_owned(),
        key: Some("sk-test-embeddings".to_owned()),
        dimensions: None,
    }
}

const PASSAGES: [&str; 4] = [
    "The office is open from nine to five, Monday to Friday.",
    "Invoices are paid within thirty days of receipt.",
    "The cafeteria serves lunch between noon and two.",
    "Parking permits are renewed every January.",
];

#[tokio::test]
async fn openai_embeddings_come_back_in_order_in_batches_and_rank_the_right_passage_first() {
    let (addr, egress) = fake().await;
    let embedder = openai(addr, "text-embedding-3-small");
    // More texts than one batch holds.
    let texts: Vec<String> = (0..200).map(|i| format!("text number {i}")).collect();
    let vectors = embed(&egress, &embedder, &texts).await.unwrap();
    assert_eq!(vectors.len(), 200);
    assert!(vectors.iter().all(|v| v.len() == 1536));
    assert_eq!(
        vectors[7],
        embed(&egress, &embedder, &texts[7..8]).await.unwrap()[0],
        "each vector belongs to its own text"
    );
    // Shorter vectors when asked.
    let short = Embedder {
        dimensions: Some(256),
        ..embedder.clone()
    };
    assert_eq!(
        embed(&egress, &short, &texts[..2]).await.unwrap()[0].len(),
        256
    );

    // Search ranks the passage that answers the question first.
    let passages: Vec<String> = PASSAGES.iter().map(|p| (*p).to_owned()).collect();
    let stored = embed(&egress, &embedder, &passages).await.unwrap();
    let mut matrix = Matrix::with_capacity(1536, stored.len());
    let ids: Vec<Uuid> = stored
        .iter()
        .map(|v| {
            let id = Uuid::new_v4();
            matrix.push_stored(id, encode(v)).unwrap();
            id
        })
        .collect();
    let mut question = embed(
        &egress,
        &embedder,
        &["When is the office open on Monday?".to_owned()],
    )
    .await
    .unwrap()
    .remove(0);
    normalise(&mut question).unwrap();
    let top = matrix.top_k(&question, 2);
    assert_eq!(top[0].0, ids[0], "{top:?}");
}

#[tokio::test]
async fn gemini_batch_embeddings_use_their_own_wire_format() {
    let (addr, egress) = fake().await;
    let embedder = Embedder {
        api: EmbeddingApi::Gemini,
        base_url: format!("http://{addr}/google/v1beta"),
        model: "text-embedding-004".to_owned(),
        key: Some("AIza-test".to_owned()),
        dimensions: None,
    };
    let texts = vec!["one".to_owned(), "two".to_owned(), "three".to_owned()];
    let vectors = embed(&egress, &embedder, &texts).await.unwrap();
    assert_eq!(vectors.len(), 3);
    assert!(vectors.iter().all(|v| v.len() == 768));
    assert_ne!(vectors[0], vectors[1]);
    let bad = Embedder {
        key: Some("bad-key".to_owned()),
        ..embedder
    };
    assert_eq!(
        embed(&egress, &bad, &texts).await.unwrap_err(),
        LlmError::InvalidKey
    );
}

#[tokio::test]
async fn a_rate_limited_batch_is_tried_again_and_a_refused_key_is_said_plainly() {
    let (addr, egress) = fake().await;
    let texts = vec!["hello".to_owned()];
    // Twice 429 (Retry-After: 0), then an answer.
    let vectors = embed(
        &egress,
        &openai(addr, "text-embedding-3-small-429x2"),
        &texts,
    )
    .await
    .unwrap();
    assert_eq!(vectors.len(), 1);
    // Always 429: after its tries, the rate limit is the answer.
    let err = embed(
        &egress,
        &openai(addr, "text-embedding-3-small-429x99"),
        &texts,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LlmError::RateLimited { .. }), "{err:?}");
    let bad = Embedder {
        key: Some("bad".to_owned()),
        ..openai(addr, "text-embedding-3-small")
    };
    assert_eq!(
        embed(&egress, &bad, &texts).await.unwrap_err(),
        LlmError::InvalidKey
    );
    // An address the egress rules refuse is never reached.
    let private = Embedder {
        base_url: "http://10.0.0.1/v1".to_owned(),
        ..openai(addr, "text-embedding-3-small")
    };
    assert!(matches!(
        embed(&egress, &private, &texts).await.unwrap_err(),
        LlmError::Egress(_)
    ));
}
