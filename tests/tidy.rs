//! Tidy checks: the source-level invariants ARCHITECTURE.md states, held by reading the files
//! (no database, no build artefacts). Each check names the file and line that breaks its rule.
//!
//! - Which modules may name `warp`, `hyper` and `clap` (the web stack and the command line stay
//!   behind one module each, so that replacing either touches one file).
//! - SQL text lives in `sql/`: no string literal in the exporter's sources reads like a statement.
//! - The exporter's library has no writer: no `seed` module (the generator is `tools/seed`), and
//!   no statement under `sql/` writes.
//! - A scrape never touches the database: the modules that answer it name no database crate.
//! - The ledger has one owner: `src/ledger/` takes no locks.
//! - Every Rust file starts with a `//!` comment saying what it owns; nothing calls `exit`.
//! - The README's metric tables list exactly the catalogue's families (`src/catalogue.rs`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use litellm_exporter::catalogue::{Kind, GAUGE_FAMILIES, LEDGER_FAMILIES, NOT_DERIVABLE};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir` (relative to the crate root), sorted, with its text.
fn rust_files(dir: &str) -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&root().join(dir), &mut paths);
    paths.sort();
    assert!(!paths.is_empty(), "no Rust files under {dir}");
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read a source file");
            let rel = p.strip_prefix(root()).expect("under the crate").display();
            (rel.to_string(), text)
        })
        .collect()
}

/// A Rust file split into its code and its string literals: `code` is the text with comments and
/// literals blanked out (line breaks kept, so positions keep their line numbers); `strings` holds
/// each literal's contents with the line it starts on. Enough of Rust's lexical rules for this
/// repository's sources: line and nested block comments, "..." and b"..." with escapes, raw
/// strings r#"..."#, char literals told apart from lifetimes.
struct Lexed {
    code: String,
    strings: Vec<(usize, String)>,
}

fn lex(text: &str) -> Lexed {
    let chars: Vec<char> = text.chars().collect();
    let mut code = String::with_capacity(text.len());
    let mut strings = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Keeps line breaks of skipped text, so that `code` lines up with the file.
    let blank = |c: char, code: &mut String, line: &mut usize| {
        if c == '\n' {
            *line += 1;
            code.push('\n');
        } else {
            code.push(' ');
        }
    };
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                code.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    code.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    code.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(chars[i], &mut code, &mut line);
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r')))
            && (i == 0 || !ident(chars[i - 1]))
            && {
                // r"..." or r#"..."#: the hashes, then a quote.
                let mut j = i + if c == 'b' { 2 } else { 1 };
                while chars.get(j) == Some(&'#') {
                    j += 1;
                }
                chars.get(j) == Some(&'"')
            }
        {
            let mut j = i + if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while chars[j] == '#' {
                hashes += 1;
                j += 1;
            }
            for _ in i..=j {
                code.push(' ');
            }
            let start_line = line;
            let mut s = String::new();
            i = j + 1;
            while let Some(&ch) = chars.get(i) {
                if ch == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        code.push(' ');
                    }
                    i += 1 + hashes;
                    break;
                }
                s.push(ch);
                blank(ch, &mut code, &mut line);
                i += 1;
            }
            strings.push((start_line, s));
        } else if c == '"' {
            let start_line = line;
            let mut s = String::new();
            code.push(' ');
            i += 1;
            while let Some(&ch) = chars.get(i) {
                if ch == '\\' {
                    // An escape: the next character is part of the literal, whatever it is.
                    s.push(ch);
                    code.push(' ');
                    i += 1;
                    if let Some(&esc) = chars.get(i) {
                        s.push(esc);
                        blank(esc, &mut code, &mut line);
                        i += 1;
                    }
                    continue;
                }
                i += 1;
                if ch == '"' {
                    code.push(' ');
                    break;
                }
                s.push(ch);
                blank(ch, &mut code, &mut line);
            }
            strings.push((start_line, s));
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{..}', '"') or a lifetime ('a, 'static).
            let end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&k| chars[k] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for _ in i..=end {
                        code.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    code.push(c);
                    i += 1;
                }
            }
        } else {
            if c == '\n' {
                line += 1;
            }
            code.push(c);
            i += 1;
        }
    }
    Lexed { code, strings }
}

/// Lines of `code` where `word` appears as a whole identifier.
fn lines_naming(code: &str, word: &str) -> Vec<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    code.lines()
        .enumerate()
        .filter(|(_, l)| {
            l.match_indices(word).any(|(at, _)| {
                let before = l[..at].chars().next_back();
                let after = l[at + word.len()..].chars().next();
                !before.is_some_and(ident) && !after.is_some_and(ident)
            })
        })
        .map(|(n, _)| n + 1)
        .collect()
}

