use super::*;

fn err(input: &str) -> NameError {
    validate(input).expect_err(input)
}

// Case variants and a Cyrillic look-alike must share one identity key.
#[test]
fn confusables_share_canonical_form() {
    let key = canonical("alice");
    assert_eq!(key, "alice");
    for variant in ["Alice", "ALICE", "\u{430}lice", "  alice  ", "ａｌｉｃｅ"] {
        assert_eq!(canonical(variant), key, "{variant:?}");
    }
}

// The skeleton maps m to rn (not the reverse) and digits to letters; pin that down.
#[test]
fn skeleton_merges_look_alike_sequences() {
    assert_eq!(canonical("m"), canonical("rn"));
    assert_eq!(canonical("admin"), "adrnin");
    assert_eq!(canonical("user0"), canonical("usero"));
    assert_eq!(canonical("user0"), canonical("userO"));
    assert_eq!(canonical("bi11"), canonical("bill"));
    assert_eq!(canonical("BILL"), canonical("bill"));
}

// Full case folding via std's tables (no caseless crate), so ß and ẞ both give ss.
#[test]
fn full_case_folding() {
    assert_eq!(canonical("straße"), canonical("strasse"));
    assert_eq!(canonical("STRAẞE"), canonical("strasse"));
    assert_eq!(canonical("ΣΟΦΙΑ"), canonical("σοφια"));
    assert_eq!(canonical("σοφιας"), canonical("σοφιασ"));
    assert_eq!(case_fold("ß"), "ss");
}

// canonical(canonical(x)) == canonical(x) for every [a-z0-9_.] string up to 3 chars.
#[test]
fn canonical_is_idempotent_on_ascii() {
    let alphabet: Vec<char> = ('a'..='z').chain('0'..='9').chain(['_', '.']).collect();
    let mut names: Vec<String> = vec!["alice".into(), "rnrnm".into(), "l1il_0o.x".into()];
    for a in &alphabet {
        names.push(a.to_string());
        for b in &alphabet {
            names.push(format!("{a}{b}"));
            for c in &alphabet {
                names.push(format!("{a}{b}{c}"));
            }
        }
    }
    for name in names {
        let once = canonical(&name);
        assert_eq!(canonical(&once), once, "{name:?}");
    }
}

// Idempotence on every assigned code point, where skeleton output needs a 2nd round.
#[test]
fn canonical_is_idempotent_on_every_code_point() {
    let assigned =
        (0..=0x10_FFFF_u32).filter_map(char::from_u32).filter(|c| unicode_normalization::char::is_public_assigned(*c));
    for c in assigned {
        let once = canonical(c.encode_utf8(&mut [0; 4]));
        assert_eq!(canonical(&once), once, "U+{:04X}", c as u32);
    }
}

// canonical must be total: odd input never panics and empty input stays empty.
#[test]
fn canonical_is_total() {
    assert_eq!(canonical(""), "");
    assert_eq!(canonical(" \t\n"), "");
    for odd in ["\u{0}", "\u{301}", "\u{309B}a", "%%%", "\u{FFFF}", "\u{10FFFF}"] {
        let _ = canonical(odd);
    }
    let long = "ᄀ\u{1161}\u{301}".repeat(10_000);
    let _ = canonical(&long);
}

// Length counts NFKC chars, so multi-byte and decomposed letters count once each.
#[test]
fn length_edges() {
    let length = |len| NameError::Length { len, min: USERNAME_CHARS_MIN, max: USERNAME_CHARS_MAX };
    assert_eq!(validate("ab"), Err(length(2)));
    assert_eq!(validate("жж"), Err(length(2)));
    assert_eq!(validate("abc"), Ok(()));
    assert_eq!(validate("жжж"), Ok(()));
    assert_eq!(validate("e\u{301}e\u{301}e\u{301}"), Ok(()));
    assert_eq!(validate(&"a".repeat(30)), Ok(()));
    assert_eq!(validate(&"ж".repeat(30)), Ok(()));
    assert_eq!(validate(&"e\u{301}".repeat(30)), Ok(()));
    assert_eq!(validate(&"a".repeat(31)), Err(length(31)));
    assert_eq!(validate(&"ж".repeat(31)), Err(length(31)));
}

