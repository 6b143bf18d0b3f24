//! Tweets: the stored tweet, its text rules (length, hashtags, mentions, search words, all
//! extracted by pure functions of the body so every node indexes the same way), pages, and
//! search queries.

use serde::{Deserialize, Serialize};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

/// Longest tweet, in grapheme clusters (what a reader sees as one character: an emoji with skin
/// tone and joiners is one).
pub const TWEET_GRAPHEMES_MAX: usize = 280;
/// Longest tweet, in bytes. One grapheme cluster can carry any number of combining marks, so a
/// count of clusters alone bounds nothing; 280 of the longest common clusters (a family emoji,
/// 25 bytes) fit.
pub const TWEET_BODY_BYTES_MAX: usize = 8 * 1024;
/// Most accounts one user may follow. Bounds the k-way merge of a home timeline page.
pub const FOLLOWING_MAX: u64 = 5_000;
/// Longest hashtag or search word kept in an index, in bytes; longer ones are cut there, at a
/// character boundary, both when indexing and when querying, so they still match.
pub const TOKEN_BYTES_MAX: usize = 64;
/// Most distinct words a search query may name.
pub const SEARCH_WORDS_MAX: usize = 8;
/// Most index rows one search page may visit before it stops with what it found. Bounds a
/// search whose words are common but rarely together.
pub const SEARCH_ROWS_READ_MAX: usize = 200_000;

/// A tweet as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tweet {
    /// Global, increasing id from 1; also the tweet's cursor in every connection.
    pub id: u64,
    /// Who posted it.
    pub author_id: u64,
    /// The text, 1 to [`TWEET_GRAPHEMES_MAX`] grapheme clusters.
    pub body: String,
    /// The tweet it answers, if any (it may have been deleted since).
    pub reply_to: Option<u64>,
    /// When it was applied (state machine time).
    pub created_at_ms: i64,
    /// Lowercased hashtags, without '#', in order of first appearance.
    pub hashtags: Vec<String>,
    /// Accounts the body mentions, resolved at apply (names without an account stay text).
    pub mention_ids: Vec<u64>,
    /// Replies that exist now (deleting a reply decrements it).
    pub reply_count: u64,
}

/// Checks a tweet body; the schema calls it as a fast path, apply as the rule. The count is in
/// grapheme clusters (unicode-segmentation, deterministic for the version in Cargo.lock).
pub fn check_tweet_body(body: &str) -> Result<(), String> {
    if body.len() > TWEET_BODY_BYTES_MAX {
        return Err(format!("must be at most {TWEET_BODY_BYTES_MAX} bytes, got {}", body.len()));
    }
    let n = body.graphemes(true).count();
    if n == 0 || n > TWEET_GRAPHEMES_MAX || body.trim().is_empty() {
        return Err(format!("must be 1 to {TWEET_GRAPHEMES_MAX} characters and not blank, got {n}"));
    }
    Ok(())
}