#[test]
fn the_lexer_keeps_comments_strings_and_code_apart() {
    let l = lex(
        "use warp; // clap\n/* hyper /* nested */ still */ let s = \"a \\\" clap\";\n\
         let r = r#\"SELECT \"x\"\"#; let c = '\"'; fn f<'a>(x: &'a str) {}\n",
    );
    assert_eq!(lines_naming(&l.code, "warp"), [1]);
    assert!(lines_naming(&l.code, "clap").is_empty(), "{}", l.code);
    assert!(lines_naming(&l.code, "hyper").is_empty(), "{}", l.code);
    let strings: Vec<&str> = l.strings.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(strings, ["a \\\" clap", "SELECT \"x\""]);
    assert_eq!(l.strings[1].0, 3);
    assert!(l.code.contains("fn f<'a>(x: &'a str)"), "{}", l.code);
    assert_eq!(l.code.lines().count(), 3);
}

/// ARCHITECTURE.md: `warp` and `hyper` appear only in `src/http.rs` (and in the benchmark baseline
/// of that stack), `clap` only in `src/cli.rs`. The traffic generator (`tools/`) is not the
/// exporter and is not held to this.
#[test]
fn web_stack_and_command_line_crates_stay_in_their_modules() {
    let rules: &[(&str, &[&str])] = &[
        ("warp", &["src/http.rs", "benches/static_body.rs"]),
        ("hyper", &["src/http.rs", "benches/static_body.rs"]),
        ("clap", &["src/cli.rs"]),
    ];
    let mut broken = Vec::new();
    let mut seen = BTreeSet::new();
    for (path, text) in rust_files("src").into_iter().chain(rust_files("benches")) {
        let code = lex(&text).code;
        for (krate, allowed) in rules {
            for line in lines_naming(&code, krate) {
                if allowed.contains(&path.as_str()) {
                    seen.insert((*krate, path.clone()));
                } else {
                    broken.push(format!("{path}:{line}: names `{krate}`"));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "outside the modules ARCHITECTURE.md allows:\n{}",
        broken.join("\n")
    );
    // The rule is about crates the exporter does use: a check that finds none has stopped looking.
    for (krate, allowed) in rules {
        assert!(
            seen.contains(&(*krate, allowed[0].to_string())),
            "`{krate}` not found in {}: is the rule still about this crate?",
            allowed[0]
        );
    }
}

/// ARCHITECTURE.md: SQL text lives in `sql/` (embedded by `src/sql.rs` with `include_str!`); the
/// sources may fill placeholders with column names and NULL literals, never carry statements.
/// The traffic generator (`tools/seed`) writes its own statements and is not the exporter.
#[test]
fn sql_text_lives_in_the_sql_directory() {
    const KEYWORDS: &[&str] = &[
        "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "TRUNCATE", "COPY",
        "GRANT", "REVOKE", "SET", "RESET", "BEGIN", "COMMIT", "ROLLBACK", "LOCK", "EXPLAIN",
        "VACUUM", "ANALYZE", "WITH", "FROM", "WHERE", "EXISTS", "JOIN", "VALUES",
    ];
    let mut broken = Vec::new();
    let mut literals = 0;
    for (path, text) in rust_files("src") {
        for (line, s) in lex(&text).strings {
            literals += 1;
            let words: Vec<&str> = s
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .filter(|w| KEYWORDS.contains(w))
                .collect();
            if !words.is_empty() {
                broken.push(format!("{path}:{line}: {words:?} in {s:?}"));
            }
        }
    }
    assert!(
        literals > 1000,
        "only {literals} string literals read from src/"
    );
    assert!(
        broken.is_empty(),
        "SQL text outside sql/ (put it in a file there, embed it in src/sql.rs):\n{}",
        broken.join("\n")
    );
    // What the rule expects instead: every statement the exporter runs is a file under sql/ that
    // src/sql.rs embeds (sql/setup/ holds the operator's own setup, run with psql).
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("sql/") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(root()).expect("under the crate");
            if path.is_dir() && rel != Path::new("sql/setup") {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "sql") {
                out.push(rel.display().to_string());
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("sql"), &mut files);
    let sql_rs = std::fs::read_to_string(root().join("src/sql.rs")).expect("src/sql.rs");
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !sql_rs.contains(&format!("include_str!(\"../{f}\")")))
        .collect();
    assert!(files.len() > 10, "statement files: {files:?}");
    assert!(
        missing.is_empty(),
        "not embedded by src/sql.rs: {missing:?}"
    );
}

/// The exporter's library and binary do not write: the traffic generator is `tools/seed` (the
/// `litellm-seed` binary), never a module of the library. (tests/it/cli.rs checks the binary.)
#[test]
fn the_library_has_no_traffic_generator() {
    let lib = lex(&std::fs::read_to_string(root().join("src/lib.rs")).expect("src/lib.rs")).code;
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("pub ").unwrap_or(l.trim());
            l.strip_prefix("mod ")?.strip_suffix(';')
        })
        .collect();
    assert!(
        modules.contains(&"catalogue"),
        "modules of src/lib.rs not found: {modules:?}"
    );
    assert!(!modules.contains(&"seed"), "src/lib.rs declares `mod seed`");
    for path in ["src/seed.rs", "src/seed"] {
        assert!(
            !root().join(path).exists(),
            "{path} exists: the generator lives in tools/seed"
        );
    }
    assert!(root().join("tools/seed/seed.rs").exists());
}

