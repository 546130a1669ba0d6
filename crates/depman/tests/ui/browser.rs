//! A real Chromium, driven through its own chromedriver (both from Debian's
//! packages, installed by `make env`): one of each per test, on a fresh
//! profile, so that tests run in parallel and share nothing.

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{
    Client, ClientBuilder, Locator, elements::Element, wd::WebDriverCompatibleCommand,
};
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a page may take to show what a test waits for.
pub const WITHIN: Duration = Duration::from_secs(60);

pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
    base: String,
    shots: PathBuf,
}

impl Browser {
    /// A headless Chromium at the dashboard of the api at `addr`;
    /// screenshots go under the tests' output folder, in `test`.
    pub async fn open(addr: std::net::SocketAddr, test: &str) -> Self {
        let port = crate::helpers::free_port();
        // Its own process group, so that the browser it starts goes with it.
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (make env installs it)");
        let profile = std::env::temp_dir().join(crate::helpers::unique("chromium-profile"));
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                // Without the background networking flags Chromium calls
                // out to Google at start, which this machine refuses.
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let webdriver = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => break client,
                Err(error) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("no browser session: {error}"),
            }
        };
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("ui-screenshots")
            .join(test);
        std::fs::create_dir_all(&shots).expect("the screenshot folder");
        Self {
            client,
            driver,
            profile,
            base: format!("http://{addr}/ui/"),
            shots,
        }
    }

    /// Signs in with `credential` (a user id, or a token with `jwt`: the
    /// dashboard asks once) and opens `page` (`#/`, `#/create`, ...).
    pub async fn sign_in(&self, credential: &str, page: &str) {
        self.client
            .goto(&self.base)
            .await
            .expect("the dashboard loads");
        let input = self.find("#field-credential").await;
        input.send_keys(credential).await.expect("type it");
        self.click("form button[type=submit]").await;
        self.wait_text("#who", |who| who.contains("Signed in as"))
            .await;
        self.go(page).await;
    }

    /// Opens `page` of the dashboard (a `#/...` route).
    pub async fn go(&self, page: &str) {
        self.client
            .goto(&format!("{}{page}", self.base))
            .await
            .expect("navigate");
    }

    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WITHIN)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no `{css}` on the page: {error}"))
    }

    /// Clicks `css`; found again if a live update redrew it between the
    /// finding and the click, as a user would.
    pub async fn click(&self, css: &str) {
        for _ in 0..5 {
            match self.find(css).await.click().await {
                Ok(()) => return,
                Err(error) if is_stale(&error) => continue,
                Err(error) => panic!("click `{css}`: {error}"),
            }
        }
        panic!("`{css}` was redrawn under every click");
    }

    /// Types `text` into the form field named `name`, replacing what it had.
    pub async fn fill(&self, name: &str, text: &str) {
        let input = self.find(&format!("[name=\"{name}\"]")).await;
        input.clear().await.expect("clear the field");
        input.send_keys(text).await.expect("type");
    }

    /// The text of `css`, once `check` holds for it (or a panic with the
    /// last text seen, and a screenshot).
    pub async fn wait_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < WITHIN {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                last = element.text().await.unwrap_or_default();
                if check(&last) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.save_png("timed-out").await;
        panic!("`{css}` never showed what was expected; last: {last:?}")
    }

    /// Runs `script` in the page and returns its value.
    pub async fn script(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .expect("the script runs")
    }

    /// The texts of every `css` on the page.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self.client.find_all(Locator::Css(css)).await.expect("find") {
            texts.push(element.text().await.expect("text"));
        }
        texts
    }

    /// Saves the page as `<name>.png` in this test's screenshot folder,
    /// once it is sure the page shows no value it failed to render.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let text = self.wait_text("body", |_| true).await;
        for word in text.split_whitespace() {
            assert!(
                !["null", "undefined", "NaN", "[object"].contains(&word),
                "`{word}` on the page {name}: {text}"
            );
        }
        self.save_png(name).await
    }

    async fn save_png(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("save the screenshot");
        path
    }

    /// What the page logged at level SEVERE since the last call: script
    /// errors, `console.error` and failed loads, but for the API's `4xx`
    /// answers, which Chromium logs too and which the page shows the user.
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("the browser log");
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE" && !answered_4xx(entry))
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop stops the driver and removes the profile.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test too stops its browser: the driver's whole group.
        // `--` first: procps' kill reads a bare `-PID` after `-KILL` as
        // something else, and signals every process.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn is_stale(error: &fantoccini::error::CmdError) -> bool {
    matches!(
        error,
        fantoccini::error::CmdError::Standard(e)
            if e.error == fantoccini::error::ErrorStatus::StaleElementReference
    )
}

fn answered_4xx(entry: &Value) -> bool {
    let message = entry["message"].as_str().unwrap_or_default();
    entry["source"] == "network"
        && message.contains("/api/v1/")
        && message.contains("responded with a status of 4")
}

/// chromedriver's log endpoint, which the WebDriver standard lacks.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}
