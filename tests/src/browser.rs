//! A real browser for the page's tests: Debian's Chromium, headless, driven through its
//! ChromeDriver (W3C WebDriver, on a loopback port of its own) with `fantoccini`.
//! `scripts/install-deps` installs both (`chromium`, `chromium-driver`); without them the tests
//! fail, saying so.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::{descendants, free_port, signal};

/// Where Debian's `chromium-driver` puts ChromeDriver.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long ChromeDriver may take to listen, and the browser to start.
const START: Duration = Duration::from_secs(30);

/// A headless Chromium session at 1280x800, and the ChromeDriver serving it (killed when
/// dropped).
pub struct Browser {
    driver: Child,
    /// The WebDriver session.
    pub client: Client,
}

impl Browser {
    /// Starts ChromeDriver on a free loopback port and opens a session on a new headless
    /// Chromium.
    pub async fn start() -> Result<Self> {
        let exe = std::env::var_os("RENDERMESH_CHROMEDRIVER").unwrap_or(CHROMEDRIVER.into());
        if !Path::new(&exe).exists() {
            bail!(
                "{} is missing: the page's tests need Debian's chromium and chromium-driver \
                 (`scripts/install-deps` installs them)",
                Path::new(&exe).display()
            );
        }
        let port = free_port();
        let mut driver = Command::new(&exe)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", Path::new(&exe).display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() >= deadline {
                let _ = driver.kill();
                let _ = driver.wait();
                bail!("ChromeDriver did not listen on {addr} within {START:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "args": [
                "--headless=new",
                // As root (CI), Chromium's own sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,800",
            ]}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            START,
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&format!("http://{addr}")),
        )
        .await;
        let client = match client {
            Ok(Ok(client)) => client,
            other => {
                let _ = driver.kill();
                let _ = driver.wait();
                bail!("no Chromium session through ChromeDriver: {other:?}");
            }
        };
        Ok(Self { driver, client })
    }

    /// Kills ChromeDriver and every browser process it started.
    fn kill(&mut self) {
        let _ = signal(&descendants(self.driver.id()), "KILL");
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    /// Runs `script` in the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> Result<Value> {
        self.client
            .execute(script, Vec::new())
            .await
            .with_context(|| format!("the page could not run `{script}`"))
    }

    /// The visible text of the element `css` matches, or "" when none does.
    pub async fn text(&self, css: &str) -> Result<String> {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.innerText : '';",
            serde_json::to_string(css)?
        );
        Ok(self
            .eval(&script)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Polls (every 100 ms, up to `timeout`) until the text of `css` satisfies `ok`; returns it.
    pub async fn wait_text(
        &self,
        what: &str,
        css: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text(css).await?;
            if ok(&text) {
                return Ok(text);
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for {what}; `{css}` reads {text:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element `css` matches, if one does now; returns whether it clicked (the page
    /// redraws a job as its events come, so an element found may be gone a moment later).
    pub async fn click(&self, css: &str) -> Result<bool> {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => Ok(element.click().await.is_ok()),
            Err(e) if e.is_no_such_element() => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot look for `{css}`")),
        }
    }

    /// Types `text` into the field `css` matches, in place of what it held (a file input
    /// takes a path: the file is then picked).
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no `{css}` on the page"))?;
        if field.attr("type").await?.as_deref() != Some("file") {
            field.clear().await?;
        }
        field
            .send_keys(text)
            .await
            .with_context(|| format!("cannot type into `{css}`"))
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        Ok(self.client.screenshot().await?)
    }

    /// Ends the session, then ChromeDriver.
    pub async fn close(mut self) -> Result<()> {
        let closed = self.client.clone().close().await;
        self.kill();
        closed.context("the browser session did not end")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}
