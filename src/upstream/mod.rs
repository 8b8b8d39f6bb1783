//! Where a route sends its requests: an HTTP(S) upstream or one served inside the gateway.

mod courses;
mod echo;

use std::fmt;
use std::sync::Arc;

use http::{Request, Response};

use crate::body::Body;
use crate::error::GatewayError;
use crate::proxy::HttpUpstream;

#[derive(Debug, Clone)]
pub enum Upstream {
    /// `http://...` or `https://...`, with its own connection pool.
    Http(Arc<HttpUpstream>),
    /// `builtin:NAME`, answered in-process.
    Builtin(Builtin),
}

impl Upstream {
    /// As written in the config: the URL, or `builtin:NAME`.
    pub fn label(&self) -> &str {
        match self {
            Upstream::Http(u) => u.url(),
            Upstream::Builtin(Builtin::Courses) => "builtin:courses",
            Upstream::Builtin(Builtin::Echo) => "builtin:echo",
        }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The upstreams the gateway serves itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// The tutorial's course list, as the Cryptr Vue sample expects it.
    Courses,
    /// Answers with a JSON description of the request it received.
    Echo,
}

impl Builtin {
    pub const NAMES: [&'static str; 2] = ["courses", "echo"];

    pub fn from_name(name: &str) -> Option<Builtin> {
        match name {
            "courses" => Some(Builtin::Courses),
            "echo" => Some(Builtin::Echo),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Courses => "courses",
            Builtin::Echo => "echo",
        }
    }

    /// Serves a request that went through the same rewriting as a proxied one.
    pub(crate) async fn serve(
        self,
        req: Request<Body>,
        max_body: u64,
    ) -> Result<Response<Body>, GatewayError> {
        match self {
            Builtin::Courses => Ok(courses::serve(&req)),
            Builtin::Echo => echo::serve(req, max_body).await,
        }
    }
}
