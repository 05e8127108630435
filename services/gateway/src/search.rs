//! Message search: the query language (`budget "next year" from:alice in:Ops
//! before:2027-01-01`), the resolution of names to ids, and highlighting. Matching and
//! ranking are storage's (`Store::search`, which also limits every search to the
//! searcher's conversations); highlighting is done here, once for every backend.

use switchboard_protocol::rest::{SearchParams, SearchResponse};
use switchboard_protocol::{ConversationKind, SearchHit, SearchSort};
use switchboard_storage::{SearchQuery, SearchTerm, User};

use crate::{ApiError, Gateway};

/// Longest query text accepted, in bytes.
const MAX_QUERY_BYTES: usize = 1000;
/// Most terms (words, phrases, prefixes) in one query.
const MAX_TERMS: usize = 20;
/// Results per page when the client does not say.
const DEFAULT_PAGE: u32 = 20;
/// A body longer than this (in bytes) is shown as an excerpt around the first match.
const EXCERPT: usize = 280;
/// How much of the excerpt comes before the first match, at most.
const EXCERPT_LEAD: usize = 80;

/// A query's text, taken apart.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub terms: Vec<SearchTerm>,
    pub from: Option<String>,
    pub in_conversation: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub on: Option<String>,
}

/// The words of `text`: lower-cased runs of letters and digits, as both storage engines
/// split text (punctuation separates words). With their byte ranges in `text`.
fn words(text: &str) -> Vec<(usize, usize, String)> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (start, c.is_alphanumeric()) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                words.push((s, i, text[s..i].to_lowercase()));
                start = None;
            }
            _ => {}
        }
    }
    words
}

/// The terms a piece of text stands for: one word, a prefix (`budg*`), or a phrase when
/// punctuation splits it (`budget-2027` is the phrase "budget 2027").
fn terms_of(text: &str, quoted: bool) -> Option<SearchTerm> {
    let mut found: Vec<String> = words(text).into_iter().map(|(_, _, w)| w).collect();
    match found.len() {
        0 => None,
        1 if !quoted && text.ends_with('*') => Some(SearchTerm::Prefix(found.remove(0))),
        1 => Some(SearchTerm::Word(found.remove(0))),
        _ => Some(SearchTerm::Phrase(found)),
    }
}

/// Splits the query into pieces: `"quoted text"` (quoted: true) or runs without spaces,
/// where `key:"quoted value"` stays one piece (with the quotes removed from the value).
fn pieces(q: &str) -> Vec<(String, bool)> {
    let mut pieces = Vec::new();
    let mut chars = q.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut piece = String::new();
        let mut quoted = false;
        if c == '"' {
            chars.next();
            quoted = true;
            // An unterminated quote runs to the end: lenient, as people type.
            piece.extend(chars.by_ref().take_while(|&c| c != '"'));
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '"' && piece.ends_with(':') {
                    piece.extend(chars.by_ref().take_while(|&c| c != '"'));
                    break;
                }
                piece.push(c);
            }
        }
        pieces.push((piece, quoted));
    }
    pieces
}

/// Takes a query's text apart. Unknown `key:value` pieces are searched as text.
pub fn parse(q: &str) -> Result<Parsed, ApiError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(ApiError::invalid(format!(
            "a search query is limited to {MAX_QUERY_BYTES} bytes"
        )));
    }
    let mut parsed = Parsed::default();
    for (piece, quoted) in pieces(q) {
        if !quoted && let Some((key, value)) = piece.split_once(':') {
            let slot = match key.to_ascii_lowercase().as_str() {
                "from" => Some(&mut parsed.from),
                "in" => Some(&mut parsed.in_conversation),
                "before" => Some(&mut parsed.before),
                "after" => Some(&mut parsed.after),
                "on" | "during" => Some(&mut parsed.on),
                _ => None,
            };
            if let Some(slot) = slot {
                if value.is_empty() {
                    return Err(ApiError::invalid(format!("{key}: needs a value")));
                }
                *slot = Some(value.to_owned());
                continue;
            }
        }
        parsed.terms.extend(terms_of(&piece, quoted));
    }
    if parsed.terms.len() > MAX_TERMS {
        return Err(ApiError::invalid(format!("a search has at most {MAX_TERMS} terms")));
    }
    Ok(parsed)
}

