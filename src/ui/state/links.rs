//! Finding web links in message text. Only `http://` and `https://` links
//! are made clickable (opened in the browser on a click, never by
//! themselves); anything else in a message stays plain text.

/// A piece of a message: plain text, or a link (with the URL to open).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Link { text: &'a str, url: String },
}

/// Longest link made clickable, in bytes.
pub const MAX_LINK: usize = 4096;

/// Splits `text` into plain pieces and links, in order; joined, the
/// pieces' texts are `text`.
pub fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut plain_from = 0;
    let mut at = 0;
    while let Some(found) = next_link(text, at) {
        let (start, end) = found;
        if start > plain_from {
            out.push(Piece::Text(&text[plain_from..start]));
        }
        let link = &text[start..end];
        // The scheme in lower case: "HTTPS://x" opens as "https://x".
        let colon = link.find(':').unwrap_or(0);
        let url = format!("{}{}", link[..colon].to_ascii_lowercase(), &link[colon..]);
        out.push(Piece::Link { text: link, url });
        plain_from = end;
        at = end;
    }
    if plain_from < text.len() {
        out.push(Piece::Text(&text[plain_from..]));
    }
    out
}

/// Whether `text` holds a link.
pub fn has_link(text: &str) -> bool {
    next_link(text, 0).is_some()
}

/// The byte range of the first link at or after `from`.
fn next_link(text: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let scheme = if starts_with_ignore_case(rest, b"https://") {
            8
        } else if starts_with_ignore_case(rest, b"http://") {
            7
        } else {
            i += 1;
            continue;
        };
        // A scheme inside a word ("xhttp://") is not a link.
        let boundary = i == 0
            || !text[..i]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric);
        let end = i + scheme + link_len(&text[i + scheme..]);
        let host_ok = text[i + scheme..end]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '[');
        if boundary && host_ok && end - i <= MAX_LINK {
            return Some((i, end));
        }
        i += scheme;
    }
    None
}

fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// How far a link goes after its scheme: up to white space, a quote or
/// angle bracket, a control or direction-changing character; then without
/// trailing punctuation and unmatched closing brackets.
fn link_len(rest: &str) -> usize {
    let mut end = rest
        .char_indices()
        .find(|(_, c)| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '<' | '>' | '"' | '`')
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
        })
        .map_or(rest.len(), |(i, _)| i);
    while let Some(last) = rest[..end].chars().next_back() {
        let unmatched = |open: char, close: char| {
            last == close && rest[..end].matches(open).count() < rest[..end].matches(close).count()
        };
        if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*')
            || unmatched('(', ')')
            || unmatched('[', ']')
            || unmatched('{', '}')
        {
            end -= last.len_utf8();
        } else {
            break;
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(text: &str) -> Vec<String> {
        pieces(text)
            .into_iter()
            .filter_map(|p| match p {
                Piece::Link { url, .. } => Some(url),
                Piece::Text(_) => None,
            })
            .collect()
    }

    #[test]
    fn web_links_are_found_and_trailing_punctuation_left_out() {
        assert_eq!(
            links("see https://example.org/a?b=1#c, or (http://x.test/wiki/Foo_(bar)). ok"),
            [
                "https://example.org/a?b=1#c",
                "http://x.test/wiki/Foo_(bar)"
            ]
        );
        assert_eq!(links("HTTPS://Example.org/X."), ["https://Example.org/X"]);
        assert_eq!(links("<https://a.test/>"), ["https://a.test/"]);
        assert_eq!(links("https://[::1]:8080/"), ["https://[::1]:8080/"]);
    }

    #[test]
    fn nothing_else_is_a_link() {
        for text in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "ftp://x.test/",
            "mailto:a@b.test",
            "data:text/html,<script>",
            "xhttps://x.test",
            "https://",
            "https:// x.test",
            "http:///etc/passwd",
            "smb://host/share",
            "kith://x",
            "no links here",
        ] {
            assert!(links(text).is_empty(), "{text:?}");
            assert!(!has_link(text), "{text:?}");
        }
    }

    #[test]
    fn pieces_join_back_to_the_text_and_hidden_characters_end_a_link() {
        let text = "a https://x.test/\u{202e}gpj.exe b http://y.test\nc";
        let joined: String = pieces(text)
            .iter()
            .map(|p| match p {
                Piece::Text(t) => *t,
                Piece::Link { text, .. } => *text,
            })
            .collect();
        assert_eq!(joined, text);
        assert_eq!(links(text), ["https://x.test/", "http://y.test"]);
        let long = format!("https://x.test/{}", "a".repeat(MAX_LINK));
        assert!(links(&long).is_empty());
    }
}
