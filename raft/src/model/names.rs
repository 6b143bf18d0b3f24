//! Username policy and identity keys, following Unicode TS #39 (Unicode Security Mechanisms).
//!
//! A username has two forms. The *normalized* form ([`normalize`]: trimmed, NFKC) is what
//! the user sees and what the policy ([`validate`]) judges. The *canonical* form
//! ([`canonical`]) is the identity key: two names with the same canonical form look alike
//! to a reader, so only one of them may exist. Uniqueness and reserved-word checks must
//! compare canonical forms, never the raw strings.
//!
//! # Canonical form
//!
//! `canonical` applies, in order: trim, NFKC, full case folding, the TS #39 confusable
//! skeleton, and case folding again; that whole step is repeated until the string stops
//! changing (one or two rounds in practice). Why each part is there:
//!
//! * NFKC folds compatibility variants (fullwidth `ａｄｍｉｎ`, ligatures, superscripts)
//!   onto their ordinary letters, so they cannot be used to register look-alikes.
//! * Case folding makes `Alice`, `alice` and `ALICE` one identity. Folding is full
//!   folding (`ß` and `ẞ` become `ss`), computed as lowercase(uppercase(lowercase(c)))
//!   per character with the standard library's tables. That equals Unicode's
//!   `CaseFolding.txt` full folding except for two cases that do not matter here:
//!   dotless `ı` becomes `i` (the skeleton maps `ı` to `i` anyway), and Cherokee
//!   letters fold to lowercase instead of uppercase (Cherokee is not an allowed
//!   identifier script under the TS #39 General Security Profile, so it never validates).
//!   This avoids a dependency on the `caseless` crate.
//! * The skeleton maps each character onto a prototype from `confusables.txt`, so
//!   `аlice` with a Cyrillic `а` becomes `alice`. The skeleton is case-sensitive and
//!   sometimes *produces* capitals or non-NFKC text (`0` becomes `O`, `I` becomes `l`,
//!   `%` becomes `°/₀`), which is why the step folds again and repeats until it reaches
//!   a fixed point: that makes `canonical` idempotent, and makes `user0`, `userO` and
//!   `usero` one identity.
//! * The skeleton maps `m` to `rn` (not the reverse), so `canonical("admin")` is
//!   `"adrnin"`. Canonical forms are keys, never shown to users.
//!
//! Canonical forms depend on Unicode tables compiled into the binary
//! (`unicode-normalization`, `unicode-security`, and the Rust standard library's case
//! tables). Every Raft node must therefore run the same build; upgrading those crates
//! or the toolchain can change some keys and should be treated like a data migration.
//!
//! # Policy
//!
//! [`validate`] applies these rules in order and reports the first one broken:
//!
//! 1. Not empty after trimming whitespace.
//! 2. Between [`USERNAME_CHARS_MIN`] and [`USERNAME_CHARS_MAX`] characters, counted on
//!    the NFKC form, so a precomposed and a decomposed `é` count the same.
//! 3. Only letters, digits, combining marks attached to a letter, `_` and `.`. Characters
//!    must also be `Identifier_Status=Allowed` under the TS #39 General Security Profile,
//!    which excludes unassigned code points, obsolete and limited-use scripts, and
//!    format characters such as zero-width joiners. No more than four combining marks
//!    may follow one letter and none may repeat (TS #39 section 5.4), which stops
//!    "zalgo" stacks.
//! 4. `_` and `.` are separators: they may not start or end the name or touch each other.
//! 5. One script only: the TS #39 resolved script set of the NFKC form must be non-empty
//!    (Common and Inherited characters such as digits are ignored, and Han may mix with
//!    Hiragana/Katakana or Hangul as in Japanese and Korean writing). This blocks
//!    whole-name spoofs like `pаypal` with a Cyrillic `а`.
//! 6. Not a reserved word ([`RESERVED_WORDS`]), compared by canonical form with the
//!    separators removed, so `ADMIN`, `аdmin` and `ad.min` are all reserved. This rule
//!    has its own error variant ([`NameError::Reserved`]) because callers report it as
//!    blocked rather than invalid.
//!
//! Character positions in errors are 0-based char indices into the string passed in,
//! leading whitespace included, so a caller can point at the character the user typed.
//!
//! # Suggestions
//!
//! [`suggestion_candidates`] proposes alternatives when a name is taken or invalid. It
//! cleans the input into a base (disallowed characters dropped, look-alike letters from
//! a minority script replaced by their prototype, `"user"` if nothing usable or only a
//! reserved word is left), then appends small numbers, word suffixes and numbers drawn
//! from a salted SplitMix64, truncating the base so every candidate fits. Each candidate
//! passes [`validate`] and has its own canonical form, so the caller only has to check
//! availability. A reserved base is replaced rather than decorated, because names like
//! `admin_hq` or `support1` impersonate the operator as well as the bare word does.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use unicode_normalization::char::{decompose_canonical, decompose_compatible, is_combining_mark};
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};
use unicode_security::mixed_script::AugmentedScriptSet;
use unicode_security::{skeleton, GeneralSecurityProfile};