/// Milliseconds since the Unix epoch at the start (UTC) of a `YYYY-MM-DD` day.
pub fn day_start(date: &str, operator: &str) -> Result<i64, ApiError> {
    let bad =
        || ApiError::invalid(format!("{operator}: wants a date like 2027-01-31, not {date:?}"));
    let mut parts = date.splitn(3, '-');
    let mut next = |len: usize| {
        parts
            .next()
            .filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    let (y, m, d) = (next(4)?, next(2)?, next(2)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month[(m - 1) as usize] {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm), proleptic Gregorian.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400_000)
}

/// The body (or an excerpt of it) in pieces: even positions plain, odd positions matching
/// `terms`. See [`SearchHit::highlight`].
pub fn highlight(body: &str, terms: &[SearchTerm]) -> Vec<String> {
    let tokens = words(body);
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (i, (start, end, word)) in tokens.iter().enumerate() {
        for term in terms {
            match term {
                SearchTerm::Word(w) if word == w => spans.push((*start, *end)),
                SearchTerm::Prefix(p) if word.starts_with(p.as_str()) => spans.push((*start, *end)),
                SearchTerm::Phrase(ws)
                    if tokens.len() - i >= ws.len()
                        && ws.iter().zip(&tokens[i..]).all(|(w, t)| *w == t.2) =>
                {
                    spans.push((*start, tokens[i + ws.len() - 1].1));
                }
                _ => {}
            }
        }
    }
    spans.sort_unstable();
    // Overlapping or touching spans become one.
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    // A long body: an excerpt around the first match, cut at character boundaries.
    let (mut from, mut to) = (0, body.len());
    if body.len() > EXCERPT {
        let first = merged.first().map_or(0, |s| s.0);
        from = first.saturating_sub(EXCERPT_LEAD);
        while !body.is_char_boundary(from) {
            from -= 1;
        }
        to = (from + EXCERPT).min(body.len());
        while !body.is_char_boundary(to) {
            to -= 1;
        }
    }
    let mut pieces = vec![if from > 0 { "…".to_owned() } else { String::new() }];
    let mut at = from;
    for (start, end) in merged {
        let (start, end) = (start.max(from), end.min(to));
        if start >= end {
            continue;
        }
        // The plain text before this match joins the last plain piece.
        let last = pieces.len() - 1;
        pieces[last].push_str(&body[at..start]);
        pieces.push(body[start..end].to_owned());
        pieces.push(String::new());
        at = end;
    }
    let last = pieces.len() - 1;
    pieces[last].push_str(&body[at..to]);
    if to < body.len() {
        pieces[last].push('…');
    }
    pieces
}

impl Gateway {
    /// Searches the messages of `viewer`'s conversations (see [`SearchParams`]).
    pub async fn search(
        &self,
        viewer: &User,
        params: SearchParams,
    ) -> Result<SearchResponse, ApiError> {
        let parsed = parse(&params.q)?;
        let from = params.from.or(parsed.from);
        let in_conversation = params.in_conversation.or(parsed.in_conversation);
        let mut after =
            params.after.or(parsed.after).map(|d| day_start(&d, "after")).transpose()?;
        let mut before =
            params.before.or(parsed.before).map(|d| day_start(&d, "before")).transpose()?;
        if let Some(on) = parsed.on {
            let day = day_start(&on, "on")?;
            after = Some(after.map_or(day, |a| a.max(day)));
            before = Some(before.map_or(day + 86_400_000, |b| b.min(day + 86_400_000)));
        }
        if parsed.terms.is_empty() && from.is_none() && in_conversation.is_none() {
            return Err(ApiError::invalid(
                "say what to search for: words, \"a phrase\", from:someone or in:conversation",
            ));
        }
        let from = match from {
            Some(name) => Some(self.store().user_by_name(name.trim_start_matches('@')).await?.id),
            None => None,
        };
        let conversations = match in_conversation {
            Some(name) => Some(self.conversations_named(viewer, &name).await?),
            None => None,
        };
        let query = SearchQuery {
            terms: parsed.terms,
            from,
            conversations,
            after,
            before,
            sort: match params.sort.unwrap_or_default() {
                SearchSort::Relevance => switchboard_storage::SearchSort::Relevance,
                SearchSort::Recent => switchboard_storage::SearchSort::Recent,
            },
            offset: params.offset.unwrap_or(0),
            limit: params.limit.unwrap_or(DEFAULT_PAGE),
        };
        let page = self.store().search(viewer, &query).await?;
        let results = page
            .messages
            .into_iter()
            .map(|message| SearchHit { highlight: highlight(&message.body, &query.terms), message })
            .collect();
        Ok(SearchResponse { results, has_more: page.has_more })
    }

    /// The ids `in:` names among `viewer`'s conversations: an id, a group's name
    /// (ignoring case), or a username (the direct conversation with them).
    async fn conversations_named(&self, viewer: &User, name: &str) -> Result<Vec<i64>, ApiError> {
        if let Ok(id) = name.parse::<i64>() {
            return Ok(vec![id]);
        }
        let name = name.trim_start_matches(['#', '@']).to_lowercase();
        let mine = self.store().conversations_of(viewer.id).await?;
        let ids: Vec<i64> = mine
            .iter()
            .filter(|c| match c.kind {
                ConversationKind::Group => c.name.to_lowercase() == name,
                ConversationKind::Direct => {
                    c.members.iter().any(|m| m.to_lowercase() == name)
                        && (name == viewer.username.to_lowercase() || c.members.len() == 2)
                }
            })
            .map(|c| c.id)
            .collect();
        if ids.is_empty() {
            return Err(ApiError::invalid(format!(
                "in: none of your conversations is called {name:?}"
            )));
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(w: &str) -> SearchTerm {
        SearchTerm::Word(w.into())
    }

    #[test]
    fn queries_take_words_phrases_prefixes_and_operators() {
        let parsed = parse(
            r#"Budget "next year" budg* budget-2027 from:alice in:"Floor 3" before:2027-01-31 x:y"#,
        )
        .unwrap();
        assert_eq!(
            parsed.terms,
            [
                word("budget"),
                SearchTerm::Phrase(vec!["next".into(), "year".into()]),
                SearchTerm::Prefix("budg".into()),
                SearchTerm::Phrase(vec!["budget".into(), "2027".into()]),
                SearchTerm::Phrase(vec!["x".into(), "y".into()]),
            ]
        );
        assert_eq!(parsed.from.as_deref(), Some("alice"));
        assert_eq!(parsed.in_conversation.as_deref(), Some("Floor 3"));
        assert_eq!(parsed.before.as_deref(), Some("2027-01-31"));
        // Syntax of the engines is just punctuation here.
        assert_eq!(parse(r#"a" OR "c1 NEAR(x)"#).unwrap().terms.len(), 3);
        assert_eq!(parse("\"unterminated phrase").unwrap().terms.len(), 1);
        assert!(parse("from:").is_err());
        assert!(parse(&"w ".repeat(21)).is_err());
    }

    #[test]
    fn days_are_utc_midnights() {
        assert_eq!(day_start("1970-01-01", "on").unwrap(), 0);
        assert_eq!(day_start("2000-03-01", "on").unwrap(), 951_868_800_000);
        assert_eq!(day_start("2024-02-29", "on").unwrap(), 1_709_164_800_000);
        for bad in ["2023-02-29", "2024-13-01", "24-01-01", "2024-1-01", "yesterday"] {
            assert!(day_start(bad, "before").is_err(), "{bad}");
        }
    }

    #[test]
    fn highlights_mark_words_prefixes_and_phrases() {
        let terms = [word("budget"), SearchTerm::Prefix("plan".into())];
        assert_eq!(
            highlight("The Budget: planning, budgets", &terms),
            ["The ", "Budget", ": ", "planning", ", budgets"]
        );
        let phrase = [SearchTerm::Phrase(vec!["budget".into(), "2027".into()])];
        assert_eq!(
            highlight("budget-2027 and budget", &phrase),
            ["", "budget-2027", " and budget"]
        );
        assert_eq!(highlight("nothing here", &phrase), ["nothing here"]);
        // A long body: an excerpt around the first match.
        let body = format!("{} needle {}", "é".repeat(200), "z".repeat(400));
        let pieces = highlight(&body, &[word("needle")]);
        assert_eq!(pieces.len(), 3);
        assert!(pieces[0].starts_with('…') && pieces[2].ends_with('…'));
        assert_eq!(pieces[1], "needle");
        assert!(pieces.concat().len() < 300);
    }
}
