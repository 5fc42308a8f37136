//! `vnetd user import FILE.csv` (spec 11 "CLI formats"): every row checked first, the optional
//! password column hashed outside any transaction, then chunked commits that never hold the
//! database writer for long; a rerun skips the rows already imported.

use super::*;

/// Validate one CSV row (fields in CSV_HEADER order).
pub(super) fn parse_row(cfg: &Config, f: &[String]) -> Result<NewUser, String> {
    let [at, account, city, utype, credit, balance, alias, binding] = f else {
        return Err(format!("expected 8 fields ({CSV_HEADER}), found {}", f.len()));
    };
    if !pp::LOOKUP_ORDER.contains(&at.as_str()) {
        return Err(format!("account_type {at:?} must be one of 01, 02, 03, 04, 09"));
    }
    if account.is_empty() || account.chars().count() > 64 {
        return Err("account must be 1 to 64 characters".into());
    }
    if at == "09" && !pp::is_mobile(account) {
        return Err("an account of type 09 must be a mobile number (11 digits starting with 1)".into());
    }
    if city.is_empty() || city.len() > 6 || !city.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("city_code {city:?} must be 1 to 6 digits"));
    }
    let utype = if utype.is_empty() { "1" } else { utype.as_str() };
    if utype != "1" && utype != "2" {
        return Err(format!("user_type {utype:?} must be 1 (postpaid) or 2 (prepaid)"));
    }
    let fen = |name: &str, v: &str, default: i64| -> Result<i64, String> {
        if v.is_empty() {
            return Ok(default);
        }
        match v.parse::<i64>() {
            Ok(n) if (0..=100_000_000).contains(&n) && v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(format!("{name} {v:?} must be an amount in fen, 0 to 100000000")),
        }
    };
    if alias.chars().count() > 64 || binding.chars().count() > 64 {
        return Err("alias and binding_access_no are at most 64 characters".into());
    }
    Ok(NewUser {
        account_type: at.clone(),
        account: account.clone(),
        password_phc: None,
        city_code: city.clone(),
        user_type: utype.to_string(),
        credit_limit: fen("credit_limit", credit, cfg.billing.default_credit_limit_fen)?,
        balance: fen("balance", balance, 0)?,
        alias: alias.clone(),
        binding_access_no: binding.clone(),
    })
}

/// Split one CSV line (RFC 4180 quoting within the line).
pub fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if at_start => quoted = true,
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
                continue;
            }
            c => cur.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    out.push(cur);
    Ok(out)
}

/// Errors listed before the rest are only counted.
const MAX_ERRORS_SHOWN: usize = 20;
/// What one chunk transaction aims to hold the writer for; the chunk size follows the measured time.
const CHUNK_TARGET: Duration = Duration::from_millis(50);
const FIRST_CHUNK: usize = 200;
const MAX_CHUNK: usize = 5000;

/// A password column value.
enum ImportPassword {
    None,
    /// Plain text, hashed at the configured parameters before its chunk is written.
    Plain(String),
    /// An Argon2id PHC string, stored as it is.
    Phc(String),
}

struct ImportRow {
    line: usize,
    user: NewUser,
    password: ImportPassword,
}

/// The fields of a user that "the same values" compares (passwords are not compared).
fn differing(u: &User, n: &NewUser) -> Vec<&'static str> {
    let mut out = Vec::new();
    if u.city_code != n.city_code { out.push("city_code"); }
    if u.user_type != n.user_type { out.push("user_type"); }
    if u.credit_limit != n.credit_limit { out.push("credit_limit"); }
    if u.balance != n.balance { out.push("balance"); }
    if u.alias != n.alias { out.push("alias"); }
    if u.binding_access_no != n.binding_access_no { out.push("binding_access_no"); }
    out
}

fn parse_password(v: &str, account: &str) -> Result<ImportPassword, String> {
    if v.is_empty() {
        Ok(ImportPassword::None)
    } else if v.starts_with("$argon2") {
        if crate::crypto::password::is_argon2id_phc(v) {
            Ok(ImportPassword::Phc(v.to_string()))
        } else {
            Err("password starts with $argon2 but is not a valid Argon2id PHC string".into())
        }
    } else if pp::weak_password(v, account) {
        Err("password too simple: at least 6 characters, not one repeated character, not the account".into())
    } else {
        Ok(ImportPassword::Plain(v.to_string()))
    }
}

/// The errors, in line order, the first MAX_ERRORS_SHOWN of them and the count of the rest.
fn error_report(mut errors: Vec<(usize, String)>) -> String {
    errors.sort_by_key(|(n, _)| *n);
    let total = errors.len();
    let mut out: Vec<String> = errors.into_iter().take(MAX_ERRORS_SHOWN).map(|(n, e)| format!("line {n}: {e}")).collect();
    if total > MAX_ERRORS_SHOWN {
        out.push(format!("… and {} more errors", total - MAX_ERRORS_SHOWN));
    }
    out.join("\n")
}

