use super::*;
use std::path::Path;

// Two ed25519 keys and an ECDSA key (ssh-keygen output, comments dropped).
const ED_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINl64FknVPssiMjP+6mmSh2+HAQCTtMqi0hfUCg7pkpJ";
const ED_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF24ckmbXQpZtcGaMpVYr+EDvkHVbMLviVA0OUx2q+Kf";
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKCHVs7Z615310GQe6UUoURopEiajtd9QVELA2EdOwxoTHX7SsIneM/BEpHyKJ+P1y1KlQh8Tn6WfcyjZIQTIyM=";

const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDYRAYqlRJbrX3Lql0r96zXAHNvR2L8IfzurRt+x7y8/nFmA1MpCdtbOiWaLa7Jo+LkqBhaVppD1j5cwm4V/1JJA/nj2kEVp/um09g3ny/puNnAMPdVspIUC2HL8bp9fudA37igTFWpb3lPqmyS1QORA0avD00/jScCaSp88ZEeHQ==";

#[test]
fn an_rsa_key_is_read_and_matched() {
    let rsa = key(RSA);
    assert_eq!(verdict(&one(&format!("h {RSA}\n")), "h", &rsa), Verdict::Match);
    assert_eq!(
        verdict(&one(&format!("h {ED_A}\n")), "h", &rsa),
        Verdict::Mismatch(at(1))
    );
}

thread_local! {
    /// Keys decoded on this thread ([`super::decode_key`]).
    pub(super) static DECODED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One run checks every host against the same files: the keys of the lines of other hosts are
/// not decoded (a 1,000-host known_hosts made `plan --check` over 1,000 hosts decode a million
/// keys). The verdicts stay those of every line read.
#[test]
fn only_the_keys_of_lines_that_matter_are_decoded() {
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&format!("10.0.{}.{} {ED_B}\n", i / 250, i % 250 + 1));
    }
    text.push_str(&format!("h {ED_A}\n"));
    let files = one(&text);
    let a = key(ED_A);
    DECODED.with(|n| n.set(0));
    assert_eq!(verdict(&files, "h", &a), Verdict::Match);
    assert_eq!(verdict(&files, "other", &a), Verdict::Unknown);
    assert_eq!(verdict(&files, "10.0.3.7", &a), Verdict::Mismatch(at(757)));
    let decoded = DECODED.with(|n| n.get());
    assert!(decoded <= 2, "{decoded} keys decoded for 3 checks against 1,001 lines");
    // An @revoked line is read whatever its hosts.
    let revoked = one(&format!("@revoked * {ED_A}\n{text}"));
    assert_eq!(verdict(&revoked, "h", &a), Verdict::Revoked(at(1)));
}

fn key(text: &str) -> KeyData {
    PublicKey::from_openssh(text).unwrap().key_data().clone()
}

fn one(text: &str) -> Vec<(PathBuf, String)> {
    vec![(PathBuf::from("kh"), text.to_string())]
}

fn at(line: usize) -> Place {
    Place {
        file: PathBuf::from("kh"),
        line,
    }
}

fn hashed(name: &str) -> String {
    let salt = [7u8; 20];
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("|1|{}|{}", b64.encode(salt), b64.encode(hmac_sha1(&salt, name)))
}

