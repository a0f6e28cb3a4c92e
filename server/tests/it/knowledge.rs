//! Knowledge bases: embeddings over the real wire formats (against the fake
//! provider) with retries on 429; uploads of every kind, parsed, split,
//! embedded by the ingestion job and found again by search; hostile files
//! failing alone; ingestion resuming after a restart; another user's bases,
//! documents and passages not found; deletion taking everything derived.

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
        meter: None,
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
        meter: None,
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
        meter: None,
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

pub mod ingestion {
    use std::time::Duration;

    use reqwest::{Client, header};
    use serde_json::Value;
    use sqlx::PgPool;

    use crate::common::{TestApp, chat_settings, keyring};

    async fn app(db: PgPool) -> TestApp {
        app_and_fake(db).await.0
    }

    async fn app_and_fake(db: PgPool) -> (TestApp, std::net::SocketAddr) {
        let fake = server::fake_provider::start().await.unwrap();
        (
            TestApp::spawn_full(db, chat_settings(fake), keyring(1, &[])).await,
            fake,
        )
    }

    use crate::common::ok_json as json;

    pub async fn create_base(app: &TestApp, client: &Client, name: &str) -> String {
        let res = app
            .call(
                client,
                "create_knowledge_base",
                &[
                    ("name", name),
                    ("description", "What the team knows"),
                    ("provider", "openai"),
                    ("model", "text-embedding-3-small"),
                ],
            )
            .await;
        json(res).await.as_str().unwrap().to_owned()
    }