// Each rule has its own variant; this walks them in policy order.
#[test]
fn every_rule_has_a_variant() {
    assert_eq!(err(""), NameError::Empty);
    assert_eq!(err("   "), NameError::Empty);
    assert!(matches!(err("a"), NameError::Length { len: 1, .. }));
    assert_eq!(err("bob!x"), NameError::DisallowedChar { ch: '!', position: 3 });
    assert_eq!(err("_bob"), NameError::LeadingSeparator { ch: '_', position: 0 });
    assert_eq!(err("bob."), NameError::TrailingSeparator { ch: '.', position: 3 });
    assert_eq!(err("bo._b"), NameError::ConsecutiveSeparators { first: '.', second: '_', position: 2 });
    assert_eq!(err("\u{430}lice"), NameError::MixedScripts { scripts: vec!["Cyrillic", "Latin"] });
    assert_eq!(err("admin"), NameError::Reserved { word: "admin" });
}

// Rules apply in the documented order, so a name breaking several reports the first.
#[test]
fn rules_apply_in_order() {
    assert!(matches!(err("!"), NameError::Length { .. }));
    assert!(matches!(err("_a!"), NameError::DisallowedChar { .. }));
    assert!(matches!(err("_\u{430}b"), NameError::LeadingSeparator { .. }));
    assert!(matches!(err("\u{430}dmin"), NameError::MixedScripts { .. }));
}

// Positions index chars of the raw input and name the character the user typed.
#[test]
fn positions_refer_to_the_input() {
    assert_eq!(err("  жук!"), NameError::DisallowedChar { ch: '!', position: 5 });
    assert_eq!(err("ab½c"), NameError::DisallowedChar { ch: '½', position: 2 });
    assert_eq!(err("ab＿＿c"), NameError::ConsecutiveSeparators { first: '_', second: '_', position: 2 });
    assert_eq!(err("john smith"), NameError::DisallowedChar { ch: ' ', position: 4 });
}

// Marks must sit on a letter, at most four, none repeated; ZWJ is not allowed.
#[test]
fn combining_mark_rules() {
    assert_eq!(validate("jose\u{301}"), Ok(()));
    assert_eq!(validate("a\u{301}\u{302}\u{303}\u{304}bc"), Ok(()));
    assert_eq!(err("\u{301}abc"), NameError::DisallowedChar { ch: '\u{301}', position: 0 });
    assert_eq!(err("ab1\u{301}"), NameError::DisallowedChar { ch: '\u{301}', position: 3 });
    assert_eq!(err("ab_\u{301}c"), NameError::DisallowedChar { ch: '\u{301}', position: 3 });
    assert_eq!(err("a\u{301}\u{302}\u{303}\u{304}\u{306}bc"), NameError::DisallowedChar { ch: '\u{306}', position: 5 });
    assert_eq!(err("e\u{301}\u{301}bc"), NameError::DisallowedChar { ch: '\u{301}', position: 2 });
    assert_eq!(err("ab\u{200D}c"), NameError::DisallowedChar { ch: '\u{200D}', position: 2 });
}

// One-script names (digits are Common; Han may mix with kana) are accepted.
#[test]
fn single_script_names_are_accepted() {
    for name in [
        "José",
        "Łukasz",
        "Дмитрий",
        "田中太郎",
        "ゆうき123",
        "علي",
        "김민준",
        "田中ゆうき",
        "अनुपम",
        "Ελένη",
        "user_01.x",
    ] {
        assert_eq!(validate(name), Ok(()), "{name}");
    }
}

// Decomposed Hangul/kana and halfwidth kana are judged on their composed NFKC form.
#[test]
fn decomposed_input_is_accepted() {
    assert_eq!(validate("\u{1100}\u{1161}\u{11A8}\u{1100}\u{1161}\u{1102}\u{1161}"), Ok(()));
    assert_eq!(validate("か\u{3099}か\u{3099}と"), Ok(()));
    assert_eq!(validate("ｶﾞｶﾞｶﾞ"), Ok(()));
}