#[test]
fn the_rules_of_openssh() {
    let a = key(ED_A);
    let name = "web-01.example.com";
    let table: Vec<(&str, String, Verdict)> = vec![
        ("empty file", String::new(), Verdict::Unknown),
        (
            "comments and blank lines",
            format!("# {name} {ED_B}\n\n   \n"),
            Verdict::Unknown,
        ),
        ("exact name, same key", format!("{name} {ED_A}\n"), Verdict::Match),
        (
            "exact name, another key",
            format!("{name} {ED_B}\n"),
            Verdict::Mismatch(at(1)),
        ),
        (
            "another key type is a mismatch, not unknown",
            format!("{name} {ECDSA}\n"),
            Verdict::Mismatch(at(1)),
        ),
        (
            "names are case-insensitive",
            format!("WEB-01.Example.COM {ED_A}\n"),
            Verdict::Match,
        ),
        (
            "in a comma list",
            format!("db-01,{name},10.0.0.1 {ED_A}\n"),
            Verdict::Match,
        ),
        ("another host", format!("web-02.example.com {ED_B}\n"), Verdict::Unknown),
        (
            "a `*` pattern with another key",
            format!("*.example.com {ED_B}\n"),
            Verdict::Mismatch(at(1)),
        ),
        (
            "a `*` pattern with this key",
            format!("*.example.com {ED_A}\n"),
            Verdict::Match,
        ),
        (
            "a `?` pattern",
            format!("web-0?.example.com {ED_B}\n"),
            Verdict::Mismatch(at(1)),
        ),
        (
            "`?` is one character",
            format!("web-?.example.com {ED_B}\n"),
            Verdict::Unknown,
        ),
        (
            "a negated match makes the line not apply",
            format!("*.example.com,!web-01.example.com {ED_B}\n"),
            Verdict::Unknown,
        ),
        (
            "negation wins in any order",
            format!("!web-01.*,*.example.com {ED_A}\n"),
            Verdict::Unknown,
        ),
        (
            "a negation alone concerns nobody",
            format!("!db-* {ED_B}\n"),
            Verdict::Unknown,
        ),
        ("a hashed name", format!("{} {ED_A}\n", hashed(name)), Verdict::Match),
        (
            "a hashed name, another key",
            format!("{} {ED_B}\n", hashed(name)),
            Verdict::Mismatch(at(1)),
        ),
        (
            "another hashed name",
            format!("{} {ED_B}\n", hashed("web-02")),
            Verdict::Unknown,
        ),
        ("an RSA key", format!("{name} {RSA}\n"), Verdict::Mismatch(at(1))),
        (
            "a damaged hashed name is skipped",
            format!("|1|@@@|### {ED_B}\n"),
            Verdict::Unknown,
        ),
        (
            "the same key on a later line wins over another key (a rotation)",
            format!("{name} {ED_B}\n{name} {ED_A}\n"),
            Verdict::Match,
        ),
        (
            "the first mismatching line is named",
            format!("db {ED_A}\n{name} {ECDSA}\n{name} {ED_B}\n"),
            Verdict::Mismatch(at(2)),
        ),
        (
            "tabs and spaces",
            format!("\t{name}\t \t{ED_A} a comment\n"),
            Verdict::Match,
        ),
        (
            "a key that cannot be read is another key",
            format!("{name} ssh-future AAAAB3NzaC1yc2E\n"),
            Verdict::Mismatch(at(1)),
        ),
        (
            "@revoked with this key, whatever the host",
            format!("@revoked * {ED_A}\n"),
            Verdict::Revoked(at(1)),
        ),
        (
            "@revoked with this key for another host",
            format!("@revoked db-01 {ED_A}\n{name} {ED_A}\n"),
            Verdict::Revoked(at(1)),
        ),
        (
            "@revoked wins over a matching line",
            format!("{name} {ED_A}\n@revoked {name} {ED_A}\n"),
            Verdict::Revoked(at(2)),
        ),
        (
            "@revoked with another key says nothing",
            format!("@revoked {name} {ED_B}\n"),
            Verdict::Unknown,
        ),
        (
            "@cert-authority for the host",
            format!("@cert-authority *.example.com {ED_B}\n"),
            Verdict::CertAuthority(at(1)),
        ),
        (
            "@cert-authority and a plain line that accepts the key",
            format!("@cert-authority *.example.com {ED_B}\n{name} {ED_A}\n"),
            Verdict::Match,
        ),
        (
            "@cert-authority for another host",
            format!("@cert-authority *.example.org {ED_B}\n"),
            Verdict::Unknown,
        ),
        (
            "an unknown marker is skipped",
            format!("@future {name} {ED_B}\n"),
            Verdict::Unknown,
        ),
        ("a line without a key is skipped", format!("{name}\n"), Verdict::Unknown),
    ];
    for (what, text, want) in table {
        assert_eq!(verdict(&one(&text), name, &a), want, "{what}: {text}");
    }
}

