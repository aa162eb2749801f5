//! Console sign-in with a plain OAuth 2.0 provider (GitHub-style), against a fake that speaks
//! GitHub's web flow over real HTTP: members get in by the address the provider verified, with
//! their membership's role; nobody else does, and no answer is taken twice.

use gatehouse_testkit::TestGateway;
use gatehouse_testkit::oauth::{FakeOAuth, Person};
use reqwest::Method;
use reqwest::header::SET_COOKIE;
use serde_json::json;

use crate::common::{as_root, gateway, new_org, validate};
use crate::console::Browser;

fn octocat(emails: &[(&str, bool, bool)]) -> Person {
    Person {
        id: 583_231,
        login: "octocat".into(),
        emails: emails.iter().map(|(e, v, p)| ((*e).to_owned(), *v, *p)).collect(),
    }
}

/// Starts a sign-in and lets the provider answer: the login cookie and the callback URL the
/// provider sent the browser back to.
async fn at_provider(b: &mut Browser, gw: &TestGateway, fake: &FakeOAuth) -> (String, String) {
    let page = b.get("/sign-in/oauth/github?next=%2Fkeys").await;
    assert_eq!(page.status, 303, "{}", page.body);
    let set = page.headers[SET_COOKIE].to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Secure"), "{set}");
    let login = set.split(';').next().unwrap().strip_prefix("__Host-gatehouse-login=").unwrap().to_owned();
    let to = url::Url::parse(page.location()).unwrap();
    assert!(to.as_str().starts_with(&fake.base_url()), "{to}");
    let q: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
    assert_eq!((q["response_type"].as_str(), q["client_id"].as_str()), ("code", "gh-client"));
    assert_eq!((q["code_challenge_method"].as_str(), q["code_challenge"].len()), ("S256", 43));
    assert_eq!(q["state"].len(), 43);
    assert!(!q.contains_key("code_verifier") && !q.contains_key("nonce"));
    // the provider signs the person in and redirects back
    let back = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = back.get(to).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let callback = resp.headers()["location"].to_str().unwrap().replace("http://127.0.0.1:1", &gw.admin_url);
    (login, callback)
}

fn refused(page: &crate::console::Page) -> bool {
    page.status == 401 && page.body.contains("Sign in") && page.headers.get(SET_COOKIE).is_some()
}