// Look-alike letters from another script are rejected, naming both scripts.
#[test]
fn mixed_scripts_are_rejected() {
    assert_eq!(err("p\u{430}ypal"), NameError::MixedScripts { scripts: vec!["Latin", "Cyrillic"] });
    assert_eq!(err("tanaka太郎"), NameError::MixedScripts { scripts: vec!["Latin", "Han"] });
    assert!(matches!(err("abc١٢٣"), NameError::MixedScripts { .. }));
}

// Reserved matching sees through case, NFKC, confusables and separators, not suffixes.
#[test]
fn reserved_words() {
    for spelling in ["admin", "ADMIN", "Admin", "ａｄｍｉｎ", "ad.min", "a_d_m_i_n"] {
        assert_eq!(is_reserved(spelling), Some("admin"), "{spelling}");
    }
    assert_eq!(is_reserved("\u{430}dmin"), Some("admin"));
    assert_eq!(is_reserved("no_reply"), Some("noreply"));
    assert_eq!(is_reserved("r00t"), Some("root"));
    assert_eq!(is_reserved("admins"), None);
    assert_eq!(is_reserved("model"), None);
    assert_eq!(validate("ROOT"), Err(NameError::Reserved { word: "root" }));
    assert_eq!(validate("ｓｕｐｐｏｒｔ"), Err(NameError::Reserved { word: "support" }));
    for word in RESERVED_WORDS {
        assert_eq!(is_reserved(word), Some(*word), "{word}");
    }
}

// Messages name the rule and the offending values, as users will read them.
#[test]
fn display_messages() {
    assert_eq!(err("ab").to_string(), "username must be 3 to 30 characters, got 2");
    assert_eq!(err("bobs!").to_string(), "character '!' at position 4 is not allowed: use letters, digits, '_' or '.'");
    assert_eq!(
        err("ab\u{200D}c").to_string(),
        "character '\\u{200d}' at position 2 is not allowed: use letters, digits, '_' or '.'"
    );
    assert_eq!(err("p\u{430}ypal").to_string(), "username mixes scripts (Latin, Cyrillic): use one script");
    assert_eq!(err("admin").to_string(), "\"admin\" is a reserved word");
    assert_eq!(err("").to_string(), "username is empty");
    assert_eq!(err(".abc").to_string(), "username cannot start with '.'");
    assert_eq!(err("abc_").to_string(), "username cannot end with '_'");
    assert_eq!(
        err("a..b").to_string(),
        "separators '..' at position 1 are adjacent: put a letter or digit between them"
    );
}

fn assert_good_suggestions(input: &str, salt: u64) -> Vec<String> {
    let out = suggestion_candidates(input, salt);
    assert!(out.len() <= SUGGESTION_CANDIDATES_MAX);
    let own = canonical(input);
    let mut keys = HashSet::new();
    for candidate in &out {
        assert_eq!(validate(candidate), Ok(()), "{input:?} -> {candidate:?}");
        let key = canonical(candidate);
        assert_ne!(key, own, "{input:?} -> {candidate:?}");
        assert!(keys.insert(key), "{input:?} -> duplicate {candidate:?}");
    }
    assert_eq!(out, suggestion_candidates(input, salt), "not deterministic");
    out
}

// Suggestions for a plain name are valid, distinct, new, deterministic and plentiful.
#[test]
fn suggestions_for_alice() {
    let out = assert_good_suggestions("alice", 7);
    assert!(out.len() >= 3);
    assert_eq!(out.len(), SUGGESTION_CANDIDATES_MAX);
    assert_eq!(out[0], "alice1");
    assert!(out.contains(&"alice_hq".to_string()));
    assert!(out.contains(&"the_alice".to_string()));
    assert!(out.contains(&"alice1".to_string()));
    assert_ne!(out, suggestion_candidates("alice", 8), "salt is ignored");
}

