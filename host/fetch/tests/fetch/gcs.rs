//! `gs://` through object_store's GCS client, pointed at the local test server (its XML API: HEAD
//! and GET of objects, S3-style listing) with a service-account file that disables OAuth, the
//! switch object_store offers for emulators.

use crate::support::{Fetch, Route, Server, Step, TempDir, payload, sha256_hex, tree};

const MODIFIED: &str = "Mon, 01 Jan 2024 00:00:00 GMT";

fn object(body: Vec<u8>) -> Route {
    Route::new(body).header("Last-Modified", MODIFIED)
}

fn listing(prefix: &str, objects: &[(&str, usize)]) -> String {
    let contents: String = objects
        .iter()
        .map(|(key, size)| {
            format!(
                "<Contents><Key>{key}</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>\
                 <ETag>\"{key}\"</ETag><Size>{size}</Size></Contents>"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>bkt</Name>\
         <Prefix>{prefix}</Prefix><KeyCount>{}</KeyCount><MaxKeys>1000</MaxKeys>\
         <IsTruncated>false</IsTruncated>{contents}</ListBucketResult>",
        objects.len()
    )
}

fn gcs(srv: &Server, dir: &TempDir, url: &str, dest: &std::path::Path) -> Fetch {
    let sa = dir.path().join("service-account.json");
    let creds = serde_json::json!({
        "gcs_base_url": srv.url(""),
        "disable_oauth": true,
        "client_email": "",
        "private_key": "",
        "private_key_id": "",
    });
    std::fs::write(&sa, creds.to_string()).unwrap();
    Fetch::new(url, dest).env("GOOGLE_SERVICE_ACCOUNT", sa.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_downloads_and_resumes_after_a_drop() {
    let srv = Server::start().await;
    let body = payload(2 << 20, 51);
    // The listing HEADs the object first; the first GET is cut short.
    srv.route(
        "/bkt/models/m.onnx",
        object(body.clone()).script([Step::Normal, Step::DropAfter(1 << 20)]),
    );
    let dir = TempDir::new("gcs");
    let dest = dir.path().join("dest");
    let run = gcs(&srv, &dir, "gs://bkt/models/m.onnx", &dest)
        .args(&["--sha256", &sha256_hex(&body)])
        .run()
        .await;
    run.assert_ok();
    assert_eq!(tree(&dest), vec![("m.onnx".to_string(), body.clone())]);
    let gets: Vec<_> = srv
        .hits_for("/bkt/models/m.onnx")
        .into_iter()
        .filter(|h| h.method == "GET")
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[1].range.as_deref(), Some("bytes=1048576-"));
    assert_eq!(srv.served(), body.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_downloads_every_object_under_it() {
    let srv = Server::start().await;
    srv.route(
        "/bkt",
        Route::new(listing(
            "models/bert/",
            &[
                ("models/bert/config.json", 2),
                ("models/bert/onnx/model.onnx", 4),
            ],
        )),
    );
    srv.route("/bkt/models/bert/config.json", object(b"{}".to_vec()));
    srv.route("/bkt/models/bert/onnx/model.onnx", object(b"onnx".to_vec()));
    let dir = TempDir::new("gcs-prefix");
    let dest = dir.path().join("dest");
    let run = gcs(&srv, &dir, "gs://bkt/models/bert", &dest).run().await;
    run.assert_ok();
    assert_eq!(
        tree(&dest),
        vec![
            ("config.json".into(), b"{}".to_vec()),
            ("onnx/model.onnx".into(), b"onnx".to_vec())
        ]
    );
    let list = &srv.hits_for("/bkt")[0];
    assert!(
        list.target.contains("prefix=models%2Fbert%2F"),
        "{}",
        list.target
    );

    srv.route("/bkt", Route::new(listing("models/none/", &[])));
    let run = gcs(&srv, &dir, "gs://bkt/models/none", &dir.path().join("none"))
        .run()
        .await;
    run.assert_failed("NotFound");
}