/// Fewest characters (of the NFKC form) a username may have.
pub const USERNAME_CHARS_MIN: usize = 3;

/// Most characters (of the NFKC form) a username may have.
pub const USERNAME_CHARS_MAX: usize = 30;

/// Most candidates [`suggestion_candidates`] returns.
pub const SUGGESTION_CANDIDATES_MAX: usize = 24;

/// Names nobody may register, because they impersonate the operator, collide with
/// routes or mail addresses, or confuse software that treats them specially.
/// Matching is by canonical form with separators removed; see [`is_reserved`].
pub const RESERVED_WORDS: &[&str] = &[
    "admin",
    "administrator",
    "root",
    "support",
    "api",
    "www",
    "help",
    "system",
    "moderator",
    "mod",
    "staff",
    "security",
    "null",
    "undefined",
    "graphql",
    "raft",
    "official",
    "owner",
    "billing",
    "abuse",
    "postmaster",
    "webmaster",
    "hostmaster",
    "info",
    "mail",
    "noreply",
    "settings",
    "login",
    "logout",
    "register",
    "signup",
    "about",
    "status",
];

/// TS #39 section 5.4 suggests forbidding more than four nonspacing marks in a row.
const MARKS_PER_LETTER_MAX: usize = 4;

/// The step in [`canonical`] reached its fixed point within two rounds for every code
/// point when this was written (the idempotence tests exercise that); the bound only
/// guarantees termination should newer Unicode data need more.
const CANONICAL_ROUNDS_MAX: usize = 8;

/// The base used for suggestions when nothing usable is left of the input.
const FALLBACK_BASE: &str = "user";

/// Suffixes tried after `_`; only Latin bases keep them, because on any other script
/// they would make the name mixed-script and fail validation.
const WORD_SUFFIXES: &[&str] = &["hq", "io", "real"];

/// Prefixes tried before `_`, under the same single-script caveat as the suffixes.
const WORD_PREFIXES: &[&str] = &["the"];

/// Why a username is not acceptable. Every variant carries the values the message
/// needs, so callers can build their own wording or machine-readable codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Nothing is left after trimming whitespace.
    Empty,
    /// The NFKC form has `len` characters, outside `min..=max`.
    Length { len: usize, min: usize, max: usize },
    /// `ch` at char index `position` of the input is not a letter, digit, attached
    /// combining mark, `_` or `.`, or is outside the TS #39 General Security Profile.
    DisallowedChar { ch: char, position: usize },
    /// The name starts with the separator `ch`.
    LeadingSeparator { ch: char, position: usize },
    /// The name ends with the separator `ch`.
    TrailingSeparator { ch: char, position: usize },
    /// Two separators are adjacent; `position` is the first one's.
    ConsecutiveSeparators { first: char, second: char, position: usize },
    /// Letters from more than one script, in order of first appearance.
    MixedScripts { scripts: Vec<&'static str> },
    /// The name is canonically one of [`RESERVED_WORDS`].
    Reserved { word: &'static str },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "username is empty"),
            NameError::Length { len, min, max } => {
                write!(f, "username must be {min} to {max} characters, got {len}")
            }
            NameError::DisallowedChar { ch, position } => write!(
                f,
                "character '{}' at position {position} is not allowed: use letters, digits, '_' or '.'",
                ch.escape_debug()
            ),
            NameError::LeadingSeparator { ch, .. } => {
                write!(f, "username cannot start with '{ch}'")
            }
            NameError::TrailingSeparator { ch, .. } => {
                write!(f, "username cannot end with '{ch}'")
            }
            NameError::ConsecutiveSeparators { first, second, position } => write!(
                f,
                "separators '{first}{second}' at position {position} are adjacent: put a letter or digit between them"
            ),
            NameError::MixedScripts { scripts } => {
                write!(f, "username mixes scripts ({}): use one script", scripts.join(", "))
            }
            NameError::Reserved { word } => write!(f, "\"{word}\" is a reserved word"),
        }
    }
}

