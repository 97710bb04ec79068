//! The console (`/ui/`) spoken to as a browser would, without one: its login form, its pages and
//! its forms with the session cookie and the CSRF token.

use reqwest::StatusCode;

/// A client that does not follow redirects (to see where the console sends it).
pub fn raw_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Logs in through the form (as a browser would, same-origin) and returns the session cookie.
pub async fn session_cookie(base: &str, user: &str, password: &str) -> String {
    let r = raw_client()
        .post(format!("{base}/ui/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    cookie.split(';').next().unwrap().to_owned()
}

/// `GET path` with the cookie: the status and the body.
pub async fn get_with(base: &str, cookie: &str, path: &str) -> (StatusCode, String) {
    let r = raw_client().get(format!("{base}{path}")).header("cookie", cookie).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The CSRF token of the session's pages.
pub async fn csrf_of(base: &str, cookie: &str) -> String {
    let (status, page) = get_with(base, cookie, "/ui/account").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 43].to_owned()
}

/// `POST path` with the cookie, the form and extra headers: the status.
pub async fn post_with(
    base: &str,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> StatusCode {
    let mut request = raw_client().post(format!("{base}{path}")).header("cookie", cookie).form(form);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status()
}
