//! Signing in with the fake OpenID Connect provider, as a browser would.

use app::platform::settings::OidcProvider;
use reqwest::{Client, Response, header};

use super::TestApp;

/// The fake provider's OpenID Connect side, as the operator would set it.
pub fn fake_provider(fake: std::net::SocketAddr) -> OidcProvider {
    OidcProvider {
        id: "fake".into(),
        name: "Fake ID".into(),
        issuer: format!("http://{fake}/oidc"),
        client_id: server::fake_oidc::CLIENT_ID.into(),
        client_secret: server::fake_oidc::CLIENT_SECRET.into(),
    }
}

pub fn location(res: &Response) -> String {
    res.headers()
        .get(header::LOCATION)
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Presses the button (`intent`), signs in at the fake as `who`, and
/// returns the callback URL the provider sends the browser to.
pub async fn to_callback(
    app: &TestApp,
    client: &Client,
    intent: &str,
    who: &[(&str, &str)],
) -> String {
    let res = client
        .post(app.url("/auth/oidc/fake"))
        .header("sec-fetch-site", "same-origin")
        .form(&[
            ("intent", intent),
            ("next", "/agents"),
            ("age_confirmed", "yes"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let authorize = url::Url::parse(&location(&res)).unwrap();
    assert!(authorize.path().ends_with("/oidc/authorize"), "{authorize}");
    let query: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("code_challenge_method").as_deref(), Some("S256"));
    assert!(get("nonce").is_some() && get("state").is_some());
    assert!(get("scope").unwrap().contains("openid"));
    // The provider's page, then its form.
    let page = Client::new().get(authorize.clone()).send().await.unwrap();
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Fake identity provider")
    );
    let mut form: Vec<(String, String)> = query;
    for (k, v) in who {
        form.retain(|(n, _)| n != k);
        form.push(((*k).to_owned(), (*v).to_owned()));
    }
    let back = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(authorize.as_str())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 303, "{}", back.text().await.unwrap());
    location(&back)
}

pub async fn provider_sign_in(
    app: &TestApp,
    client: &Client,
    intent: &str,
    who: &[(&str, &str)],
) -> String {
    let callback = to_callback(app, client, intent, who).await;
    let res = client.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 303);
    location(&res)
}