/// A SQL file's text with its comments (`--`, `/* */`), string literals and quoted identifiers
/// blanked out, so that only keywords and bare names remain.
fn sql_code(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let end = if c == '-' && next == Some('-') {
            (i..chars.len())
                .find(|&k| chars[k] == '\n')
                .unwrap_or(chars.len())
        } else if c == '/' && next == Some('*') {
            (i + 2..chars.len())
                .find(|&k| chars[k] == '*' && chars.get(k + 1) == Some(&'/'))
                .map_or(chars.len(), |k| k + 2)
        } else if c == '\'' || c == '"' {
            (i + 1..chars.len())
                .find(|&k| chars[k] == c)
                .map_or(chars.len(), |k| k + 1)
        } else {
            out.push(c);
            i += 1;
            continue;
        };
        out.push(' ');
        i = end;
    }
    out
}

/// ARCHITECTURE.md: the exporter never writes. Besides its read-only sessions, no statement it
/// runs (every file under `sql/` but the operator's `sql/setup/`) holds a writing command.
#[test]
fn the_statements_do_not_write() {
    const WRITES: &[&str] = &[
        "INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "CREATE", "DROP", "ALTER", "TRUNCATE",
        "GRANT", "REVOKE", "COPY", "LOCK", "VACUUM", "CLUSTER", "REINDEX", "REFRESH", "COMMENT",
        "SECURITY", "IMPORT", "CALL", "DO", "NOTIFY", "NEXTVAL", "SETVAL",
    ];
    let words = |code: &str| -> Vec<String> {
        code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map(str::to_uppercase)
            .filter(|w| WRITES.contains(&w.as_str()))
            .collect()
    };
    // The check itself: comments and literals are not statements, a command is.
    assert_eq!(
        words(&sql_code(
            "-- DELETE old rows\n/* DROP */ SELECT 'insert', \"Update\" FROM t; delete from t"
        )),
        ["DELETE"]
    );
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("sql/") {
            let path = entry.expect("entry").path();
            if path.is_dir() && path != root().join("sql/setup") {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "sql") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("sql"), &mut files);
    assert!(files.len() > 10, "statement files: {files:?}");
    let mut broken = Vec::new();
    let mut selects = 0;
    for path in &files {
        let code = sql_code(&std::fs::read_to_string(path).expect("a statement file"));
        selects += code.to_uppercase().matches("SELECT").count();
        for w in words(&code) {
            let rel = path.strip_prefix(root()).unwrap_or(path);
            broken.push(format!("{}: {w}", rel.display()));
        }
    }
    assert!(selects >= files.len() / 2, "only {selects} SELECTs read");
    assert!(
        broken.is_empty(),
        "writing commands in the exporter's statements:\n{}",
        broken.join("\n")
    );
}

