//! The CSV of `vnetd user import` (spec 11 "CLI formats"): the header, RFC 4180 quoting within a
//! line, the eight fields and the optional password column, as step 1 of the import checks them
//! (no database).
//!
//! Input: one byte choosing what comes first (nothing, the header, the header with `,password`),
//! then the file's text (the import reads a UTF-8 `String`).
//!
//! Asserts: nothing panics; every accepted row keeps the field rules (account type, account
//! length, city code digits, user type, amounts in range, alias and binding length), appears
//! once per account and once per line; each non-blank line is a row or an error; every line
//! the splitter accepts splits the same again after being written back with RFC 4180 quoting.

use afl::fuzz;
use vnetd::fuzzing::{user_import_check, user_import_split_csv, Config};

const HEADER: &str = "account_type,account,city_code,user_type,credit_limit,balance,alias,binding_access_no";

fn main() {
    let cfg = Config::default();
    fuzz!(|data: &[u8]| {
        let Some((&sel, rest)) = data.split_first() else { return };
        let Ok(body) = std::str::from_utf8(rest) else { return };
        let text = match sel % 3 {
            0 => body.to_string(),
            1 => format!("{HEADER}\n{body}"),
            _ => format!("{HEADER},password\n{body}"),
        };
        check_file(&cfg, &text, sel % 3 != 0);
        for line in text.lines() {
            round_trip(line);
        }
    });
}

fn check_file(cfg: &Config, text: &str, header_given: bool) {
    let (rows, errors) = match user_import_check(cfg, text) {
        Ok(x) => x,
        Err(e) => {
            assert!(!header_given, "the header was refused: {e}");
            return;
        }
    };
    let lines = text.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
    assert_eq!(rows.len() + errors.len(), lines, "rows and errors against non-blank lines");
    let mut seen_lines = std::collections::HashSet::new();
    let mut seen_accounts = std::collections::HashSet::new();
    for (line, u, plain) in &rows {
        assert!(*line >= 2 && seen_lines.insert(*line), "line {line}");
        assert!(seen_accounts.insert((u.account_type.clone(), u.account.clone())), "account repeated");
        assert!(["01", "02", "03", "04", "09"].contains(&u.account_type.as_str()));
        let n = u.account.chars().count();
        assert!((1..=64).contains(&n));
        if u.account_type == "09" {
            assert!(u.account.len() == 11 && u.account.starts_with('1') && u.account.bytes().all(|b| b.is_ascii_digit()));
        }
        assert!((1..=6).contains(&u.city_code.len()) && u.city_code.bytes().all(|b| b.is_ascii_digit()));
        assert!(u.user_type == "1" || u.user_type == "2");
        assert!((0..=100_000_000).contains(&u.credit_limit) && (0..=100_000_000).contains(&u.balance));
        assert!(u.alias.chars().count() <= 64 && u.binding_access_no.chars().count() <= 64);
        if let Some(p) = plain {
            assert!(!p.is_empty() && u.password_phc.is_none());
        }
        if let Some(phc) = &u.password_phc {
            assert!(phc.starts_with("$argon2id$"), "{phc}");
        }
    }
    for (line, e) in &errors {
        assert!(*line >= 2 && !e.is_empty());
    }
}

/// RFC 4180: a field with a comma or a quote (or that starts with one) is quoted, quotes doubled.
fn quote(f: &str) -> String {
    if f.contains([',', '"']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

fn round_trip(line: &str) {
    let Ok(fields) = user_import_split_csv(line) else { return };
    assert!(fields.len() <= line.matches(',').count() + 1);
    let written: Vec<String> = fields.iter().map(|f| quote(f)).collect();
    let again = user_import_split_csv(&written.join(",")).expect("a written line splits");
    assert_eq!(again, fields);
}