impl std::error::Error for NameError {}

/// The form a username is judged and displayed in: surrounding whitespace trimmed, NFKC.
/// Callers should store this form, since the length and script rules measure it.
pub fn normalize(input: &str) -> String {
    input.trim().nfkc().collect()
}

/// The identity key of a username: names with equal keys look alike and must not both
/// exist. Total, deterministic and idempotent; see the module documentation for the
/// steps and why each is needed.
pub fn canonical(input: &str) -> String {
    let mut current = canonical_round(input);
    for _ in 1..CANONICAL_ROUNDS_MAX {
        let next = canonical_round(&current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

/// One round of the canonical step. It trims again because a skeleton can begin or end
/// with a space (U+309B's NFKC form starts with one), and a fixed point must be trimmed
/// for `canonical` to be idempotent.
fn canonical_round(s: &str) -> String {
    let folded = case_fold(&s.trim().nfkc().collect::<String>());
    let skeleton: String = skeleton(&folded).collect();
    case_fold(&skeleton).trim().to_string()
}

/// Full case folding as lowercase(uppercase(lowercase(c))). The inner lowercase is needed
/// for capital sharp s (`ẞ` uppercases to itself but lowercases to `ß`, which
/// uppercases to `SS`); the outer pair maps `ß` to `ss` and final sigma to `σ`.
/// Characters are mapped one at a time, so no context-sensitive rules apply.
fn case_fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).flat_map(char::to_uppercase).flat_map(char::to_lowercase).collect()
}

/// The reserved word `input` canonically equals, ignoring `_` and `.`, if any.
pub fn is_reserved(input: &str) -> Option<&'static str> {
    let key = without_separators(&canonical(input));
    reserved_keys().iter().find(|(reserved, _)| *reserved == key).map(|(_, word)| *word)
}

/// The canonical keys of the reserved words, computed once since they never change.
fn reserved_keys() -> &'static [(String, &'static str)] {
    static KEYS: OnceLock<Vec<(String, &'static str)>> = OnceLock::new();
    KEYS.get_or_init(|| RESERVED_WORDS.iter().map(|word| (without_separators(&canonical(word)), *word)).collect())
}

fn without_separators(s: &str) -> String {
    s.chars().filter(|c| !is_separator(*c)).collect()
}

fn is_separator(c: char) -> bool {
    c == '_' || c == '.'
}

/// Checks `input` against the username policy; see the module documentation for the
/// rules and their order. `Err(NameError::Reserved { .. })` means the name is
/// well-formed but blocked.
pub fn validate(input: &str) -> Result<(), NameError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    let normalized = normalize(input);
    let len = normalized.chars().count();
    if !(USERNAME_CHARS_MIN..=USERNAME_CHARS_MAX).contains(&len) {
        return Err(NameError::Length { len, min: USERNAME_CHARS_MIN, max: USERNAME_CHARS_MAX });
    }
    let pieces = pieces(input);
    check_chars(&pieces)?;
    check_separators(&pieces)?;
    check_scripts(&normalized)?;
    match is_reserved(input) {
        Some(word) => Err(NameError::Reserved { word }),
        None => Ok(()),
    }
}

/// A run of input characters that NFKC normalizes independently of its neighbours: one
/// starter plus the marks (or Hangul medial and final jamo) that may combine with it.
/// Normalizing piece by piece gives the same text as normalizing the whole string (the
/// tests check this), and lets errors point at the characters the user typed.
struct Piece<'a> {
    /// Char index of the piece's first character in the untrimmed input.
    position: usize,
    source: &'a str,
    normalized: String,
}

fn pieces(input: &str) -> Vec<Piece<'_>> {
    let lead = input.chars().take_while(|c| c.is_whitespace()).count();
    let trimmed = input.trim();
    let mut pieces = Vec::new();
    let mut start_byte = 0;
    let mut start_position = lead;
    for (index, (byte, c)) in trimmed.char_indices().enumerate() {
        if index > 0 && starts_piece(c) {
            pieces.push(piece(&trimmed[start_byte..byte], start_position));
            start_byte = byte;
            start_position = lead + index;
        }
    }
    if start_byte < trimmed.len() {
        pieces.push(piece(&trimmed[start_byte..], start_position));
    }
    pieces
}