// Long, uppercase, dirty, empty, reserved, spoofed and non-Latin inputs still work.
#[test]
fn suggestions_for_awkward_inputs() {
    let long = assert_good_suggestions(&"abcdefghij".repeat(5), 1);
    assert!(!long.is_empty());
    assert!(long.iter().all(|c| c.chars().count() <= USERNAME_CHARS_MAX));

    let upper = assert_good_suggestions("Alice", 1);
    assert_eq!(upper[0], "Alice1");

    let dirty = assert_good_suggestions("john smith!!", 1);
    assert_eq!(dirty[0], "john_smith1");

    for nothing in ["", "!!!", "__", "\u{301}"] {
        let out = assert_good_suggestions(nothing, 1);
        assert!(out[0].starts_with(FALLBACK_BASE), "{nothing:?}: {out:?}");
    }

    let reserved = assert_good_suggestions("ADMIN", 1);
    assert!(reserved.iter().all(|c| c.contains(FALLBACK_BASE)));

    let spoof = assert_good_suggestions("p\u{430}ypal", 1);
    assert_eq!(spoof[0], "paypal1");

    let cyrillic = assert_good_suggestions("Дмитрий", 1);
    assert!(cyrillic.len() >= 3);
    assert!(cyrillic.iter().all(|c| c.starts_with("Дмитрий")));

    let japanese = assert_good_suggestions("ゆうき", 1);
    assert!(japanese.len() >= 3);

    let short = assert_good_suggestions("a", 1);
    assert!(short.len() >= 3);

    let marks = assert_good_suggestions(&"e\u{301}".repeat(40), 1);
    assert!(!marks.is_empty());
}

// Suggestions hold their properties across many salts and sample inputs.
#[test]
fn suggestions_hold_for_many_salts() {
    for input in ["alice", "bob", "x", "Łukasz", "田中太郎", "علي", "rnrn", "m.m"] {
        for salt in 0..50 {
            assert_good_suggestions(input, salt);
        }
    }
}

// No piece-starting char is ever a trailing part of a canonical decomposition.
#[test]
fn pieces_boundaries_are_sound() {
    for c in (0..=0x10_FFFF_u32).filter_map(char::from_u32) {
        let mut parts = Vec::new();
        decompose_canonical(c, |d| parts.push(d));
        if parts.len() > 1 {
            for d in &parts[1..] {
                assert!(!starts_piece(*d), "U+{:04X} in U+{:04X}", *d as u32, c as u32);
            }
        }
    }
}

// Piecewise NFKC equals whole-string NFKC on random composing/decomposing strings.
#[test]
fn pieces_agree_with_whole_string_nfkc() {
    let alphabet = [
        "a", "e", "\u{301}", "\u{323}", "\u{302}", "\u{1100}", "\u{1161}", "\u{11A8}", "가", "か", "\u{3099}", "ｶ", "ﾞ",
        "ﾟ", "ﬁ", "½", "ᾳ", "\u{345}", "_", ".", " ", "\u{9C7}", "\u{9BE}", "\u{9D7}", "Å", "\u{30A}",
    ];
    let mut state = 1;
    for _ in 0..20_000 {
        let len = 1 + (splitmix64(&mut state) % 8) as usize;
        let s: String = (0..len)
            .map(|_| {
                let r = splitmix64(&mut state);
                // Mostly tricky characters, sometimes any code point below U+30000.
                match char::from_u32((r >> 32) as u32 % 0x30000) {
                    Some(c) if r.is_multiple_of(4) => c.to_string(),
                    _ => alphabet[(r % alphabet.len() as u64) as usize].to_string(),
                }
            })
            .collect();
        let joined: String = pieces(&s).iter().map(|p| p.normalized.as_str()).collect();
        assert_eq!(joined, normalize(&s), "{s:?}");
    }
}

// fit truncates without separating a letter from its marks or ending on a separator.
#[test]
fn fit_respects_boundaries() {
    assert_eq!(fit("alice", 3), "ali");
    assert_eq!(fit("alice", 10), "alice");
    assert_eq!(fit("ab_cd", 3), "ab");
    assert_eq!(fit("abe\u{301}\u{302}", 4), "ab");
}
