//! `mlmodel-operator fetch` over HTTP against a misbehaving local server.

use std::time::Duration;

use crate::support::{Fetch, Route, Server, Step, TempDir, payload, sha256_hex};

const MIB: usize = 1 << 20;

fn read(path: impl AsRef<std::path::Path>) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_a_file_verifies_it_and_reports_json() {
    let srv = Server::start().await;
    let body = payload(MIB + 123, 1);
    let sha = sha256_hex(&body);
    srv.route("/models/model.bin", Route::new(body.clone()));
    let dir = TempDir::new("ok");
    let dest = dir.path().join("dest");
    let run = Fetch::new(&srv.url("/models/model.bin"), &dest)
        .args(&["--sha256", &sha.to_uppercase()])
        .run()
        .await;
    run.assert_ok();
    assert_eq!(read(dest.join("model.bin")), body);
    assert_eq!(run.term["bytes"], body.len() as u64);
    assert_eq!(run.term["sha256"], sha);
    assert_eq!(run.term["files"], 1);
    assert_eq!(run.term["cached"], false);
    assert!(run.term["seconds"].as_f64().is_some());
    assert_eq!(
        run.term_raw.lines().count(),
        1,
        "one line: {}",
        run.term_raw
    );
    let marker: serde_json::Value =
        serde_json::from_slice(&read(dest.join(".mlmodel-complete.json"))).unwrap();
    assert_eq!(marker["url"], srv.url("/models/model.bin"));
    assert_eq!(marker["sha256"], sha);
    assert!(
        !dest.join(".mlmodel-partial").exists(),
        "staging left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sha256_the_digest_is_still_reported_and_filename_applies() {
    let srv = Server::start().await;
    let body = payload(1000, 2);
    srv.route("/x", Route::new(body.clone()));
    let dir = TempDir::new("name");
    let dest = dir.path().join("dest");
    let run = Fetch::new(&srv.url("/x"), &dest)
        .args(&["--filename", "weights.bin"])
        .run()
        .await;
    run.assert_ok();
    assert_eq!(run.term["sha256"], sha256_hex(&body));
    assert_eq!(read(dest.join("weights.bin")), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_the_connection_drops_mid_body() {
    let srv = Server::start().await;
    let body = payload(4 * MIB, 3);
    let cut = 3 * MIB / 2;
    srv.route(
        "/m.bin",
        Route::new(body.clone()).script([Step::DropAfter(cut)]),
    );
    let dir = TempDir::new("drop");
    let dest = dir.path().join("dest");
    let run = Fetch::new(&srv.url("/m.bin"), &dest)
        .args(&["--sha256", &sha256_hex(&body)])
        .run()
        .await;
    run.assert_ok();
    assert_eq!(read(dest.join("m.bin")), body);
    let hits = srv.hits_for("/m.bin");
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(
        hits[1].range.as_deref(),
        Some(format!("bytes={cut}-").as_str())
    );
    assert_eq!(hits[1].if_range, Route::new(body.clone()).etag);
    assert_eq!(hits[1].status, 206);
    // Every byte crossed the wire once: the kept prefix was not fetched again.
    assert_eq!(srv.served(), body.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_transfer_is_abandoned_and_resumed() {
    let srv = Server::start().await;
    let body = payload(2 * MIB, 4);
    srv.route(
        "/s.bin",
        Route::new(body.clone()).script([Step::StallAfter(MIB)]),
    );
    let dir = TempDir::new("stall");
    let dest = dir.path().join("dest");
    let run = Fetch::new(&srv.url("/s.bin"), &dest)
        .args(&["--stall-timeout", "3"])
        .run()
        .await;
    run.assert_ok();
    assert_eq!(read(dest.join("s.bin")), body);
    let hits = srv.hits_for("/s.bin");
    assert_eq!(hits.len(), 2);
    assert_eq!(
        hits[1].range.as_deref(),
        Some(format!("bytes={MIB}-").as_str())
    );
    assert_eq!(srv.served(), body.len() as u64);
    assert!(run.stderr.contains("no data received"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_success() {
    let srv = Server::start().await;
    let body = payload(5000, 5);
    srv.route(
        "/r.bin",
        Route::new(body.clone()).script([Step::Status(500, vec![]), Step::Status(503, vec![])]),
    );
    let dir = TempDir::new("5xx");
    let dest = dir.path().join("dest");
    let run = Fetch::new(&srv.url("/r.bin"), &dest).run().await;
    run.assert_ok();
    let statuses: Vec<u16> = srv.hits_for("/r.bin").iter().map(|h| h.status).collect();
    assert_eq!(statuses, vec![500, 503, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_waits_for_retry_after() {
    let srv = Server::start().await;
    let body = payload(5000, 6);
    let after = vec![("Retry-After".to_string(), "2".to_string())];
    srv.route(
        "/t.bin",
        Route::new(body.clone()).script([Step::Status(429, after)]),
    );
    let dir = TempDir::new("429");
    let dest = dir.path().join("dest");
    let run = Fetch::new(&srv.url("/t.bin"), &dest).run().await;
    run.assert_ok();
    let hits = srv.hits_for("/t.bin");
    assert_eq!(hits.len(), 2);
    // The backoff alone would be ~50 ms; only Retry-After explains a 2 s gap.
    let gap = hits[1].at - hits[0].at;
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_server_errors_give_up_with_http_error() {
    let srv = Server::start().await;
    srv.route(
        "/e.bin",
        Route::new(vec![1u8; 10]).script(std::iter::repeat_n(Step::Status(500, vec![]), 10)),
    );
    let dir = TempDir::new("giveup");
    let dest = dir.path().join("dest");
    let run = Fetch::new(&srv.url("/e.bin"), &dest)
        .args(&["--retries", "2"])
        .run()
        .await;
    run.assert_failed("HttpError");
    assert_eq!(run.term["status"], 500);
    assert!(run.message().contains("HTTP 500"), "{}", run.message());
    assert_eq!(srv.hits_for("/e.bin").len(), 3);
    assert!(!dest.join(".mlmodel-complete.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_fail_at_once_with_their_reason() {
    let srv = Server::start().await;
    let cases = [
        (404, "NotFound"),
        (410, "NotFound"),
        (401, "AuthFailed"),
        (403, "AuthFailed"),
        (400, "HttpError"),
    ];
    for (status, reason) in cases {
        let path = format!("/c{status}");
        srv.route(
            &path,
            Route::new(vec![0u8; 4]).script([Step::Status(status, vec![])]),
        );
        let dir = TempDir::new("4xx");
        let run = Fetch::new(&srv.url(&path), &dir.path().join("dest"))
            .run()
            .await;
        run.assert_failed(reason);
        assert_eq!(run.term["status"], status);
        assert!(run.message().contains(&path), "{}", run.message());
        assert_eq!(srv.hits_for(&path).len(), 1, "{status} was retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_range_support_restarts_from_zero() {
    let srv = Server::start().await;
    let body = payload(2 * MIB, 7);
    srv.route(
        "/n.bin",
        Route::new(body.clone())
            .no_ranges()
            .script([Step::DropAfter(MIB)]),
    );
    let dir = TempDir::new("norange");
    let dest = dir.path().join("dest");
    let run = Fetch::new(&srv.url("/n.bin"), &dest)
        .args(&["--sha256", &sha256_hex(&body)])
        .run()
        .await;
    run.assert_ok();
    assert_eq!(read(dest.join("n.bin")), body);
    let hits = srv.hits_for("/n.bin");
    assert_eq!(
        hits[1].range.as_deref(),
        Some(format!("bytes={MIB}-").as_str())
    );
    assert_eq!(hits[1].status, 200);
    assert_eq!(srv.served(), (MIB + body.len()) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_etag_discards_the_kept_prefix() {
    let srv = Server::start().await;
    let old = payload(2 * MIB, 8);
    let new = payload(2 * MIB + 10, 9);
    srv.route(
        "/c.bin",
        Route::new(old.clone()).script([
            Step::DropAfter(MIB),
            Step::Replace {
                body: new.clone(),
                etag: "\"v2\"".into(),
            },
        ]),
    );
    let dir = TempDir::new("etag");
    let dest = dir.path().join("dest");
    let run = Fetch::new(&srv.url("/c.bin"), &dest).run().await;
    run.assert_ok();
    // Never a mix of old prefix and new suffix.
    assert_eq!(read(dest.join("c.bin")), new);
    assert_eq!(run.term["sha256"], sha256_hex(&new));
    let hits = srv.hits_for("/c.bin");
    assert_eq!(hits[1].if_range, Route::new(old).etag);
    assert_eq!(hits[1].status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overstated_content_length_ends_with_a_satisfied_range() {
    let srv = Server::start().await;
    let body = payload(MIB, 10);
    srv.route(
        "/l.bin",
        Route::new(body.clone()).script([Step::LengthTooLong(100)]),
    );
    let dir = TempDir::new("long");
    let dest = dir.path().join("dest");
    let run = Fetch::new(&srv.url("/l.bin"), &dest).run().await;
    run.assert_ok();
    assert_eq!(read(dest.join("l.bin")), body);
    let hits = srv.hits_for("/l.bin");
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].status, 416);
    assert_eq!(srv.served(), body.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_understated_content_length_is_caught_by_the_checksum() {
    let srv = Server::start().await;
    let body = payload(MIB, 11);
    let sha = sha256_hex(&body);
    srv.route(
        "/short.bin",
        Route::new(body.clone()).script([Step::LengthTooShort(100)]),
    );
    let dir = TempDir::new("short");
    let dest = dir.path().join("dest");
    let run = Fetch::new(&srv.url("/short.bin"), &dest)
        .args(&["--sha256", &sha])
        .run()
        .await;
    run.assert_failed("ChecksumMismatch");
    let actual = sha256_hex(&body[..body.len() - 100]);
    assert_eq!(run.term["expected"], sha);
    assert_eq!(run.term["actual"], actual);
    assert!(run.message().contains(&sha) && run.message().contains(&actual));
    assert!(
        !dest.join("short.bin").exists(),
        "a mismatched file was placed"
    );
    assert!(!dest.join(".mlmodel-complete.json").exists());

    // The bad bytes are not trusted on the next run: it downloads again and succeeds.
    let run = Fetch::new(&srv.url("/short.bin"), &dest)
        .args(&["--sha256", &sha])
        .run()
        .await;
    run.assert_ok();
    assert_eq!(read(dest.join("short.bin")), body);
    let last = srv.hits_for("/short.bin").pop().unwrap();
    assert_eq!(last.range, None, "resumed from rejected bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_length_is_read_to_the_end() {
    let srv = Server::start().await;
    let body = payload(MIB + 7, 12);
    srv.route("/chunked", Route::new(body.clone()).no_length());
    let dir = TempDir::new("nolen");
    let dest = dir.path().join("dest");
    let run = Fetch::new(&srv.url("/chunked"), &dest)
        .args(&["--extract", "none"])
        .run()
        .await;
    run.assert_ok();
    assert_eq!(read(dest.join("chunked")), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_with_the_same_inputs_finishes_at_once() {
    let srv = Server::start().await;
    let body = payload(10_000, 13);
    let sha = sha256_hex(&body);
    srv.route("/i.bin", Route::new(body.clone()));
    let dir = TempDir::new("idem");
    let dest = dir.path().join("dest");
    Fetch::new(&srv.url("/i.bin"), &dest)
        .args(&["--sha256", &sha])
        .run()
        .await
        .assert_ok();
    for extra in [vec!["--sha256", sha.as_str()], vec![]] {
        let run = Fetch::new(&srv.url("/i.bin"), &dest)
            .args(&extra)
            .run()
            .await;
        run.assert_ok();
        assert_eq!(run.term["cached"], true);
        assert_eq!(run.term["sha256"], sha);
        assert_eq!(run.term["bytes"], body.len() as u64);
    }
    assert_eq!(
        srv.hits_for("/i.bin").len(),
        1,
        "the rerun went to the network"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_inputs_replace_the_previous_result_and_its_partial_data() {
    let srv = Server::start().await;
    let a = payload(3 * MIB, 14);
    let b = payload(5000, 15);
    srv.route("/a.bin", Route::new(a.clone()));
    srv.route("/b.bin", Route::new(b.clone()));
    srv.route(
        "/c.bin",
        Route::new(payload(2 * MIB, 16)).script([Step::DropAfter(MIB), Step::Status(404, vec![])]),
    );
    let dir = TempDir::new("replace");
    let dest = dir.path().join("dest");
    Fetch::new(&srv.url("/a.bin"), &dest)
        .run()
        .await
        .assert_ok();
    // A different sha256 for the same URL is other inputs too.
    let run = Fetch::new(&srv.url("/a.bin"), &dest)
        .args(&["--sha256", &sha256_hex(&b)])
        .run()
        .await;
    run.assert_failed("ChecksumMismatch");
    assert!(
        !dest.join("a.bin").exists(),
        "the old result survived a failed replacement"
    );

    // A failed download leaves partial data behind ...
    Fetch::new(&srv.url("/c.bin"), &dest)
        .run()
        .await
        .assert_failed("NotFound");
    assert!(dest.join(".mlmodel-partial").exists());
    // ... which a download of something else discards.
    let run = Fetch::new(&srv.url("/b.bin"), &dest).run().await;
    run.assert_ok();
    assert_eq!(crate::support::tree(&dest), vec![("b.bin".to_string(), b)]);
    assert!(!dest.join(".mlmodel-partial").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_run_resumes_the_partial_data_of_a_failed_one() {
    let srv = Server::start().await;
    let body = payload(3 * MIB, 17);
    let sha = sha256_hex(&body);
    let cut = 2 * MIB + 5;
    srv.route(
        "/p.bin",
        Route::new(body.clone()).script([Step::DropAfter(cut), Step::Status(404, vec![])]),
    );
    let dir = TempDir::new("crossrun");
    let dest = dir.path().join("dest");
    let url = srv.url("/p.bin");
    Fetch::new(&url, &dest)
        .args(&["--sha256", &sha])
        .run()
        .await
        .assert_failed("NotFound");
    let run = Fetch::new(&url, &dest)
        .args(&["--sha256", &sha])
        .run()
        .await;
    run.assert_ok();
    assert_eq!(read(dest.join("p.bin")), body);
    let last = srv.hits_for("/p.bin").pop().unwrap();
    assert_eq!(
        last.range.as_deref(),
        Some(format!("bytes={cut}-").as_str())
    );
    // The digest covers the prefix kept from the first run (hashed again, not re-fetched).
    assert_eq!(srv.served(), body.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_local_and_metadata_addresses_are_refused() {
    let srv = Server::start().await;
    srv.route(
        "/redirect",
        Route::new(vec![]).script([Step::Redirect(
            "http://169.254.169.254/latest/meta-data/".into(),
        )]),
    );
    let dir = TempDir::new("linklocal");
    for url in [
        "http://169.254.169.254/latest/meta-data/iam".to_string(),
        "http://[fd00:ec2::254]/latest".to_string(),
        srv.url("/redirect"),
    ] {
        let run = Fetch::new(&url, &dir.path().join("dest")).run().await;
        run.assert_failed("ForbiddenAddress");
        assert!(
            run.message().contains("--allow-link-local"),
            "{}",
            run.message()
        );
    }
    assert_eq!(
        srv.hits_for("/redirect").len(),
        1,
        "refused redirects are not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_to_allowed_hosts_are_followed() {
    let srv = Server::start().await;
    let body = payload(3000, 18);
    srv.route("/final.bin", Route::new(body.clone()));
    srv.route(
        "/start.bin",
        Route::new(vec![]).script([Step::Redirect(srv.url("/final.bin"))]),
    );
    let dir = TempDir::new("redirect");
    let dest = dir.path().join("dest");
    let run = Fetch::new(&srv.url("/start.bin"), &dest).run().await;
    run.assert_ok();
    assert_eq!(read(dest.join("start.bin")), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_logged_with_size_rate_and_eta() {
    let srv = Server::start().await;
    let body = payload(MIB, 19);
    srv.route(
        "/slow.bin",
        Route::new(body).script([Step::Slow {
            chunk: 128 * 1024,
            pause: Duration::from_millis(400),
        }]),
    );
    let dir = TempDir::new("progress");
    let run = Fetch::new(&srv.url("/slow.bin"), &dir.path().join("dest"))
        .args(&["--progress-interval", "1"])
        .run()
        .await;
    run.assert_ok();
    // The server takes >= 3.2 s, so lines at 1 s, 2 s and 3 s must have been logged.
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("progress:"))
        .collect();
    assert!(lines.len() >= 3, "{}", run.stderr);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("of 1.0 MiB (") && l.contains("/s, ETA ")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_unreachable_servers_have_their_reasons() {
    let dir = TempDir::new("args");
    let dest = dir.path().join("dest");
    Fetch::new("ftp://example.com/x", &dest)
        .run()
        .await
        .assert_failed("InvalidURL");
    Fetch::new("http://127.0.0.1:9/x", &dest)
        .args(&["--sha256", "abc"])
        .run()
        .await
        .assert_failed("InvalidArgument");
    // Nothing listens on the discard port: connection refused, retried, then NetworkError.
    let run = Fetch::new("http://127.0.0.1:9/x", &dest)
        .args(&["--retries", "1"])
        .run()
        .await;
    run.assert_failed("NetworkError");
    assert!(run.message().contains("127.0.0.1:9"), "{}", run.message());
}