    pub async fn upload(
        app: &TestApp,
        client: &Client,
        base: &str,
        files: Vec<(&str, Vec<u8>)>,
    ) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new();
        for (name, bytes) in files {
            form = form.part(
                "files",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
            );
        }
        client
            .post(app.url(&format!("/knowledge/{base}/upload")))
            .header(header::ACCEPT, "application/json")
            .header("sec-fetch-site", "same-origin")
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// The base's page once no document is being worked on.
    pub async fn settled(app: &TestApp, client: &Client, base: &str) -> Value {
        for _ in 0..400 {
            let page = json(app.call(client, "knowledge_base", &[("id", base)]).await).await;
            let busy = page["documents"].as_array().unwrap().iter().any(|d| {
                matches!(
                    d["state"].as_str(),
                    Some("queued" | "parsing" | "embedding")
                )
            });
            if !busy {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("ingestion did not finish");
    }

    fn doc<'a>(page: &'a Value, name: &str) -> &'a Value {
        page["documents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no document {name}: {page:#}"))
    }

    pub async fn search(app: &TestApp, client: &Client, base: &str, query: &str) -> Value {
        json(
            app.call(
                client,
                "search_knowledge_base",
                &[("id", base), ("query", query)],
            )
            .await,
        )
        .await
    }

    /// A PDF with one page per text (Helvetica, one line each).
    pub fn pdf(pages: &[&str]) -> Vec<u8> {
        let n = pages.len();
        let mut objects: Vec<String> = Vec::new();
        objects.push("<< /Type /Catalog /Pages 2 0 R >>".to_owned());
        let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
        objects.push(format!(
            "<< /Type /Pages /Kids [{}] /Count {n} >>",
            kids.join(" ")
        ));
        objects.push(
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
                .to_owned(),
        );
        for (i, text) in pages.iter().enumerate() {
            objects.push(format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {} 0 R \
                 /Resources << /Font << /F1 3 0 R >> >> >>",
                5 + 2 * i
            ));
            let stream = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
            objects.push(format!(
                "<< /Length {} >>\nstream\n{stream}\nendstream",
                stream.len()
            ));
        }
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend(format!("{} 0 obj\n{object}\nendobj\n", i + 1).bytes());
        }
        let xref = out.len();
        out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).bytes());
        for offset in offsets {
            out.extend(format!("{offset:010} 00000 n \n").bytes());
        }
        out.extend(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .bytes(),
        );
        out
    }

    /// A Word file: a heading, then a paragraph under it, then a table.
    fn docx(heading: &str, body: &str) -> Vec<u8> {
        use docx_rs::{Docx, Paragraph, Run, Table, TableCell, TableRow};
        let mut out = std::io::Cursor::new(Vec::new());
        Docx::new()
            .add_paragraph(
                Paragraph::new()
                    .add_run(Run::new().add_text(heading))
                    .style("Heading1"),
            )
            .add_paragraph(Paragraph::new().add_run(Run::new().add_text(body)))
            .add_table(Table::new(vec![TableRow::new(vec![
                TableCell::new()
                    .add_paragraph(Paragraph::new().add_run(Run::new().add_text("Badge"))),
                TableCell::new()
                    .add_paragraph(Paragraph::new().add_run(Run::new().add_text("Reception"))),
            ])]))
            .build()
            .pack(&mut out)
            .unwrap();
        out.into_inner()
    }

    /// A zip with a Word document part that unpacks to 101 MiB of zeros.
    fn zip_bomb() -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file("word/document.xml", options).unwrap();
        let block = vec![0u8; 1 << 20];
        for _ in 0..101 {
            w.write_all(&block).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    pub const HANDBOOK: &str = "# Handbook\n\n## Invoices\n\nInvoices are paid within thirty days of receipt, \
        by bank transfer only.\n\n## Parking\n\nParking permits are renewed every January at the front desk.\n";

    #[sqlx::test(migrations = "../migrations")]
    async fn every_kind_is_parsed_embedded_and_found_with_its_place(db: PgPool) {
        let app = app(db).await;
        let client = app.signed_up("kb@example.com").await;
        let base = create_base(&app, &client, "Team knowledge").await;
        let res = upload(
            &app,
            &client,
            &base,
            vec![
                ("handbook.md", HANDBOOK.as_bytes().to_vec()),
                (
                    "guide.pdf",
                    pdf(&["Welcome aboard", "Laptops are returned to the IT desk"]),
                ),
                (
                    "travel.docx",
                    docx("Travel policy", "Trains are booked in second class."),
                ),
                (
                    "menu.html",
                    b"<!doctype html><h1>Cafeteria</h1><p>Soup is served on Fridays.</p>".to_vec(),
                ),
                (
                    "rooms.csv",
                    b"room,floor\nAurora,third\nBorealis,fifth\n".to_vec(),
                ),
                ("config.json", br#"{"vacation_days": 27}"#.to_vec()),
                ("notes.txt", b"The wifi password rotates monthly.".to_vec()),
            ],
        )
        .await;
        assert_eq!(json(res).await.as_array().unwrap().len(), 7);
        let page = settled(&app, &client, &base).await;
        for (name, kind) in [
            ("handbook.md", "markdown"),
            ("guide.pdf", "pdf"),
            ("travel.docx", "docx"),
            ("menu.html", "html"),
            ("rooms.csv", "csv"),
            ("config.json", "json"),
            ("notes.txt", "text"),
        ] {
            let d = doc(&page, name);
            assert_eq!(d["state"], "ready", "{name}: {d}");
            assert_eq!(d["kind"], kind, "{name}");
            assert!(d["chunks_total"].as_u64().unwrap() >= 1);
            assert_eq!(d["chunks_embedded"], d["chunks_total"]);
        }
        assert_eq!(doc(&page, "guide.pdf")["pages"], 2);
        assert_eq!(page["base"]["documents"], 7);
        let no_upload_kept: i64 =
            sqlx::query_scalar("SELECT count(*) FROM knowledge_documents WHERE source IS NOT NULL")
                .fetch_one(&app.db)
                .await
                .unwrap();
        assert_eq!(
            no_upload_kept, 0,
            "the upload goes once its passages are stored"
        );

        // A known passage ranks first, with where it came from.
        let hits = search(&app, &client, &base, "when are invoices paid").await;
        assert_eq!(hits[0]["document"], "handbook.md", "{hits:#}");
        assert_eq!(hits[0]["location"], "Invoices");
        assert!(hits[0]["text"].as_str().unwrap().contains("thirty days"));
        let hits = search(&app, &client, &base, "where are laptops returned").await;
        assert_eq!(hits[0]["document"], "guide.pdf", "{hits:#}");
        assert_eq!(hits[0]["location"], "page 2");
        let hits = search(&app, &client, &base, "how are trains booked").await;
        assert_eq!(hits[0]["document"], "travel.docx", "{hits:#}");
        assert_eq!(hits[0]["location"], "Travel policy");
        let hits = search(&app, &client, &base, "which floor is room Borealis").await;
        assert_eq!(hits[0]["document"], "rooms.csv", "{hits:#}");

        // A citation opens its passage.
        let passage = json(
            app.call(
                &client,
                "knowledge_passage",
                &[("id", hits[0]["chunk_id"].as_str().unwrap())],
            )
            .await,
        )
        .await;
        assert!(passage["text"].as_str().unwrap().contains("Borealis"));
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn hostile_and_unusable_files_fail_alone_with_the_reason(db: PgPool) {
        let app = app(db).await;
        let client = app.signed_up("hostile@example.com").await;
        let base = create_base(&app, &client, "Mixed bag").await;
        let mut broken_pdf = pdf(&["Fine so far"]);
        broken_pdf.truncate(60);
        let res = upload(
            &app,
            &client,
            &base,
            vec![
                ("broken.pdf", broken_pdf),
                (
                    "garbage.pdf",
                    b"%PDF-1.7\n\xff\xfe\x00 not a pdf at all".to_vec(),
                ),
                ("bomb.docx", zip_bomb()),
                ("fake.pdf", b"I am text pretending".to_vec()),
                ("image.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec()),
                ("bad.json", b"{\"open\": ".to_vec()),
                ("huge.txt", vec![b'a'; 20 * 1024 * 1024 + 1]),
                ("empty.txt", Vec::new()),
                ("good.md", HANDBOOK.as_bytes().to_vec()),
            ],
        )
        .await;
        assert_eq!(json(res).await.as_array().unwrap().len(), 9);
        let page = settled(&app, &client, &base).await;
        let reason = |name: &str| {
            let d = doc(&page, name);
            assert_eq!(d["state"], "failed", "{name}: {d}");
            d["error"].as_str().unwrap().to_owned()
        };
        assert!(reason("broken.pdf").contains("PDF could not be read"));
        assert!(reason("garbage.pdf").contains("PDF could not be read"));
        assert!(reason("bomb.docx").contains("more than 100 MiB"));
        assert!(reason("fake.pdf").contains("name says PDF"));
        assert!(reason("image.png").contains("Only text, Markdown, PDF"));
        assert!(reason("bad.json").contains("not valid JSON"));
        assert!(reason("huge.txt").contains("20 MiB"));
        assert!(reason("empty.txt").contains("empty"));
        assert_eq!(doc(&page, "good.md")["state"], "ready");
        // The server is still serving.
        assert_eq!(
            search(&app, &client, &base, "parking permits").await[0]["document"],
            "good.md"
        );
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn ingestion_resumes_where_it_stopped_after_a_restart(db: PgPool) {
        let mut first = app(db.clone()).await;
        let client = first.signed_up("resume@example.com").await;
        let base = create_base(&first, &client, "Resumable").await;
        let long: String = (0..40)
            .map(|i| {
                format!(
                    "## Section {i}\n\n{}\n\n",
                    "Words about the topic at hand. ".repeat(60)
                )
            })
            .collect();
        upload(&first, &client, &base, vec![("long.md", long.into_bytes())]).await;
        let page = settled(&first, &client, &base).await;
        let total = page["documents"][0]["chunks_total"].as_i64().unwrap();
        assert!(total > 10, "{total}");
        first.shut_down().await;

        // As if the server stopped halfway through embedding: half the
        // passages have no vector, and the job is back in the queue.
        let kept: Vec<(uuid::Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT id, vector::bytea FROM knowledge_chunks WHERE seq < $1 ORDER BY seq",
        )
        .bind((total / 2) as i32)
        .fetch_all(&db)
        .await
        .unwrap_or_default();
        sqlx::query("UPDATE knowledge_chunks SET vector = NULL WHERE seq >= $1")
            .bind((total / 2) as i32)
            .execute(&db)
            .await
            .unwrap();
        sqlx::query("UPDATE knowledge_documents SET state = 'embedding', chunks_embedded = $1")
            .bind((total / 2) as i32)
            .execute(&db)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE jobs SET state = 'queued', run_at = now(), attempts = 0 WHERE kind = 'ingest'",
        )
        .execute(&db)
        .await
        .unwrap();

        let second = app(db.clone()).await;
        let client = second.client();
        let res = second
            .sign_in(&client, "resume@example.com", crate::common::PASSWORD)
            .await;
        assert_eq!(res.status(), 200);
        let page = settled(&second, &client, &base).await;
        let d = &page["documents"][0];
        assert_eq!(d["state"], "ready", "{d}");
        assert_eq!(d["chunks_embedded"].as_i64(), Some(total));
        let missing: i64 =
            sqlx::query_scalar("SELECT count(*) FROM knowledge_chunks WHERE vector IS NULL")
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(missing, 0);
        let after: Vec<(uuid::Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT id, vector::bytea FROM knowledge_chunks WHERE seq < $1 ORDER BY seq",
        )
        .bind((total / 2) as i32)
        .fetch_all(&db)
        .await
        .unwrap_or_default();
        assert!(!kept.is_empty());
        assert_eq!(kept, after, "what was embedded before was not done again");
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn another_users_base_document_and_passage_are_not_found(db: PgPool) {
        let app = app(db).await;
        let owner = app.signed_up("owner@example.com").await;
        let base = create_base(&app, &owner, "Private").await;
        upload(
            &app,
            &owner,
            &base,
            vec![("handbook.md", HANDBOOK.as_bytes().to_vec())],
        )
        .await;
        let page = settled(&app, &owner, &base).await;
        let document = page["documents"][0]["id"].as_str().unwrap().to_owned();
        let chunk = search(&app, &owner, &base, "invoices").await[0]["chunk_id"]
            .as_str()
            .unwrap()
            .to_owned();

        let other = app.signed_up("other@example.com").await;
        for (name, form) in [
            ("knowledge_base", vec![("id", base.as_str())]),
            (
                "search_knowledge_base",
                vec![("id", base.as_str()), ("query", "invoices")],
            ),
            ("knowledge_passage", vec![("id", chunk.as_str())]),
            (
                "delete_knowledge_document",
                vec![("base", base.as_str()), ("id", document.as_str())],
            ),
            ("delete_knowledge_base", vec![("id", base.as_str())]),
        ] {
            let res = app.call(&other, name, &form).await;
            assert_eq!(res.status(), 404, "{name}");
        }
        let res = upload(&app, &other, &base, vec![("x.txt", b"sneaky".to_vec())]).await;
        assert_eq!(res.status(), 404);
        let listed = json(app.call(&other, "list_knowledge_bases", &[]).await).await;
        assert_eq!(listed, serde_json::json!([]));
        // Still the owner's, whole.
        assert_eq!(settled(&app, &owner, &base).await["base"]["documents"], 1);
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn deleting_a_document_or_a_base_takes_everything_derived(db: PgPool) {
        let app = app(db).await;
        let client = app.signed_up("tidy@example.com").await;
        let base = create_base(&app, &client, "Short-lived").await;
        upload(
            &app,
            &client,
            &base,
            vec![
                ("handbook.md", HANDBOOK.as_bytes().to_vec()),
                ("notes.txt", b"The wifi password rotates monthly.".to_vec()),
            ],
        )
        .await;
        let page = settled(&app, &client, &base).await;
        let handbook = doc(&page, "handbook.md")["id"].as_str().unwrap().to_owned();
        assert_eq!(
            search(&app, &client, &base, "invoices paid").await[0]["document"],
            "handbook.md"
        );
        let res = app
            .call(
                &client,
                "delete_knowledge_document",
                &[("base", base.as_str()), ("id", handbook.as_str())],
            )
            .await;
        assert_eq!(res.status(), 200);
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM knowledge_chunks WHERE document_id = $1::uuid",
        )
        .bind(&handbook)
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(left, 0);
        let hits = search(&app, &client, &base, "invoices paid").await;
        assert!(
            hits.as_array()
                .unwrap()
                .iter()
                .all(|h| h["document"] != "handbook.md"),
            "the search no longer finds it (the cached vectors moved on): {hits:#}"
        );

        let res = app
            .call(&client, "delete_knowledge_base", &[("id", base.as_str())])
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(app.count("SELECT count(*) FROM knowledge_bases").await, 0);
        assert_eq!(
            app.count("SELECT count(*) FROM knowledge_documents").await,
            0
        );
        assert_eq!(app.count("SELECT count(*) FROM knowledge_chunks").await, 0);
    }

    /// The agent form's fields, with `knowledge[]` ticked for `bases`.
    fn agent_form<'a>(name: &'a str, bases: &[&'a str]) -> Vec<(&'a str, &'a str)> {
        let mut form = vec![
            ("name", name),
            ("description", ""),
            ("system_prompt", ""),
            ("provider", "openai"),
            ("model", "demo"),
            ("temperature", ""),
            ("top_p", ""),
            ("max_output_tokens", ""),
            ("avatar", ""),
        ];
        form.extend(bases.iter().map(|b| ("knowledge[]", *b)));
        form
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn the_agent_form_chooses_the_bases_an_agent_answers_from(db: PgPool) {
        let app = app(db).await;
        let client = app.signed_up("form@example.com").await;
        let handbook = create_base(&app, &client, "Handbook").await;
        let policies = create_base(&app, &client, "Policies").await;
        let res = app
            .call(
                &client,
                "create_agent",
                &agent_form("Helper", &[&handbook, &policies]),
            )
            .await;
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        let agents = json(app.call(&client, "list_agents", &[]).await).await;
        let agent = agents[0]["id"].as_str().unwrap().to_owned();
        let detail = json(
            app.call(&client, "get_agent", &[("id", agent.as_str())])
                .await,
        )
        .await;
        let names: Vec<&str> = detail["knowledge"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Handbook", "Policies"]);
        let page = json(
            app.call(&client, "knowledge_base", &[("id", policies.as_str())])
                .await,
        )
        .await;
        assert_eq!(page["agents"][0]["uses"], true, "the base page agrees");

        // Saving with only one ticked keeps only that one.
        let mut form = agent_form("Helper", &[&handbook]);
        form.push(("id", agent.as_str()));
        let res = app.call(&client, "update_agent", &form).await;
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        let detail = json(
            app.call(&client, "get_agent", &[("id", agent.as_str())])
                .await,
        )
        .await;
        assert_eq!(detail["knowledge"].as_array().unwrap().len(), 1);
        assert_eq!(detail["knowledge"][0]["id"], handbook.as_str());

        // A duplicate answers from the same bases; an export names none.
        let res = app
            .call(&client, "duplicate_agent", &[("id", agent.as_str())])
            .await;
        assert!(res.status().is_success() || res.status().is_redirection());
        let copy: String = sqlx::query_scalar(
            "SELECT a.id::text FROM agents a JOIN agent_knowledge_bases ak ON ak.agent_id = a.id
             WHERE a.id <> $1::uuid",
        )
        .bind(&agent)
        .fetch_one(&app.db)
        .await
        .unwrap();
        let copied = json(
            app.call(&client, "get_agent", &[("id", copy.as_str())])
                .await,
        )
        .await;
        assert_eq!(copied["knowledge"][0]["id"], handbook.as_str());
        let export = client
            .get(app.url(&format!("/api/agents/{agent}/export")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !export.contains(&handbook) && !export.contains("Handbook"),
            "{export}"
        );

        // Another user's base cannot be chosen, and the agent is not saved.
        let other = app.signed_up("other-form@example.com").await;
        let res = app
            .call(&other, "create_agent", &agent_form("Sneaky", &[&handbook]))
            .await;
        assert!(res.status().is_client_error(), "{}", res.status());
        assert!(
            res.text()
                .await
                .unwrap()
                .contains("A knowledge base was chosen that no longer exists."),
        );
        assert_eq!(
            json(app.call(&other, "list_agents", &[]).await).await,
            serde_json::json!([])
        );
        // Nor added to the owner's agent by another user's edit.
        let mut form = agent_form("Helper", &[]);
        form.push(("id", agent.as_str()));
        assert_eq!(app.call(&other, "update_agent", &form).await.status(), 404);
        let detail = json(
            app.call(&client, "get_agent", &[("id", agent.as_str())])
                .await,
        )
        .await;
        assert_eq!(detail["knowledge"].as_array().unwrap().len(), 1);
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn an_agent_answers_from_its_knowledge_with_numbered_citations(db: PgPool) {
        use crate::common::{reply_when, scripted_agent, send_new};
        let (app, fake) = app_and_fake(db).await;
        let client = app.signed_up("cite@example.com").await;
        let base = create_base(&app, &client, "Handbook").await;
        upload(
            &app,
            &client,
            &base,
            vec![("handbook.md", HANDBOOK.as_bytes().to_vec())],
        )
        .await;
        settled(&app, &client, &base).await;
        // The offline demo model, through the OpenAI wire format.
        let agent = scripted_agent(&app, &client, fake, "openai", "demo", &[], &[], "").await;

        // Not attached yet: no passages, no citations.
        let sent = send_new(&app, &client, &agent, "When are invoices paid?").await;
        let reply = reply_when(
            &app,
            &client,
            sent["conversation_id"].as_str().unwrap(),
            "complete",
        )
        .await;
        assert!(!reply["body"].as_str().unwrap().contains("[1]"), "{reply}");

        let page = json(
            app.call(&client, "knowledge_base", &[("id", base.as_str())])
                .await,
        )
        .await;
        let listed = &page["agents"][0];
        assert_eq!(listed["agent_id"], agent.as_str());
        assert_eq!(listed["uses"], false);
        let res = app
            .call(
                &client,
                "set_agent_knowledge_base",
                &[
                    ("base", base.as_str()),
                    ("agent", agent.as_str()),
                    ("uses", "yes"),
                ],
            )
            .await;
        assert_eq!(res.status(), 200);

        let sent = send_new(&app, &client, &agent, "When are invoices paid?").await;
        let reply = reply_when(
            &app,
            &client,
            sent["conversation_id"].as_str().unwrap(),
            "complete",
        )
        .await;
        let body = reply["body"].as_str().unwrap();
        assert!(
            body.contains("Invoices are paid within thirty days") && body.contains("[1]"),
            "the demo model quotes the passage and cites it: {body}"
        );
        let sources = reply["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["type"] == "sources")
            .unwrap_or_else(|| panic!("no sources part: {reply:#}"))["sources"]
            .clone();
        assert_eq!(sources[0]["n"], 1);
        assert_eq!(sources[0]["document"], "handbook.md");
        assert_eq!(sources[0]["location"], "Invoices");
        let passage = json(
            app.call(
                &client,
                "knowledge_passage",
                &[("id", sources[0]["chunk_id"].as_str().unwrap())],
            )
            .await,
        )
        .await;
        assert!(passage["text"].as_str().unwrap().contains("thirty days"));

        // Another user cannot attach someone else's base or agent.
        let other = app.signed_up("not-cite@example.com").await;
        let res = app
            .call(
                &other,
                "set_agent_knowledge_base",
                &[
                    ("base", base.as_str()),
                    ("agent", agent.as_str()),
                    ("uses", "no"),
                ],
            )
            .await;
        assert_eq!(res.status(), 404);
    }
}
