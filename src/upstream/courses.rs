//! `builtin:courses`: the course list of Cryptr's Flask tutorial, field for field, so the
//! Cryptr Vue sample renders it unchanged.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};

use crate::body::{self, Body};
use crate::error::GatewayError;

/// Serialised once, by hand, in the tutorial's field order (serde_json would sort or need a
/// struct per level for the same bytes). The unit test below parses it back.
pub(crate) const COURSES_JSON: &str = r#"[{"id":1,"user_id":"eba25511-afce-4c8e-8cab-f82822434648","title":"learn git","tags":["colaborate","git","cli","commit","versionning"],"img":"https://carlchenet.com/wp-content/uploads/2019/04/git-logo.png","desc":"Learn how to create, manage, fork, and collaborate on a project. Git stays a major part of all companies projects. Learning git is learning how to make your project better everyday","date":"5 Nov","timestamp":1604577600000,"teacher":{"name":"Max","picture":"https://images.unsplash.com/photo-1558531304-a4773b7e3a9c?ixlib=rb-1.2.1&ixid=eyJhcHBfaWQiOjEyMDd9&auto=format&fit=crop&w=634&q=80"}}]"#;

pub(crate) fn serve<B>(req: &Request<B>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return GatewayError::MethodNotAllowed(vec![Method::GET, Method::HEAD]).to_response();
    }
    let mut res = Response::new(body::full(COURSES_JSON));
    *res.status_mut() = StatusCode::OK;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn course_list_is_the_tutorials() {
        let v: serde_json::Value = serde_json::from_str(COURSES_JSON).unwrap();
        let list = v.as_array().unwrap();
        assert_eq!(list.len(), 1);
        let c = &list[0];
        assert_eq!(c["id"], 1);
        assert_eq!(c["user_id"], "eba25511-afce-4c8e-8cab-f82822434648");
        assert_eq!(c["title"], "learn git");
        assert_eq!(
            c["tags"],
            serde_json::json!(["colaborate", "git", "cli", "commit", "versionning"])
        );
        assert_eq!(
            c["img"],
            "https://carlchenet.com/wp-content/uploads/2019/04/git-logo.png"
        );
        assert!(c["desc"]
            .as_str()
            .unwrap()
            .starts_with("Learn how to create, manage, fork"));
        assert_eq!(c["date"], "5 Nov");
        assert_eq!(c["timestamp"], 1604577600000u64);
        assert_eq!(c["teacher"]["name"], "Max");
        assert!(c["teacher"]["picture"]
            .as_str()
            .unwrap()
            .starts_with("https://images.unsplash.com/photo-1558531304-a4773b7e3a9c"));
        let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "id",
            "user_id",
            "title",
            "tags",
            "img",
            "desc",
            "date",
            "timestamp",
            "teacher",
        ];
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
    }
}