/// ARCHITECTURE.md: a scrape never touches the database. The modules that answer it serve what
/// the refresh loop published, and name neither a database crate nor `crate::db`.
#[test]
fn the_scrape_path_names_no_database() {
    let mut broken = Vec::new();
    for path in ["src/http.rs", "src/gzip.rs"] {
        let text = std::fs::read_to_string(root().join(path)).expect("a scrape-path module");
        let code = lex(&text).code;
        for word in [
            "tokio_postgres",
            "deadpool_postgres",
            "postgres",
            "crate::db",
        ] {
            for line in lines_naming(&code, word) {
                broken.push(format!("{path}:{line}: names `{word}`"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// ARCHITECTURE.md: the ledger has one owner (the refresh task), so its counting path takes no
/// locks.
#[test]
fn the_ledger_takes_no_locks() {
    let files = rust_files("src/ledger");
    assert!(files.len() > 5, "ledger files: {}", files.len());
    let mut broken = Vec::new();
    for (path, text) in files {
        let code = lex(&text).code;
        for word in ["Mutex", "RwLock", "parking_lot"] {
            for line in lines_naming(&code, word) {
                broken.push(format!("{path}:{line}: names `{word}`"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// ARCHITECTURE.md: every Rust file starts with a `//!` comment saying what it owns.
#[test]
fn every_rust_file_says_what_it_owns() {
    let mut files = Vec::new();
    for dir in ["src", "tools", "tests", "benches"] {
        files.extend(rust_files(dir));
    }
    let missing: Vec<&str> = files
        .iter()
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(path, _)| path.as_str())
        .collect();
    assert!(files.len() > 50, "only {} files read", files.len());
    assert!(missing.is_empty(), "no leading //! comment: {missing:?}");
}

/// ARCHITECTURE.md: nothing calls `exit`: the exit code is `main`'s return value, so no code path
/// skips the shutdown (the drain, the state file's last save).
#[test]
fn nothing_calls_exit() {
    let mut broken = Vec::new();
    for (path, text) in rust_files("src") {
        for line in lines_naming(&lex(&text).code, "exit") {
            broken.push(format!("{path}:{line}"));
        }
    }
    let main = lex(&std::fs::read_to_string(root().join("src/main.rs")).expect("src/main.rs")).code;
    assert!(
        !lines_naming(&main, "ExitCode").is_empty(),
        "main no longer returns an ExitCode"
    );
    assert!(broken.is_empty(), "names `exit`:\n{}", broken.join("\n"));
}

/// The README's "Metrics" section, split into its tables: (header row, body rows as cells).
fn readme_tables() -> Vec<(String, Vec<Vec<String>>)> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme.find("\n## Metrics\n").expect("README: ## Metrics");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut tables: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    let mut in_table = false;
    for line in section.lines() {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<String> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        if !in_table {
            tables.push((cells.join(" | "), Vec::new()));
            in_table = true;
        } else if !cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            tables.last_mut().expect("a table").1.push(cells);
        }
    }
    tables
}

/// The `backticked` names in a table cell.
fn names_in(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn table<'a>(tables: &'a [(String, Vec<Vec<String>>)], header: &str) -> &'a [Vec<String>] {
    let found: Vec<_> = tables.iter().filter(|(h, _)| h == header).collect();
    assert_eq!(
        found.len(),
        1,
        "README ## Metrics: one table headed `{header}`"
    );
    &found[0].1
}

fn sorted_diff(readme: &BTreeSet<String>, catalogue: &BTreeSet<String>) -> String {
    format!(
        "only in the README: {:?}; only in the catalogue: {:?}",
        readme.difference(catalogue).collect::<Vec<_>>(),
        catalogue.difference(readme).collect::<Vec<_>>()
    )
}

/// The README's metric tables are the catalogue (src/catalogue.rs): the spend-log families with
/// their types, the entity gauges, and the families a database cannot supply.
#[test]
fn readme_metric_tables_match_the_catalogue() {
    let tables = readme_tables();

    let mut readme = BTreeSet::new();
    let mut wrong_type = Vec::new();
    for row in table(&tables, "Family | Type | Rows | Value") {
        for name in names_in(&row[0]) {
            if let Some(f) = LEDGER_FAMILIES.iter().find(|f| f.name == name) {
                let kind = match f.kind {
                    Kind::Counter(_) => "counter",
                    Kind::Histogram(_) => "histogram",
                };
                if row[1] != kind {
                    wrong_type.push(format!("{name}: README {}, catalogue {kind}", row[1]));
                }
            }
            readme.insert(name);
        }
    }
    let catalogue: BTreeSet<String> = LEDGER_FAMILIES.iter().map(|f| f.name.into()).collect();
    assert_eq!(
        readme,
        catalogue,
        "spend-log families: {}",
        sorted_diff(&readme, &catalogue)
    );
    assert!(wrong_type.is_empty(), "types: {wrong_type:?}");

    let readme: BTreeSet<String> = table(&tables, "Family | Labels | Value")
        .iter()
        .flat_map(|row| names_in(&row[0]))
        .collect();
    let catalogue: BTreeSet<String> = GAUGE_FAMILIES.iter().map(|g| g.name.into()).collect();
    assert_eq!(
        readme,
        catalogue,
        "entity gauges: {}",
        sorted_diff(&readme, &catalogue)
    );

    let readme: BTreeSet<String> = table(&tables, "Family | Why not")
        .iter()
        .flat_map(|row| names_in(&row[0]))
        .collect();
    let catalogue: BTreeSet<String> = NOT_DERIVABLE.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        readme,
        catalogue,
        "not derivable: {}",
        sorted_diff(&readme, &catalogue)
    );
}