#[test]
fn names_hashed_by_ssh_keygen() {
    // `ssh-keygen -H` of "web-01.example.com ED_A" and "[10.0.0.1]:2222 ED_B".
    let text = format!(
        "|1|b+JzdUH4gVM2EzY5DGpq+cSPBOo=|C5C48M6OiDLSUFdze9rxieeCdgE= {ED_A}\n\
         |1|mT2YaxqY6w347KZ4uEd9+ARm0jU=|9cTkOXSVlrfKaz4VRbJ5j4K+8k4= {ED_B}\n"
    );
    let (a, b) = (key(ED_A), key(ED_B));
    assert_eq!(verdict(&one(&text), "web-01.example.com", &a), Verdict::Match);
    assert_eq!(verdict(&one(&text), "web-01.example.com", &b), Verdict::Mismatch(at(1)));
    assert_eq!(verdict(&one(&text), "[10.0.0.1]:2222", &b), Verdict::Match);
    assert_eq!(verdict(&one(&text), "[10.0.0.1]:2222", &a), Verdict::Mismatch(at(2)));
    assert_eq!(verdict(&one(&text), "10.0.0.1", &a), Verdict::Unknown);
}

#[test]
fn ports_as_openssh_writes_them() {
    assert_eq!(lookup_name(None, "Web-01", 22), "web-01");
    assert_eq!(lookup_name(None, "10.0.0.1", 2222), "[10.0.0.1]:2222");
    assert_eq!(lookup_name(Some("Front"), "10.0.0.1", 2222), "front");
    let a = key(ED_A);
    let table = [
        ("[10.0.0.1]:2222", format!("[10.0.0.1]:2222 {ED_A}\n"), Verdict::Match),
        ("[10.0.0.1]:2222", format!("10.0.0.1 {ED_B}\n"), Verdict::Unknown),
        ("[10.0.0.1]:2222", format!("[10.0.0.1]:22 {ED_B}\n"), Verdict::Unknown),
        (
            "[10.0.0.1]:2222",
            format!("[10.0.0.*]:2222 {ED_B}\n"),
            Verdict::Mismatch(at(1)),
        ),
        (
            "[10.0.0.1]:2222",
            format!("{} {ED_B}\n", hashed("[10.0.0.1]:2222")),
            Verdict::Mismatch(at(1)),
        ),
        ("10.0.0.1", format!("[10.0.0.1]:2222 {ED_B}\n"), Verdict::Unknown),
        // `*` covers the brackets and the port too, as in OpenSSH.
        ("[10.0.0.1]:2222", format!("* {ED_B}\n"), Verdict::Mismatch(at(1))),
    ];
    for (name, text, want) in table {
        assert_eq!(verdict(&one(&text), name, &a), want, "{name}: {text}");
    }
}

#[test]
fn every_file_counts_in_order() {
    let a = key(ED_A);
    let files = |user: &str, global: &str| {
        vec![
            (PathBuf::from("user"), user.to_string()),
            (PathBuf::from("global"), global.to_string()),
        ]
    };
    let global_line = Place {
        file: PathBuf::from("global"),
        line: 2,
    };
    // A mismatch in the global file is a mismatch.
    assert_eq!(
        verdict(&files("", &format!("db {ED_A}\nweb-* {ED_B}\n")), "web-01", &a),
        Verdict::Mismatch(global_line.clone())
    );
    // A match in one file and another key in the other: the match (a second key of the host).
    assert_eq!(
        verdict(
            &files(&format!("web-01 {ED_A}\n"), &format!("db {ED_A}\nweb-* {ED_B}\n")),
            "web-01",
            &a
        ),
        Verdict::Match
    );
    // A revocation in the global file wins over the user's match.
    assert_eq!(
        verdict(
            &files(&format!("web-01 {ED_A}\n"), &format!("#\n@revoked * {ED_A}\n")),
            "web-01",
            &a
        ),
        Verdict::Revoked(global_line)
    );
}

fn policy(dir: &Path, user: &[&str], learning: Learning) -> HostKeyPolicy {
    HostKeyPolicy {
        name: "web-01".into(),
        user_files: user.iter().map(|f| dir.join(f)).collect(),
        global_files: vec![dir.join("global")],
        learning,
        hash_names: false,
    }
}

