//! depman's HTTP API as depmanctl uses it: the caller's headers, problem
//! details turned into exit codes, and retries that never do a thing twice.

use std::time::Duration;

use reqwest::{
    Method, StatusCode,
    blocking::{Client as Http, RequestBuilder, Response},
};
use serde_json::Value;

use crate::{config::Target, error::CtlError};

/// Attempts of a call whose connection failed before an answer.
const ATTEMPTS: u32 = 4;

pub struct Client {
    http: Http,
    target: Target,
}

impl Client {
    pub fn new(target: Target) -> Result<Self, CtlError> {
        let http = Http::builder()
            .connect_timeout(Duration::from_secs(5))
            // Calls that wait set their own; a stream has none.
            .timeout(None)
            .user_agent(concat!("depmanctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CtlError::Usage(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self { http, target })
    }

    /// A read: `GET path` (with its query), as JSON.
    pub fn get(&self, path: &str) -> Result<Value, CtlError> {
        self.get_within(path, Duration::from_secs(30))
    }

    /// A read that may wait on the server for up to `within`.
    pub fn get_within(&self, path: &str, within: Duration) -> Result<Value, CtlError> {
        self.call(Method::GET, path, None, within)
    }

    /// A change: one idempotency key for all its attempts, so that a retry
    /// after a lost connection is answered as a replay, never done twice.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CtlError> {
        self.call(method, path, body, Duration::from_secs(30))
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        within: Duration,
    ) -> Result<Value, CtlError> {
        let key = uuid::Uuid::new_v4().to_string();
        let mut attempt = 1;
        loop {
            let mut request = self
                .request(method.clone(), path)?
                .header("X-Request-ID", &key)
                .timeout(within + Duration::from_secs(10));
            if let Some(body) = body {
                request = request.json(body);
            }
            match request.send() {
                // Past the rate limit: wait as asked, then try again with
                // the same key.
                Ok(response)
                    if response.status() == StatusCode::TOO_MANY_REQUESTS && attempt < ATTEMPTS =>
                {
                    std::thread::sleep(retry_after(&response));
                    attempt += 1;
                }
                Ok(response) => return answer(response),
                Err(error) if attempt < ATTEMPTS && (error.is_connect() || error.is_timeout()) => {
                    std::thread::sleep(Duration::from_millis(250 << attempt));
                    attempt += 1;
                }
                Err(error) => return Err(unreachable(&self.target.server, &error)),
            }
        }
    }

    /// The event stream from `path`, resuming after `last_event_id`.
    pub fn stream(&self, path: &str, last_event_id: Option<&str>) -> Result<Response, CtlError> {
        let mut request = self
            .request(Method::GET, path)?
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request
            .send()
            .map_err(|error| unreachable(&self.target.server, &error))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(answer(response).err().unwrap_or_else(|| {
                CtlError::Unreachable("the server did not open a stream".into())
            }))
        }
    }

    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, CtlError> {
        let user = self.target.user.as_deref().ok_or_else(|| {
            CtlError::Usage("who are you? give --user, DEPMAN_USER or a context with a user".into())
        })?;
        let url = format!("{}{path}", self.target.server.trim_end_matches('/'));
        let mut request = self.http.request(method, url).header("X-User-ID", user);
        if let Some(token) = &self.target.token {
            request = request.bearer_auth(token);
        }
        Ok(request)
    }
}

/// The `Retry-After` of a `429`, at most 10 s (1 s when it says nothing).
fn retry_after(response: &Response) -> Duration {
    let seconds = response
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1u64);
    Duration::from_secs(seconds.clamp(1, 10))
}

fn unreachable(server: &str, error: &reqwest::Error) -> CtlError {
    let mut message = format!("{server}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    CtlError::Unreachable(message)
}

/// A 2xx body, or the problem document as the error it means.
fn answer(response: Response) -> Result<Value, CtlError> {
    let status = response.status();
    let text = response
        .text()
        .map_err(|e| CtlError::Unreachable(format!("the answer was cut off: {e}")))?;
    if status.is_success() {
        return serde_json::from_str(&text).map_err(|e| {
            CtlError::Unreachable(format!("the server answered what is not JSON: {e}"))
        });
    }
    let problem: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    Err(refusal(status, &problem, &text))
}

/// The problem's detail and each invalid field, not a stack of JSON.
fn refusal(status: StatusCode, problem: &Value, text: &str) -> CtlError {
    let errors = problem["errors"].as_array().cloned().unwrap_or_default();
    // A validation problem's detail is its field list, shown below; any
    // other problem's detail is the reason (a dry run Kubernetes refused
    // lists the fields it named besides).
    let mut message = match problem["detail"].as_str() {
        _ if problem["code"] == "validation-failed" => String::from("the input is not valid"),
        Some(detail) => detail.to_owned(),
        None => format!("{status}: {}", text.trim()),
    };
    for error in &errors {
        let field = error["field"].as_str().unwrap_or_default();
        let text = error["message"].as_str().unwrap_or_default();
        message.push_str(&format!("\n  {field}: {text}"));
    }
    match status {
        StatusCode::NOT_FOUND => CtlError::NotFound(message),
        status if status.is_server_error() => CtlError::Unreachable(message),
        _ => CtlError::Failed(message),
    }
}