fn cut(mut s: String) -> String {
    if s.len() > TOKEN_BYTES_MAX {
        let mut end = TOKEN_BYTES_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Folds text for search: NFKD, combining marks dropped (accents), lowercased.
fn fold(text: &str) -> String {
    text.nfkd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// The search words of `text`, in order, repeats kept: folded, split at anything that is not a
/// letter or digit.
pub fn words(text: &str) -> Vec<String> {
    fold(text).split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| cut(w.to_string())).collect()
}

fn is_tag_char(c: char) -> bool {
    // Combining marks too: a decomposed `e\u{301}` is part of the word `café`, not its end.
    c.is_alphanumeric() || c == '_' || is_combining_mark(c)
}

/// Runs of characters after `sigil` (at the start or after a character that is not part of a
/// word, so `a#b` and `mail@host` are neither tags nor mentions), as `is_part` accepts them.
fn sigil_runs(body: &str, sigil: char, is_part: impl Fn(char) -> bool) -> Vec<String> {
    let chars: Vec<char> = body.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i] == sigil && (i == 0 || !is_tag_char(chars[i - 1]));
        if starts {
            let run: String = chars[i + 1..].iter().take_while(|c| is_part(**c)).collect();
            i += 1 + run.chars().count();
            if !run.is_empty() {
                out.push(run);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Hashtags of a body: `#word` (letters, digits, '_'), lowercased, each once, in order.
pub fn hashtags(body: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in sigil_runs(body, '#', is_tag_char) {
        // NFC, so `#café` typed precomposed or decomposed is one tag.
        let tag = cut(tag.nfc().collect::<String>().to_lowercase());
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

/// Normalizes a hashtag given to `tweetsByHashtag` ("#Rust", "rust" and "RUST" are one tag).
pub fn normalize_tag(tag: &str) -> String {
    cut(tag.trim().trim_start_matches('#').nfc().collect::<String>().to_lowercase())
}

/// Names a body mentions (`@name`: letters, digits, '_' or '.', trailing dots dropped), each
/// once, as typed.
pub fn mention_names(body: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in sigil_runs(body, '@', |c| is_tag_char(c) || c == '.') {
        let name = name.trim_end_matches('.').to_string();
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// A newest-first page of tweets, with the index rows visited to build it, so tests and the
/// benchmark can see that a page costs its own size and not the size of a table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TweetPage {
    /// Tweets, newest first.
    pub tweets: Vec<Tweet>,
    /// Index rows read.
    pub rows_read: usize,
    /// The read stopped at its row budget ([`SEARCH_ROWS_READ_MAX`]) before the end of the
    /// index: older matches may exist below the last tweet returned.
    pub capped: bool,
}

/// Whether the body's words contain `phrase` as consecutive words.
pub(crate) fn has_phrase(body_words: &[String], phrase: &[String]) -> bool {
    phrase.is_empty() || body_words.windows(phrase.len()).any(|w| w == phrase)
}

/// A parsed search query: the distinct words every hit must contain, and phrases (quoted word
/// sequences) that must also appear in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchQuery {
    /// Distinct folded words.
    pub words: Vec<String>,
    /// Quoted phrases of two or more words, folded.
    pub phrases: Vec<Vec<String>>,
}

impl SearchQuery {
    /// Parses `text`: words in any order, `"quoted words"` as a phrase. An unclosed quote runs
    /// to the end.
    pub fn parse(text: &str) -> Result<SearchQuery, String> {
        let mut q = SearchQuery::default();
        for (i, part) in text.split('"').enumerate() {
            let ws = words(part);
            for w in &ws {
                if !q.words.contains(w) {
                    q.words.push(w.clone());
                }
            }
            if i % 2 == 1 && ws.len() > 1 {
                q.phrases.push(ws);
            }
        }
        if q.words.is_empty() {
            return Err("must contain at least one word".into());
        }
        if q.words.len() > SEARCH_WORDS_MAX {
            return Err(format!("at most {SEARCH_WORDS_MAX} distinct words, got {}", q.words.len()));
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_counted_in_grapheme_clusters() {
        // Phase 1: a family emoji (7 code points) and a flag (2) are one character each.
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}\u{200D}\u{1F466}";
        let thumbs = "\u{1F44D}\u{1F3FD}";
        assert!(check_tweet_body(&family.repeat(TWEET_GRAPHEMES_MAX)).is_ok());
        assert!(check_tweet_body(&thumbs.repeat(TWEET_GRAPHEMES_MAX)).is_ok());
        assert!(check_tweet_body(&"e\u{301}".repeat(TWEET_GRAPHEMES_MAX)).is_ok());
        // Phase 2: one more is over; empty and blank bodies are refused.
        assert!(check_tweet_body(&family.repeat(TWEET_GRAPHEMES_MAX + 1)).is_err());
        assert!(check_tweet_body("").is_err());
        assert!(check_tweet_body("  \n").is_err());
        // Phase 3: one grapheme with thousands of combining marks is over the byte limit.
        let zalgo = format!("e{}", "\u{301}".repeat(TWEET_BODY_BYTES_MAX));
        assert_eq!(zalgo.graphemes(true).count(), 1);
        assert!(check_tweet_body(&zalgo).unwrap_err().contains("bytes"));
    }

    #[test]
    fn tags_mentions_and_words_are_extracted_the_same_way_everywhere() {
        // Phase 1: tags are lowercased once each; `a#b` and e-mail addresses are not sigils.
        assert_eq!(hashtags("#Rust and #rust, #Café_2 a#b"), vec!["rust", "café_2"]);
        // Precomposed and decomposed accents are one tag, not `cafe` cut at the mark.
        assert_eq!(hashtags("#caf\u{e9} #cafe\u{301}"), vec!["caf\u{e9}"]);
        assert_eq!(normalize_tag("#CAFE\u{301}"), "caf\u{e9}");
        assert_eq!(mention_names("hi @Alice. and @bob_1, mail a@b.c @alice"), vec!["Alice", "bob_1", "alice"]);
        // Phase 2: search words are accent- and case-folded.
        assert_eq!(words("Crème BRÛLÉE, naïve!"), vec!["creme", "brulee", "naive"]);
        // Phase 3: a quoted phrase adds its words and an ordered constraint.
        let q = SearchQuery::parse("rust \"flash sale\"").expect("query");
        assert_eq!(q.words, vec!["rust", "flash", "sale"]);
        assert_eq!(q.phrases, vec![vec!["flash".to_string(), "sale".to_string()]]);
        assert!(SearchQuery::parse(" ,; ").is_err());
    }
}
