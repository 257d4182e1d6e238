//! The embedded store is one process's: a second `custody serve` on the same data directory
//! refuses to start, saying why, and starts once the first has stopped.

use custody_api::{App, ServeConfig};

#[tokio::test]
async fn a_second_serve_on_one_data_directory_is_refused_until_the_first_stops() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = ServeConfig::embedded(
        "127.0.0.1:0".parse().expect("address"),
        dir.path().to_path_buf(),
    );
    let first = App::build(&config).await.expect("the first serve starts");
    let refused = match App::build(&config).await {
        Ok(_) => panic!("a second serve on the same data directory started"),
        Err(error) => error.to_string(),
    };
    assert!(
        refused.contains("in use by another custody serve")
            && refused.contains(&dir.path().display().to_string()),
        "{refused}"
    );
    // A shut-down serve lets go of the directory.
    first.serve(async {}).await.expect("the first serve stops");
    App::build(&config)
        .await
        .expect("a serve starts once the first has stopped");
}