#[tokio::test]
async fn plain_oauth_sign_in_admits_members_by_verified_email_only() {
    let fake = FakeOAuth::start(
        "gh-client",
        "gh-secret",
        octocat(&[("octo@old.example", true, false), ("Ann@Example.com", true, true)]),
    )
    .await;
    let config = format!(
        "{}\n[console]\nsign_in_failures_per_source = 100\n",
        fake.config("github", "acme", "http://127.0.0.1:1")
    );
    let gw = gateway().config(&config).env("FAKE_OAUTH_SECRET", "gh-secret").spawn().await;
    let acme = new_org(&gw, "acme").await;
    let member = json!({"email": "ann@example.com", "name": "Ann", "role": "viewer"});
    let (st, v) = as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{acme}/members"), Some(member)).await;
    assert_eq!(st, 201, "{v}");
    let user = v["user_id"].as_str().unwrap().to_owned();

    let mut b = Browser::new(&gw);
    let page = b.get("/sign-in").await;
    assert!(page.body.contains(r#"href="/sign-in/oauth/github?next=%2F""#), "{}", page.body);

    // a member, by the primary address the provider verified (whatever its case)
    let (login, callback) = at_provider(&mut b, &gw, &fake).await;
    let page = b.arrive(&callback, Some(&login)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(b.cookie.is_some(), "a session began");
    let home = b.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("viewer") && home.body.contains(&acme), "{}", home.body);
    let (_, trail) = as_root(&gw, Method::GET, "/admin/v1/audit?action=console.sign_in&limit=10", None).await;
    let e = &trail["data"][0];
    assert_eq!((e["actor"].as_str(), e["outcome"].as_str()), (Some("oidc:github:583231"), Some("allowed")), "{e}");
    // the same answer again: the sign-in was taken
    let mut other = Browser::new(&gw);
    assert!(refused(&other.arrive(&callback, Some(&login)).await));

    // the membership ends: so does the session
    let (st, _) = as_root(&gw, Method::DELETE, &format!("/admin/v1/orgs/{acme}/members/{user}"), None).await;
    assert_eq!(st, 200);
    assert_eq!(b.get("/").await.status, 303, "the session ended with the membership");
    let (login, callback) = at_provider(&mut other, &gw, &fake).await;
    let page = other.arrive(&callback, Some(&login)).await;
    assert_eq!(page.status, 401);
    assert!(page.body.contains("not a member here"), "{}", page.body);

    // someone the provider knows but who is no member; an address the provider did not verify
    let (st, _) = as_root(
        &gw,
        Method::POST,
        &format!("/admin/v1/orgs/{acme}/members"),
        Some(json!({"email": "ann@example.com", "name": "Ann", "role": "org_admin"})),
    )
    .await;
    assert_eq!(st, 201);
    for (person, problem) in [
        (octocat(&[("eve@example.com", true, true)]), "not a member here"),
        (octocat(&[("ann@example.com", false, true)]), "no verified email address"),
        (octocat(&[("ann@example.com", true, false), ("alt@example.com", true, false)]), "no verified email address"),
    ] {
        fake.sign_in_as(person);
        let mut c = Browser::new(&gw);
        let (login, callback) = at_provider(&mut c, &gw, &fake).await;
        let page = c.arrive(&callback, Some(&login)).await;
        assert_eq!(page.status, 401, "{problem}");
        assert!(page.body.contains(problem), "{problem}: {}", page.body);
        assert!(c.cookie.is_none());
    }

    // a forged state, a code the provider never issued, the provider's refusal, no login cookie
    fake.sign_in_as(octocat(&[("ann@example.com", true, true)]));
    let exchanges = fake.exchanges();
    let mut c = Browser::new(&gw);
    let (login, callback) = at_provider(&mut c, &gw, &fake).await;
    let forged = url::Url::parse(&callback).unwrap();
    let code: String = forged.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let base = format!("{}/sign-in/oauth/callback", gw.admin_url);
    assert!(refused(&c.arrive(&format!("{base}?code={code}&state=forged"), Some(&login)).await));
    assert!(refused(&c.arrive(&callback, None).await), "another browser has no sign-in to finish");
    let (login, callback) = at_provider(&mut c, &gw, &fake).await;
    let state: String =
        url::Url::parse(&callback).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    assert!(refused(&c.arrive(&format!("{base}?code=made-up&state={state}"), Some(&login)).await));
    let (login, callback) = at_provider(&mut c, &gw, &fake).await;
    let state: String =
        url::Url::parse(&callback).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let denied = format!("{base}?error=access_denied&state={state}");
    assert!(refused(&c.arrive(&denied, Some(&login)).await));
    assert_eq!(fake.exchanges(), exchanges + 1, "only the made-up code reached the provider");
    assert!(c.cookie.is_none());

    // a sign-in begun with one kind of provider is not finished at the other's callback
    let (login, callback) = at_provider(&mut c, &gw, &fake).await;
    let at_oidc = callback.replace("/sign-in/oauth/callback", "/sign-in/oidc/callback");
    assert!(refused(&c.arrive(&at_oidc, Some(&login)).await));
    // an unknown provider
    assert_eq!(c.get("/sign-in/oauth/gitlab").await.status, 404);

    // the org admin gets in, as org admin; every refusal above was audited
    let (login, callback) = at_provider(&mut c, &gw, &fake).await;
    assert_eq!(c.arrive(&callback, Some(&login)).await.status, 200);
    assert!(c.get("/").await.body.contains("org_admin"));
    let (_, trail) = as_root(&gw, Method::GET, "/admin/v1/audit?action=console.sign_in&limit=100", None).await;
    let denied = trail["data"].as_array().unwrap().iter().filter(|e| e["outcome"] == "denied").count();
    assert_eq!(denied, 10, "{trail}");
}

#[tokio::test]
async fn oauth_providers_are_checked_at_start() {
    let good = "name = \"github\"\nauthorization_endpoint = \"https://github.com/login/oauth/authorize\"\n\
                token_endpoint = \"https://github.com/login/oauth/access_token\"\nuser_endpoint = \"https://api.github.com/user\"\n\
                client_id = \"abc\"\nredirect_uri = \"https://gw.example.com/sign-in/oauth/callback\"\norg = \"acme\"\n";
    let bad = [
        ("redirect_uri = \"https://gw.example.com/sign-in/oidc/callback\"", "redirect_uri"),
        ("token_endpoint = \"http://github.example.com/token\"", "token_endpoint"),
        ("emails_endpoint = \"ftp://api.github.com/user/emails\"", "emails_endpoint"),
        ("client_secret = \"literal-secret\"", "client_secret"),
        ("token_auth = \"private_key_jwt\"", "token_auth"),
        ("org = \"acme corp\"", "org"),
        ("subject = \"id\"", "subject"),
    ];
    for (line, field) in bad {
        let key = line.split(" = ").next().unwrap();
        let kept: String =
            good.lines().filter(|l| !l.starts_with(&format!("{key} ="))).map(|l| format!("{l}\n")).collect();
        let (ok, text) = validate(&format!("[[oauth]]\n{kept}{line}\n"));
        assert!(!ok, "{line}: {text}");
        assert!(text.contains(&format!("oauth[0].{field}")), "{line}: {text}");
        assert!(!text.contains("literal-secret"), "a literal secret is never echoed: {text}");
    }
    // one namespace with [[oidc]]
    let (ok, text) = validate(&format!(
        "[[oidc]]\nname = \"github\"\nissuer = \"https://idp.example.com\"\naudiences = [\"gw\"]\n\
         default_org = \"acme\"\n[[oauth]]\n{good}"
    ));
    assert!(!ok && text.contains("oauth[0].name"), "{text}");
    // and the good one validates
    let (ok, text) = validate(&format!("[[oauth]]\n{good}"));
    assert!(ok, "{text}");
}