#[test]
fn learning_writes_one_line_and_checks_again_under_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let offered = PublicKey::from_openssh(ED_A).unwrap();
    let p = policy(dir.path(), &["sub/first", "second"], Learning::Allowed("test".into()));
    assert_eq!(p.check(&offered).unwrap(), Verdict::Unknown);
    // Into the first file, its folder created, on a line of its own.
    assert_eq!(
        p.learn(&offered).unwrap(),
        Recorded::Written(dir.path().join("sub/first"))
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sub/first")).unwrap(),
        format!("web-01 {ED_A}\n")
    );
    assert_eq!(p.check(&offered).unwrap(), Verdict::Match);
    assert_eq!(p.learn(&offered).unwrap(), Recorded::AlreadyThere);
    // A file without a final newline gets one before the new line.
    std::fs::write(dir.path().join("second"), format!("db {ED_B}")).unwrap();
    let p2 = HostKeyPolicy {
        user_files: vec![dir.path().join("second")],
        ..p.clone()
    };
    assert_eq!(
        p2.learn(&offered).unwrap(),
        Recorded::Written(dir.path().join("second"))
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("second")).unwrap(),
        format!("db {ED_B}\nweb-01 {ED_A}\n")
    );
    // A line written meanwhile (here: in the global file) is seen under the lock.
    let p3 = HostKeyPolicy {
        name: "web-02".into(),
        ..p.clone()
    };
    std::fs::write(dir.path().join("global"), format!("web-* {ED_B}\n")).unwrap();
    assert_eq!(
        p3.learn(&offered),
        Err(LearnError::Refused(Verdict::Mismatch(Place {
            file: dir.path().join("global"),
            line: 1
        })))
    );
    // No user file: trusted for the run, written nowhere.
    let none = policy(dir.path(), &[], Learning::Allowed("test".into()));
    assert_eq!(none.learn(&offered).unwrap(), Recorded::Nowhere);
    assert_eq!(none.describe_files(), dir.path().join("global").display().to_string());
}

#[test]
fn writers_at_once_record_a_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let offered = PublicKey::from_openssh(ED_A).unwrap();
    let p = policy(dir.path(), &["kh"], Learning::Allowed("test".into()));
    let results: Vec<Recorded> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| p.learn(&offered).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| matches!(r, Recorded::Written(_))).count(), 1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kh")).unwrap(),
        format!("web-01 {ED_A}\n")
    );
}

#[test]
fn hashed_names_are_written_when_asked_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let offered = PublicKey::from_openssh(ED_A).unwrap();
    let p = HostKeyPolicy {
        hash_names: true,
        ..policy(dir.path(), &["kh"], Learning::Allowed("test".into()))
    };
    p.learn(&offered).unwrap();
    let text = std::fs::read_to_string(dir.path().join("kh")).unwrap();
    assert!(text.starts_with("|1|") && !text.contains("web-01"), "{text}");
    assert_eq!(p.check(&offered).unwrap(), Verdict::Match);
}

#[test]
fn an_unreadable_user_file_is_an_error_a_missing_one_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let offered = PublicKey::from_openssh(ED_A).unwrap();
    let p = policy(dir.path(), &["missing"], Learning::Refused);
    assert_eq!(p.check(&offered).unwrap(), Verdict::Unknown);
    // A folder where the file should be: it cannot be read.
    std::fs::create_dir(dir.path().join("missing")).unwrap();
    let err = p.check(&offered).unwrap_err();
    assert!(err.starts_with("cannot read "), "{err}");
}

#[test]
fn glob_is_openssh_match_pattern() {
    for (s, p, want) in [
        ("abc", "abc", true),
        ("abc", "a*", true),
        ("abc", "*c", true),
        ("abc", "*", true),
        ("", "*", true),
        ("abc", "a?c", true),
        ("abc", "a?", false),
        ("abc", "*b*", true),
        ("aXbYc", "a*b*c", true),
        ("abc", "abcd", false),
        ("abcd", "abc", false),
        ("a.b.c", "*.c", true),
        ("ab", "a**b", true),
    ] {
        assert_eq!(glob(s.as_bytes(), p.as_bytes()), want, "{s} ~ {p}");
    }
}