/// Hash the plain-text passwords of `rows` on every core (outside any transaction).
fn hash_passwords(hasher: PasswordHasher, rows: &mut [ImportRow]) {
    let todo: Vec<&mut ImportRow> = rows.iter_mut().filter(|r| matches!(r.password, ImportPassword::Plain(_))).collect();
    if todo.is_empty() {
        return;
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(todo.len());
    let per = todo.len().div_ceil(threads);
    let mut todo = todo;
    std::thread::scope(|scope| {
        for part in todo.chunks_mut(per) {
            scope.spawn(move || {
                for r in part.iter_mut() {
                    if let ImportPassword::Plain(p) = &r.password {
                        r.user.password_phc = Some(hasher.hash(p));
                        r.password = ImportPassword::None;
                    }
                }
            });
        }
    });
}

/// Errors of an import file, by line.
type LineErrors = Vec<(usize, String)>;

/// A row [`check_csv`] accepted: its line, the user, and its plain-text password still to hash.
pub type CheckedRow = (usize, NewUser, Option<String>);

/// Step 1 of an import: the header, then every row on its own (CSV, fields, password column,
/// repeats within the file), no database. Err: the header is wrong.
fn check_rows(cfg: &Config, text: &str) -> Result<(Vec<ImportRow>, LineErrors), String> {
    let mut lines = text.lines().enumerate();
    let with_password = match lines.next() {
        Some((_, h)) => {
            let h = h.trim_start_matches('\u{feff}').trim();
            if h == CSV_HEADER {
                false
            } else if h.strip_prefix(CSV_HEADER) == Some(",password") {
                true
            } else {
                return Err(format!("line 1 must be the header {CSV_HEADER}[,password]"));
            }
        }
        None => return Err(format!("line 1 must be the header {CSV_HEADER}[,password]")),
    };
    let mut rows: Vec<ImportRow> = Vec::new();
    let mut errors: LineErrors = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = split_csv(line).and_then(|mut f| {
            let pw = if with_password {
                if f.len() < 9 {
                    return Err(format!("expected 9 fields ({CSV_HEADER},password), found {}", f.len()));
                }
                // The last column takes the rest of the line: a PHC string's commas need no quotes.
                let pw = f[8..].join(",");
                f.truncate(8);
                pw
            } else {
                String::new()
            };
            let mut user = parse_row(cfg, &f)?;
            let password = match parse_password(&pw, &user.account)? {
                ImportPassword::Phc(phc) => {
                    user.password_phc = Some(phc);
                    ImportPassword::None
                }
                other => other,
            };
            Ok(ImportRow { line: n, user, password })
        });
        match parsed {
            Ok(r) => {
                if let Some(first) = seen.insert((r.user.account_type.clone(), r.user.account.clone()), n) {
                    errors.push((n, format!("account {} (type {}) repeats line {first}", r.user.account, r.user.account_type)));
                } else {
                    rows.push(r);
                }
            }
            Err(e) => errors.push((n, e)),
        }
    }
    Ok((rows, errors))
}

/// An import file's step 1 for the fuzz target (`fuzz/`, through `vnetd::fuzzing`): the rows
/// accepted and the errors by line; Err: the header is wrong.
pub fn check_csv(cfg: &Config, text: &str) -> Result<(Vec<CheckedRow>, LineErrors), String> {
    let (rows, errors) = check_rows(cfg, text)?;
    let rows = rows
        .into_iter()
        .map(|r| {
            let plain = match r.password {
                ImportPassword::Plain(p) => Some(p),
                ImportPassword::None | ImportPassword::Phc(_) => None,
            };
            (r.line, r.user, plain)
        })
        .collect();
    Ok((rows, errors))
}