fn piece(source: &str, position: usize) -> Piece<'_> {
    Piece { position, source, normalized: source.nfkc().collect() }
}

/// Whether NFKC can never merge `c` into the preceding text. Composition only ever
/// attaches a character whose NFKC quick-check value is `Maybe` (combining marks, Hangul
/// medial and final jamo, and a few spacing vowel signs such as Kirat Rai's) to the
/// starter before it, so looking at the first character of `c`'s compatibility
/// decomposition suffices; that also catches characters such as halfwidth U+FF9E, which
/// decomposes to a combining voiced sound mark. Combining marks never start a piece even
/// when they cannot compose, because the mark rules judge a mark by the letter it sits on.
fn starts_piece(c: char) -> bool {
    let mut first = None;
    decompose_compatible(c, |d| {
        if first.is_none() {
            first = Some(d);
        }
    });
    let d = first.unwrap_or(c);
    !is_combining_mark(d) && is_nfkc_quick(std::iter::once(d)) == IsNormalized::Yes
}

/// Whether a character of a normalized name is acceptable on its own (rule 3, before
/// the attachment rules for marks).
fn allowed_char(c: char) -> bool {
    is_separator(c) || ((c.is_alphanumeric() || is_combining_mark(c)) && c.identifier_allowed())
}

fn check_chars(pieces: &[Piece<'_>]) -> Result<(), NameError> {
    for piece in pieces {
        if let Some(bad) = piece.normalized.chars().find(|c| !allowed_char(*c)) {
            return Err(blame(piece, |c| {
                let mut hit = false;
                decompose_compatible(c, |d| hit |= d == bad);
                hit
            }));
        }
        // A mark must sit on a letter: on a digit, a separator or nothing at all it only
        // serves to disguise the character under it.
        let base_is_letter =
            piece.normalized.chars().next().is_some_and(|c| c.is_alphabetic() && !is_combining_mark(c));
        let mut marks: Vec<char> = Vec::new();
        for (offset, c) in piece.source.chars().enumerate() {
            let mut offending = false;
            decompose_canonical(c, |d| {
                if is_combining_mark(d) {
                    offending |= !base_is_letter || marks.contains(&d) || marks.len() >= MARKS_PER_LETTER_MAX;
                    marks.push(d);
                }
            });
            if offending {
                return Err(NameError::DisallowedChar { ch: c, position: piece.position + offset });
            }
        }
    }
    Ok(())
}

/// Picks the input character of `piece` to report: the first one `guilty` accepts, or
/// the piece's first character when only the combination is at fault.
fn blame(piece: &Piece<'_>, guilty: impl Fn(char) -> bool) -> NameError {
    let found = piece
        .source
        .chars()
        .enumerate()
        .find(|(_, c)| guilty(*c))
        .or_else(|| piece.source.chars().next().map(|c| (0, c)));
    match found {
        Some((offset, ch)) => NameError::DisallowedChar { ch, position: piece.position + offset },
        // Pieces are never empty, so this arm is unreachable; it still yields an error
        // rather than panicking.
        None => NameError::DisallowedChar { ch: char::REPLACEMENT_CHARACTER, position: piece.position },
    }
}

fn check_separators(pieces: &[Piece<'_>]) -> Result<(), NameError> {
    // Every normalized character paired with the input position of its piece.
    let chars: Vec<(char, usize)> =
        pieces.iter().flat_map(|p| p.normalized.chars().map(move |c| (c, p.position))).collect();
    if let Some(&(ch, position)) = chars.first() {
        if is_separator(ch) {
            return Err(NameError::LeadingSeparator { ch, position });
        }
    }
    for pair in chars.windows(2) {
        let ((first, position), (second, _)) = (pair[0], pair[1]);
        if is_separator(first) && is_separator(second) {
            return Err(NameError::ConsecutiveSeparators { first, second, position });
        }
    }
    if let Some(&(ch, position)) = chars.last() {
        if is_separator(ch) {
            return Err(NameError::TrailingSeparator { ch, position });
        }
    }
    Ok(())
}

fn check_scripts(normalized: &str) -> Result<(), NameError> {
    if !AugmentedScriptSet::for_str(normalized).is_empty() {
        return Ok(());
    }
    let scripts = script_groups(normalized).iter().map(|(set, _)| script_set_name(set)).collect();
    Err(NameError::MixedScripts { scripts })
}

/// Splits the non-Common characters of `s` into groups that are each single-script,
/// greedily in order of appearance, with each group's character count. Used to name
/// the scripts in errors and to find the dominant script when cleaning input.
fn script_groups(s: &str) -> Vec<(AugmentedScriptSet, usize)> {
    let mut groups: Vec<(AugmentedScriptSet, usize)> = Vec::new();
    for c in s.chars() {
        let set = AugmentedScriptSet::for_char(c);
        if set.is_all() {
            continue;
        }
        let joined = groups.iter_mut().find_map(|(group, count)| {
            let mut both = *group;
            both.intersect_with(set);
            (!both.is_empty()).then_some((group, count, both))
        });
        match joined {
            Some((group, count, both)) => {
                *group = both;
                *count += 1;
            }
            None => groups.push((set, 1)),
        }
    }
    groups
}

/// A readable name for a script set: its first script (sets with several, such as the
/// Arabic-Indic digits, are named after the first), or the writing system the Han
/// augmentation implies when the plain scripts cancelled out.
fn script_set_name(set: &AugmentedScriptSet) -> &'static str {
    if let Some(script) = set.base.iter().next() {
        return script.full_name();
    }
    if set.jpan {
        "Japanese"
    } else if set.kore {
        "Korean"
    } else if set.hanb {
        "Han with Bopomofo"
    } else {
        "Unknown"
    }
}

/// Up to [`SUGGESTION_CANDIDATES_MAX`] alternative names derived from `input`, best
/// first. Every candidate passes [`validate`], their canonical forms are pairwise
/// distinct and differ from `canonical(input)`, and the result depends only on
/// `(input, salt)`. Invalid input is cleaned first (disallowed characters dropped,
/// spaces and hyphens turned into `_`, look-alike letters from a minority script
/// replaced by their prototype); reserved or empty results fall back to `"user"`.
/// The caller still has to check each candidate against existing names.
pub fn suggestion_candidates(input: &str, salt: u64) -> Vec<String> {
    let base = suggestion_base(input);
    let mut seen: HashSet<String> = HashSet::new();
    seen.insert(canonical(input));
    let mut out = Vec::new();
    let mut offer = |candidate: String, out: &mut Vec<String>| {
        if out.len() < SUGGESTION_CANDIDATES_MAX && validate(&candidate).is_ok() && seen.insert(canonical(&candidate)) {
            out.push(candidate);
        }
    };

    let suffixed = |suffix: &str| {
        let room = USERNAME_CHARS_MAX.saturating_sub(suffix.chars().count());
        format!("{}{suffix}", fit(&base, room))
    };
    let prefixed = |prefix: &str| {
        let room = USERNAME_CHARS_MAX.saturating_sub(prefix.chars().count());
        format!("{prefix}{}", fit(&base, room))
    };

    // Short, memorable variants first: the smallest numbers, then the word forms.
    for n in 1..=5 {
        offer(suffixed(&n.to_string()), &mut out);
    }
    for word in WORD_SUFFIXES {
        offer(suffixed(&format!("_{word}")), &mut out);
    }
    for word in WORD_PREFIXES {
        offer(prefixed(&format!("{word}_")), &mut out);
    }

    // Then numbers drawn from the salt, so that different callers (or retries) get
    // different suggestions; mixing in the base spreads users who share a salt.
    let mut state = salt ^ fnv1a64(base.as_bytes());
    // Draws can repeat or collide canonically (`…10` and `…lo` are one identity), so
    // allow more draws than slots, but a bounded number.
    let mut attempts = 0;
    while out.len() < SUGGESTION_CANDIDATES_MAX && attempts < 4 * SUGGESTION_CANDIDATES_MAX {
        let r = splitmix64(&mut state);
        let number = if attempts % 2 == 0 { 10 + r % 90 } else { 100 + r % 900 };
        let separator = if attempts % 3 == 2 { "_" } else { "" };
        offer(suffixed(&format!("{separator}{number}")), &mut out);
        attempts += 1;
    }
    out
}

/// The cleaned, normalized name suggestions are built from.
fn suggestion_base(input: &str) -> String {
    // Spaces and hyphens usually separate words, so they become `_` rather than vanish.
    let mapped: String =
        normalize(input).chars().map(|c| if c.is_whitespace() || c == '-' { '_' } else { c }).collect();
    let kept = single_script(&drop_bad_chars(&mapped));
    let base: String = collapse_separators(&kept).nfkc().collect();
    if base.is_empty() || is_reserved(&base).is_some() {
        FALLBACK_BASE.to_string()
    } else {
        base
    }
}

/// Drops characters [`validate`] would reject, including marks that are unattached,
/// repeated or stacked too high, and the marks of any dropped character.
fn drop_bad_chars(s: &str) -> String {
    let mut out = String::new();
    let mut base_is_letter = false;
    // Marks on the current letter, counted in decomposed form as `validate` counts them.
    let mut marks: Vec<char> = Vec::new();
    for c in s.chars() {
        let mut own_marks = Vec::new();
        decompose_canonical(c, |d| {
            if is_combining_mark(d) {
                own_marks.push(d);
            }
        });
        if is_combining_mark(c) {
            let fits = own_marks.iter().enumerate().all(|(i, m)| !marks.contains(m) && !own_marks[..i].contains(m))
                && marks.len() + own_marks.len() <= MARKS_PER_LETTER_MAX;
            if allowed_char(c) && base_is_letter && fits {
                marks.extend(own_marks);
                out.push(c);
            }
            continue;
        }
        base_is_letter = allowed_char(c) && c.is_alphabetic();
        marks = own_marks;
        if allowed_char(c) {
            out.push(c);
        }
    }
    out
}

/// Keeps the dominant script: letters of other scripts are replaced by their confusable
/// prototype when that is a single letter of the dominant script (so `аlice` with a
/// Cyrillic `а` becomes `alice`), and dropped otherwise, together with their marks.
fn single_script(s: &str) -> String {
    let groups = script_groups(s);
    let Some(mut allowed) = groups
        .iter()
        .enumerate()
        .max_by_key(|(index, (_, count))| (*count, std::cmp::Reverse(*index)))
        .map(|(_, (set, _))| *set)
    else {
        return s.to_string();
    };
    let mut out = String::new();
    let mut dropped_base = false;
    for c in s.chars() {
        if is_combining_mark(c) && dropped_base {
            continue;
        }
        dropped_base = false;
        let set = AugmentedScriptSet::for_char(c);
        if set.is_all() {
            out.push(c);
            continue;
        }
        let mut both = allowed;
        both.intersect_with(set);
        if !both.is_empty() {
            allowed = both;
            out.push(c);
            continue;
        }
        match prototype_in(c, allowed) {
            Some((p, narrowed)) => {
                allowed = narrowed;
                out.push(p);
            }
            None => dropped_base = true,
        }
    }
    out
}

/// The single-character confusable prototype of `c`, if it is an allowed letter
/// compatible with `scripts`, together with the narrowed script set.
fn prototype_in(c: char, scripts: AugmentedScriptSet) -> Option<(char, AugmentedScriptSet)> {
    let mut chars = skeleton(c.encode_utf8(&mut [0; 4])).collect::<Vec<char>>();
    if chars.len() != 1 {
        return None;
    }
    let p = chars.pop()?;
    let mut both = scripts;
    both.intersect_with(AugmentedScriptSet::for_char(p));
    (allowed_char(p) && p.is_alphabetic() && !both.is_empty()).then_some((p, both))
}

/// Collapses each run of separators to its first one and strips them from both ends.
fn collapse_separators(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let previous_is_separator = out.chars().next_back().is_some_and(is_separator);
        if is_separator(c) && (out.is_empty() || previous_is_separator) {
            continue;
        }
        out.push(c);
    }
    while out.chars().next_back().is_some_and(is_separator) {
        out.pop();
    }
    out
}

/// The longest prefix of `base` with at most `room` characters that ends on a piece
/// boundary (never between a letter and its marks) and not on a separator.
fn fit(base: &str, room: usize) -> String {
    let chars: Vec<char> = base.chars().collect();
    let mut end = room.min(chars.len());
    while end > 0 && end < chars.len() && !starts_piece(chars[end]) {
        end -= 1;
    }
    while end > 0 && is_separator(chars[end - 1]) {
        end -= 1;
    }
    chars[..end].iter().collect()
}

/// FNV-1a, inlined because suggestions must not depend on the standard library's
/// hasher, whose output is not guaranteed across Rust versions.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// SplitMix64: a tiny, well-mixed generator; suggestions need determinism, not secrecy.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
