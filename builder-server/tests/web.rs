//! Issue 14, item 7: the web page in a real browser. Headless Chromium, driven over WebDriver
//! (`chromium-driver`, through `fantoccini`), signs in with a token, lists the builds, opens a
//! running one, sees a line the build printed after the page loaded appear in its log, and
//! cancels it with the page's button.

use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};

mod common;
use common::{Api, Server, connect, context_tar, free_port, start_with};

const TOKEN: &str = "token-of-the-browser-0123456789";

/// The highest `tick-N` in `log`.
fn last_tick(log: &str) -> Option<u32> {
    log.lines()
        .filter_map(|l| l.trim().strip_prefix("tick-")?.parse().ok())
        .max()
}

#[test]
fn issue_14_the_page_lists_builds_and_follows_a_running_one_live() {
    let driver = which("chromedriver");
    let tokens = format!("{TOKEN} web-team\n");
    let (_root, _server, port) = start_with(&[], &[("RBUILD_TOKENS", tokens.as_str())]);
    let api = Api::new(port, Some(TOKEN));
    let done = api.submit(
        "t=web:done",
        context_tar(b"FROM scratch\nCOPY busybox /bin/busybox\n"),
    );
    assert_eq!(api.wait_done(&done)["state"], "succeeded");
    // A build that prints a numbered line every 300 ms for a minute.
    let ticking = api.submit(
        "t=web:ticking",
        context_tar(
            b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"for i in $(/bin/busybox seq 1 200); do echo tick-$i; /bin/busybox sleep 0.3; done\"]\n",
        ),
    );

    let driver_port = free_port();
    let _driver = Server(
        Command::new(driver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    drop(connect(driver_port));
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
            }),
        );
        let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
            .expect("chromium-driver starts a headless chromium");
        browser.goto(&format!("{base}/")).await.unwrap();
        // The API wants a token: the page asks for it once.
        let field = browser.wait().at_most(Duration::from_secs(30)).for_element(Locator::Id("token")).await.unwrap();
        field.send_keys(TOKEN).await.unwrap();
        browser
            .find(Locator::Css("#login button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // The list, both builds in it with state and tags.
        let row = browser
            .wait().at_most(Duration::from_secs(30)).for_element(Locator::Css(&format!("tr[data-id='{done}']")))
            .await
            .unwrap();
        let text = row.text().await.unwrap();
        assert!(text.contains("succeeded") && text.contains("web:done") && text.contains("web-team"), "{text}");
        // Open the running build from the list.
        browser
            .wait().at_most(Duration::from_secs(30)).for_element(Locator::Css(&format!("a[href='/builds/{ticking}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let log = browser.wait().at_most(Duration::from_secs(30)).for_element(Locator::Id("log")).await.unwrap();
        let mut first = None;
        for _ in 0..200 {
            first = last_tick(&log.text().await.unwrap());
            if first.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let first = first.expect("the log shows the build's output");
        // Lines printed after the page loaded appear without reloading it.
        let mut later = first;
        for _ in 0..200 {
            later = last_tick(&log.text().await.unwrap()).unwrap_or(first);
            if later >= first + 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(later >= first + 3, "the log stayed at tick-{first}");
        let steps = browser.find(Locator::Id("steps")).await.unwrap().text().await.unwrap();
        assert!(steps.contains("CACHED") && steps.contains("COPY busybox"), "{steps}");
        assert_eq!(browser.find(Locator::Id("build-state")).await.unwrap().text().await.unwrap(), "running");
        // The cancel button stops it; the page says so when the events end.
        browser.find(Locator::Id("cancel")).await.unwrap().click().await.unwrap();
        let mut state = String::new();
        for _ in 0..200 {
            state = browser.find(Locator::Id("build-state")).await.unwrap().text().await.unwrap();
            if state == "cancelled" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(state, "cancelled");
        browser.close().await.unwrap();
    });
    assert_eq!(api.wait_done(&ticking)["state"], "cancelled");
}

/// The path of `program`, or a failure saying what to install.
fn which(program: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{program}` is not installed: apt-get install -y chromium chromium-driver (.ci/run does)"))
}