pub(super) fn import(cfg: &Config, file: &std::path::Path) -> CliResult {
    let text = std::fs::read_to_string(file).map_err(|e| Failed(format!("cannot read {}: {e}", file.display())))?;
    // 1. Every row on its own.
    let (rows, errors) = check_rows(cfg, &text).map_err(|e| Failed(format!("{}: {e}", file.display())))?;
    let hasher = {
        let s = &cfg.security;
        PasswordHasher::new(s.argon2_m_kib, s.argon2_t, s.argon2_p)?
    };

    // 2. Against the database (a read connection: the writer is not held): an account already
    // held with the same values is skipped (a rerun after an interrupted import), with other
    // values it is an error.
    let store = open_store(cfg)?;
    let (rows, skipped, errors) = store.read(move |c| {
        let mut errors = errors;
        let mut keep = Vec::with_capacity(rows.len());
        let mut skipped = 0usize;
        for r in rows {
            match pp::holder(c, &r.user.account_type, &r.user.account)? {
                pp::Holder::Live(u) => {
                    let diff = differing(&u, &r.user);
                    if diff.is_empty() {
                        skipped += 1;
                    } else {
                        errors.push((r.line, format!(
                            "account {} (type {}) is already held by user {} with other values ({})",
                            r.user.account, r.user.account_type, u.vnet_user_id, diff.join(", ")
                        )));
                    }
                }
                _ => keep.push(r),
            }
        }
        Ok((keep, skipped, errors))
    })?;
    if !errors.is_empty() {
        return Err(Failed(format!("{}\n{} errors; nothing imported", error_report(errors.clone()), errors.len())));
    }

    // 3. Chunks: passwords hashed first (every core, no transaction open), then one short write
    // transaction per chunk, sized from the time the previous one took; a pause after each lets
    // the daemon's writer in. A crash leaves the chunks already committed; a rerun skips them.
    let clock = cfg.clock();
    let province = cfg.node.province_id.clone();
    let total = rows.len();
    let progress = std::io::stderr().is_terminal();
    // Taken from the front chunk by chunk: an iterator, not `Vec::drain(..n)`, which moves every
    // row left behind at each chunk (a million rows: most of the import's time, docs/capacity.md).
    let mut rows = rows.into_iter();
    let mut imported = 0usize;
    let mut raced: Vec<(usize, String)> = Vec::new();
    let mut raced_skips = 0usize;
    let mut chunk = FIRST_CHUNK;
    let mut worst_hold = Duration::ZERO;
    let mut commits = 0usize;
    let checkpointer = crate::store::files::Checkpointer::open(store.path(), Duration::from_millis(100));
    while !rows.as_slice().is_empty() {
        let take = chunk.min(rows.len());
        let mut part: Vec<ImportRow> = rows.by_ref().take(take).collect();
        hash_passwords(hasher, &mut part);
        let (clock2, province2) = (clock.clone(), province.clone());
        let first_line = part.first().map(|r| r.line).unwrap_or(0);
        let started = Instant::now();
        let result = store.write(move |c| {
            let now = clock2.unix();
            let (mut n, mut skips, mut errs) = (0usize, 0usize, Vec::new());
            for r in &part {
                // Taken since the check (a live UserOpen): same values skip, others are reported.
                if let pp::Holder::Live(u) = pp::holder(c, &r.user.account_type, &r.user.account)? {
                    let diff = differing(&u, &r.user);
                    if diff.is_empty() {
                        skips += 1;
                    } else {
                        errs.push((r.line, format!("account {} (type {}) was opened meanwhile by user {} with other values; not imported", r.user.account, r.user.account_type, u.vnet_user_id)));
                    }
                    continue;
                }
                let created = pp::create(c, &province2, &r.user, now)?;
                pp::queue_info_notify(c, &clock2, &created, "1", now)?;
                n += 1;
            }
            Ok((n, skips, errs))
        });
        let held = started.elapsed();
        let (n, skips, errs) = match result {
            Ok(x) => x,
            Err(e) => {
                audit("user_import", &[("file", &file.display().to_string()), ("users", &imported.to_string()), ("failed_at_line", &first_line.to_string())]);
                return Err(Failed(format!(
                    "import stopped in the chunk starting at line {first_line}: {e}; {imported} users were imported before it (run the same import again to continue)"
                )));
            }
        };
        imported += n;
        raced_skips += skips;
        raced.extend(errs);
        commits += 1;
        worst_hold = worst_hold.max(held);
        // Next chunk: aim at CHUNK_TARGET.
        let per_row = held.as_secs_f64() / take.max(1) as f64;
        if per_row > 0.0 {
            let ideal = (CHUNK_TARGET.as_secs_f64() / per_row) as usize;
            chunk = ideal.clamp(chunk / 2 + 1, chunk * 2).clamp(16, MAX_CHUNK);
        }
        if progress {
            eprint!("\rimported {imported}/{total}");
        }
        if !rows.as_slice().is_empty() {
            let pause = Instant::now();
            // Copy the WAL into the database now, without the writer lock: otherwise the next
            // commit past the auto-checkpoint threshold does it, most often the daemon's, and a
            // live request waits for it.
            if let Some(c) = &checkpointer {
                c.passive();
            }
            // The checkpoint is part of the pause: it does not hold the writer lock.
            std::thread::sleep(held.max(Duration::from_millis(25)).saturating_sub(pause.elapsed()));
        }
    }
    if progress {
        eprintln!();
    }
    let skipped = skipped + raced_skips;
    audit("user_import", &[
        ("file", &file.display().to_string()),
        ("users", &imported.to_string()),
        ("skipped", &skipped.to_string()),
        ("conflicts", &raced.len().to_string()),
    ]);
    log::info!("user import: {commits} transactions, the longest {} ms", worst_hold.as_millis());
    println!("imported {imported} users, skipped {skipped} already present");
    if !raced.is_empty() {
        return Err(Failed(format!("{}\n{} rows not imported", error_report(raced.clone()), raced.len())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_split() {
        assert_eq!(split_csv("a,b,,c").unwrap(), vec!["a", "b", "", "c"]);
        assert_eq!(split_csv("\"x,y\",\"q\"\"q\"").unwrap(), vec!["x,y", "q\"q"]);
        assert!(split_csv("\"open").is_err());
    }
}
